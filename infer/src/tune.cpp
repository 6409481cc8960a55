#include "pneumo/infer/tune.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <opencv2/core.hpp>

#include "pneumo/core/error.h"
#include "pneumo/infer/predictor.h"

namespace pneumo::infer {

namespace fs = std::filesystem;

namespace {

int step_of(double threshold) { return static_cast<int>(std::lround(threshold * ImageHistogram::kBins)); }

// The pixel settings searched: bottom and top thresholds over 0.05..0.95 (top >= bottom) and
// min_area over 0 and shares of the median image; the gate is left at 0.
std::vector<PostprocessSection> pixel_grid(double median_pixels) {
  std::vector<int64_t> areas{0};
  for (double share : {1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3, 8e-3})
    areas.push_back(std::max<int64_t>(1, std::llround(share * median_pixels)));
  std::vector<PostprocessSection> grid;
  for (int bottom = 5; bottom <= 95; bottom += 5)
    for (int top = bottom; top <= 95; top += 5)
      for (int64_t area : areas) {
        PostprocessSection s;
        s.threshold = bottom / 100.0;
        s.top_threshold = top / 100.0;
        s.min_area = area;
        s.min_component_area = 0;
        s.classifier_threshold = 0.0;
        grid.push_back(s);
      }
  return grid;
}

double distance_between(const PostprocessSection& s, const PostprocessSection& from, double median_pixels) {
  return std::abs(s.threshold - from.threshold) + std::abs(s.top_threshold - from.top_threshold) +
         std::abs(s.classifier_threshold - from.classifier_threshold) +
         std::abs(static_cast<double>(s.min_area - from.min_area)) / std::max(1.0, median_pixels);
}

// Whether `settings` give image h a non-empty mask.
bool decides_positive(const ImageHistogram& h, const PostprocessSection& s) {
  if (h.gate && *h.gate < s.classifier_threshold) return false;
  if (s.min_area > 0 && h.above[step_of(s.top_threshold)] < s.min_area) return false;
  return h.above[step_of(s.threshold)] > 0;
}

void finish_rates(train::BinaryMetrics& m) {
  const auto share = [](int64_t part, int64_t whole) {
    return whole > 0 ? static_cast<double>(part) / static_cast<double>(whole) : 0.0;
  };
  m.recall = share(m.tp, m.tp + m.fn);
  m.specificity = share(m.tn, m.tn + m.fp);
  m.precision = share(m.tp, m.tp + m.fp);
  m.f1 = m.precision + m.recall > 0 ? 2 * m.precision * m.recall / (m.precision + m.recall) : 0.0;
}

}  // namespace

train::BinaryMetrics image_decisions(const std::vector<ImageHistogram>& images, const PostprocessSection& settings) {
  train::BinaryMetrics m;
  m.threshold = settings.classifier_threshold;
  m.auc = m.average_precision = std::numeric_limits<double>::quiet_NaN();  // not a ranking
  for (const ImageHistogram& h : images) {
    const bool truth = h.truth_area > 0, predicted = decides_positive(h, settings);
    (truth ? (predicted ? m.tp : m.fn) : (predicted ? m.fp : m.tn)) += 1;
  }
  finish_rates(m);
  return m;
}

OperatingPointSearch search_operating_point(const std::vector<ImageHistogram>& images, double median_pixels,
                                            const PostprocessSection& start, const OperatingPointTarget& target) {
  if (images.empty()) throw core::DataError("no images to tune the post-processing on");
  int64_t positives = 0;
  for (const ImageHistogram& h : images) positives += h.truth_area > 0 ? 1 : 0;
  const auto negatives = static_cast<int64_t>(images.size()) - positives;
  if (positives == 0 || negatives == 0)
    throw core::DataError(fmt::format("an operating point needs positive and negative images; the {} image(s) are all {}",
                                      images.size(), positives == 0 ? "negative" : "positive"));
  // The gate's cuts: images by gate, highest first; a cut after k of them opens those k.
  const bool gated = images.front().gate.has_value();
  std::vector<size_t> order(images.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  if (gated)
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return *images[a].gate > *images[b].gate; });
  const auto gate_of = [&](size_t k) { return *images[order[k]].gate; };

