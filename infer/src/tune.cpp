#include "pneumo/infer/tune.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <opencv2/core.hpp>

#include "pneumo/core/error.h"
#include "pneumo/infer/predictor.h"

namespace pneumo::infer {

namespace fs = std::filesystem;

namespace {
int step_of(double threshold) { return static_cast<int>(std::lround(threshold * ImageHistogram::kBins)); }
}  // namespace

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

  std::vector<int64_t> areas{0};
  for (double share : {1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3, 8e-3})
    areas.push_back(std::max<int64_t>(1, std::llround(share * median_pixels)));
  std::vector<double> gates{from.classifier_threshold};
  if (images.front().gate) gates = {0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9};

  std::vector<std::pair<PostprocessSection, double>> scored;
  for (int bottom = 5; bottom <= 95; bottom += 5)
    for (int top = bottom; top <= 95; top += 5)
      for (int64_t area : areas)
        for (double gate : gates) {
          PostprocessSection s;
          s.threshold = bottom / 100.0;
          s.top_threshold = top / 100.0;
          s.min_area = area;
          s.min_component_area = 0;
          s.classifier_threshold = gate;
          scored.emplace_back(s, mean_dice(images, s));
        }
  // Highest Dice first; among equal Dice the settings nearest the starting point.
  const auto distance = [&](const PostprocessSection& s) {
    return std::abs(s.threshold - from.threshold) + std::abs(s.top_threshold - from.top_threshold) +
           std::abs(s.classifier_threshold - from.classifier_threshold) +
           std::abs(static_cast<double>(s.min_area - from.min_area)) / std::max(1.0, median_pixels);
  };
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
  result.best = search.best;
  result.best_dice = search.best_dice;
  result.start_dice = search.start_dice;
  result.runners_up = search.runners_up;
  write_postprocess(out, result.best);
  result.written = out;
  return result;
}

}  // namespace pneumo::infer