  struct Candidate {
    PostprocessSection settings;
    int64_t tp = 0, fp = 0;
    double dice = 0;
  };
  std::optional<Candidate> best;
  double reached_best = 0;  // the best value of the targeted rate seen, for the message
  const auto rate = [&](int64_t tp, int64_t fp, bool of_sensitivity) {
    return of_sensitivity ? static_cast<double>(tp) / static_cast<double>(positives)
                          : 1.0 - static_cast<double>(fp) / static_cast<double>(negatives);
  };
  const auto offer = [&](const Candidate& c) {
    const double targeted = rate(c.tp, c.fp, target.sensitivity), other = rate(c.tp, c.fp, !target.sensitivity);
    reached_best = std::max(reached_best, targeted);
    if (targeted < target.level - 1e-12) return;
    if (best) {
      const double best_other = rate(best->tp, best->fp, !target.sensitivity);
      if (other != best_other) {
        if (other < best_other) return;
      } else if (c.dice != best->dice) {
        if (c.dice < best->dice) return;
      } else if (distance_between(c.settings, start, median_pixels) >=
                 distance_between(best->settings, start, median_pixels)) {
        return;
      }
    }
    best = c;
  };
  const auto n = static_cast<double>(images.size());
  std::vector<double> dice_open(images.size()), dice_closed(images.size());
  std::vector<char> positive_open(images.size()), truth(images.size());
  for (PostprocessSection s : pixel_grid(median_pixels)) {
    s.classifier_threshold = 0.0;  // every gate open: what the pixels alone decide
    double closed_sum = 0;
    for (size_t i = 0; i < images.size(); ++i) {
      truth[i] = images[i].truth_area > 0;
      positive_open[i] = decides_positive(images[i], s);
      dice_open[i] = image_overlap(images[i], s).dice;
      dice_closed[i] = truth[i] ? 0.0 : 1.0;
      closed_sum += dice_closed[i];
    }
    if (!gated) {
      Candidate c{s, 0, 0, 0};
      c.settings.classifier_threshold = start.classifier_threshold;
      for (size_t i = 0; i < images.size(); ++i) {
        c.tp += positive_open[i] && truth[i];
        c.fp += positive_open[i] && !truth[i];
        c.dice += dice_open[i];
      }
      c.dice /= n;
      offer(c);
      continue;
    }
    // Open the images one gate value at a time, highest first.
    int64_t tp = 0, fp = 0;
    double dice = closed_sum;
    if (gate_of(0) < 1.0) {  // everything closed: the gate just above the highest value
      Candidate c{s, 0, 0, dice / n};
      c.settings.classifier_threshold = std::nextafter(gate_of(0), 2.0);
      offer(c);
    }
    for (size_t k = 0; k < order.size();) {
      const double value = gate_of(k);
      for (; k < order.size() && gate_of(k) == value; ++k) {
        const size_t i = order[k];
        tp += positive_open[i] && truth[i];
        fp += positive_open[i] && !truth[i];
        dice += dice_open[i] - dice_closed[i];
      }
      Candidate c{s, tp, fp, dice / n};
      // Halfway to the next lower value (0 when every image is open): the cut keeps a margin.
      c.settings.classifier_threshold = k < order.size() ? (value + gate_of(k)) / 2 : 0.0;
      offer(c);
    }
  }
  if (!best)
    throw core::DataError(fmt::format("no post-processing settings reach {} on these {} image(s); the highest {} reached "
                                      "is {:.4f}",
                                      target.describe(), images.size(),
                                      target.sensitivity ? "sensitivity" : "specificity", reached_best));
  OperatingPointSearch result;
  result.best = best->settings;
  result.dice = best->dice;
  result.decisions = image_decisions(images, result.best);
  return result;
}

ImageHistogram summarise(const cv::Mat& probability, const cv::Mat& truth, std::optional<double> gate) {
  constexpr int n = ImageHistogram::kBins;
  std::vector<int64_t> bins(n, 0), truth_bins(n, 0);
  ImageHistogram h;
  h.gate = gate;
  for (int y = 0; y < probability.rows; ++y) {
    const float* p = probability.ptr<float>(y);
    const uint8_t* t = truth.ptr<uint8_t>(y);
    for (int x = 0; x < probability.cols; ++x) {
      if (t[x]) ++h.truth_area;
      if (!(p[x] > 0.0f)) continue;
      const int k = std::clamp(static_cast<int>(std::ceil(static_cast<double>(p[x]) * n)) - 1, 0, n - 1);
      ++bins[k];
      if (t[x]) ++truth_bins[k];
    }
  }
  h.above.assign(n + 1, 0);
  h.truth_above.assign(n + 1, 0);
  for (int j = n - 1; j >= 0; --j) {  // above[j] = pixels in bins j..n-1, i.e. probability > j/n
    h.above[j] = h.above[j + 1] + bins[j];
    h.truth_above[j] = h.truth_above[j + 1] + truth_bins[j];
  }
  return h;
}

ImageOverlap image_overlap(const ImageHistogram& h, const PostprocessSection& s) {
  const bool gated_off = h.gate && *h.gate < s.classifier_threshold;
  const bool too_small = s.min_area > 0 && h.above[step_of(s.top_threshold)] < s.min_area;
  const int64_t predicted = gated_off || too_small ? 0 : h.above[step_of(s.threshold)];
  const int64_t both = gated_off || too_small ? 0 : h.truth_above[step_of(s.threshold)];
  if (predicted + h.truth_area == 0) return {1.0, 1.0};
  const auto d = static_cast<double>(both);
  return {2.0 * d / static_cast<double>(predicted + h.truth_area), d / static_cast<double>(predicted + h.truth_area - both)};
}

double mean_dice(const std::vector<ImageHistogram>& images, const PostprocessSection& s) {
  if (images.empty()) return 0.0;
  double sum = 0;
  for (const ImageHistogram& h : images) sum += image_overlap(h, s).dice;
  return sum / static_cast<double>(images.size());
}

double median_pixels(std::vector<int64_t> counts) {
  if (counts.empty()) return 0.0;
  std::nth_element(counts.begin(), counts.begin() + static_cast<std::ptrdiff_t>(counts.size() / 2), counts.end());
  return static_cast<double>(counts[counts.size() / 2]);
}

PostprocessSearch search_postprocess(const std::vector<ImageHistogram>& images, double median_pixels,
                                     const PostprocessSection& from) {
  if (images.empty()) throw core::DataError("no images to tune the post-processing on");
  PostprocessSearch result;
  PostprocessSection start = from;  // on the grid the summaries resolve
  start.threshold = step_of(start.threshold) / static_cast<double>(ImageHistogram::kBins);
  start.top_threshold = step_of(start.top_threshold) / static_cast<double>(ImageHistogram::kBins);
  start.min_component_area = 0;
  result.start_dice = mean_dice(images, start);

  std::vector<double> gates{from.classifier_threshold};
  if (images.front().gate) gates = {0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9};

  std::vector<std::pair<PostprocessSection, double>> scored;
  for (PostprocessSection s : pixel_grid(median_pixels))
    for (double gate : gates) {
      s.classifier_threshold = gate;
      scored.emplace_back(s, mean_dice(images, s));
    }
  // Highest Dice first; among equal Dice the settings nearest the starting point.
  const auto distance = [&](const PostprocessSection& s) { return distance_between(s, from, median_pixels); };
  std::stable_sort(scored.begin(), scored.end(), [&](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : distance(a.first) < distance(b.first);
  });
  result.best = scored.front().first;
  result.best_dice = scored.front().second;
  for (size_t i = 1; i < std::min<size_t>(6, scored.size()); ++i) result.runners_up.push_back(scored[i]);
  return result;
}

TuneResult tune(const TuneOptions& options) {
  if (options.run.models.empty()) throw core::UsageError("no model given; expected --model CHECKPOINT_OR_RUN_FOLDER");
  const fs::path home = postprocess_folder_of(options.run.models.front().path);
  const fs::path out = !options.out.empty() ? options.out : home.empty() ? fs::path() : home / "postprocess.yaml";
  if (out.empty())
    throw core::UsageError(fmt::format("{} is not inside a run folder; give --out FILE for the tuned postprocess.yaml",
                                       options.run.models.front().path.string()));
  std::vector<ImageHistogram> images;
  std::vector<int64_t> pixel_counts;
  const LabelledRunSummary run = run_labelled(options.run, "tune", true, [&](Prediction& p, const LabelledTruth& labelled) {
    images.push_back(summarise(p.probability, labelled.mask, p.image_probability));
    pixel_counts.push_back(static_cast<int64_t>(p.input.pixels.total()));
  });
  TuneResult result;
  result.set = run.set;
  result.start = run.postprocess;
  result.failures = run.failures;
  result.images = static_cast<int64_t>(images.size());
  const PostprocessSearch search = search_postprocess(images, median_pixels(pixel_counts), result.start);
  result.start_dice = search.start_dice;
  if (options.operating_point) {
    const OperatingPointSearch point =
        search_operating_point(images, median_pixels(pixel_counts), result.start, *options.operating_point);
    result.best = point.best;
    result.best_dice = point.dice;
  } else {
    result.best = search.best;
    result.best_dice = search.best_dice;
    result.runners_up = search.runners_up;
  }
  result.decisions = image_decisions(images, result.best);
  write_postprocess(out, result.best);
  result.written = out;
  return result;
}

}  // namespace pneumo::infer
