#include "pneumo/infer/calibration.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "pneumo/core/config_node.h"
#include "pneumo/core/config_schema.h"
#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"

namespace pneumo::infer {

namespace {

constexpr double kSmallest = 1e-7;  // scores are clipped to [kSmallest, 1 - kSmallest] before the logit

double logit(double p) {
  p = std::clamp(p, kSmallest, 1.0 - kSmallest);
  return std::log(p / (1.0 - p));
}

double sigmoid(double z) { return z >= 0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z)); }

void check_labels(const std::vector<double>& scores, const std::vector<int>& labels, int64_t& positives) {
  if (scores.size() != labels.size())
    throw core::DataError(fmt::format("calibration: {} scores but {} labels", scores.size(), labels.size()));
  positives = std::count(labels.begin(), labels.end(), 1);
  if (positives == 0 || positives == static_cast<int64_t>(labels.size()))
    throw core::DataError(fmt::format("calibration needs positive and negative images; the {} image(s) given are all {}",
                                      labels.size(), positives == 0 ? "negative" : "positive"));
  for (double s : scores)
    if (!(s >= 0.0 && s <= 1.0)) throw core::DataError(fmt::format("calibration: score {} is not a probability", s));
}

}  // namespace

double Calibration::apply(double score) const {
  if (method == "temperature") return sigmoid(logit(score) / temperature);
  if (scores.empty()) return score;
  if (score <= scores.front()) return probabilities.front();
  if (score >= scores.back()) return probabilities.back();
  const size_t i = static_cast<size_t>(std::upper_bound(scores.begin(), scores.end(), score) - scores.begin());
  const double x0 = scores[i - 1], x1 = scores[i], y0 = probabilities[i - 1], y1 = probabilities[i];
  return x1 > x0 ? y0 + (y1 - y0) * (score - x0) / (x1 - x0) : y1;
}

std::string Calibration::describe() const {
  if (method == "temperature") return fmt::format("temperature T={:.4g}", temperature);
  return fmt::format("isotonic, {} points", scores.size());
}

std::string Calibration::problem() const {
  if (method == "temperature")
    return temperature >= 1e-6 && temperature <= 1e6 ? "" : fmt::format("temperature {}: expected 1e-6..1e6", temperature);
  if (method != "isotonic") return fmt::format("method '{}': expected temperature or isotonic", method);
  if (scores.empty() || scores.size() != probabilities.size())
    return fmt::format("scores/probabilities: expected as many probabilities as scores, at least one; got {} and {}",
                       scores.size(), probabilities.size());
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!(scores[i] >= 0 && scores[i] <= 1) || !(probabilities[i] >= 0 && probabilities[i] <= 1))
      return fmt::format("scores/probabilities: point {} is not within 0..1", i + 1);
    if (i > 0 && (scores[i] < scores[i - 1] || probabilities[i] < probabilities[i - 1]))
      return fmt::format("scores/probabilities: point {} breaks the ascending order", i + 1);
  }
  return "";
}

Calibration fit_temperature(const std::vector<double>& scores, const std::vector<int>& labels) {
  Calibration c;
  c.method = "temperature";
  check_labels(scores, labels, c.positives);
  c.images = static_cast<int64_t>(scores.size());
  const double negatives = static_cast<double>(c.images - c.positives);
  const double high = (static_cast<double>(c.positives) + 1.0) / (static_cast<double>(c.positives) + 2.0);
  const double low = 1.0 / (negatives + 2.0);
  std::vector<double> z(scores.size()), target(scores.size());
  for (size_t i = 0; i < scores.size(); ++i) z[i] = logit(scores[i]), target[i] = labels[i] == 1 ? high : low;
  // The negative log-likelihood is convex in a = 1/T; its derivative sum((sigmoid(a z) - t) z)
  // grows with a, so its root is found by bisection (on log a).
  const auto slope = [&](double a) {
    double sum = 0;
    for (size_t i = 0; i < z.size(); ++i) sum += (sigmoid(a * z[i]) - target[i]) * z[i];
    return sum;
  };
  double lo = std::log(1e-4), hi = std::log(1e4);
  if (slope(std::exp(lo)) >= 0) {
    hi = lo;  // the scores carry (almost) no information: flatten as far as allowed
  } else if (slope(std::exp(hi)) <= 0) {
    lo = hi;
  } else {
    for (int step = 0; step < 200 && hi - lo > 1e-12; ++step) {
      const double mid = (lo + hi) / 2;
      (slope(std::exp(mid)) < 0 ? lo : hi) = mid;
    }
  }
  c.temperature = 1.0 / std::exp((lo + hi) / 2);
  return c;
}

Calibration fit_isotonic(const std::vector<double>& scores, const std::vector<int>& labels) {
  Calibration c;
  c.method = "isotonic";
  check_labels(scores, labels, c.positives);
  c.images = static_cast<int64_t>(scores.size());
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  struct Block {
    double sum = 0, weight = 0, low = 0, high = 0;
    double value() const { return sum / weight; }
  };
  std::vector<Block> blocks;
  for (size_t k = 0; k < order.size();) {  // equal scores form one block from the start
    Block b{0, 0, scores[order[k]], scores[order[k]]};
    for (; k < order.size() && scores[order[k]] == b.low; ++k) b.sum += labels[order[k]], b.weight += 1;
    blocks.push_back(b);
    while (blocks.size() > 1 && blocks[blocks.size() - 2].value() >= blocks.back().value()) {
      Block last = blocks.back();
      blocks.pop_back();
      blocks.back().sum += last.sum;
      blocks.back().weight += last.weight;
      blocks.back().high = last.high;
    }
  }
  for (const Block& b : blocks) {
    c.scores.push_back(b.low), c.probabilities.push_back(b.value());
    if (b.high > b.low) c.scores.push_back(b.high), c.probabilities.push_back(b.value());
  }
  return c;
}

Calibration fit_calibration(const std::string& method, const std::vector<double>& scores,
                            const std::vector<int>& labels) {
  if (method == "temperature") return fit_temperature(scores, labels);
  if (method == "isotonic") return fit_isotonic(scores, labels);
  throw core::UsageError(fmt::format("calibration method '{}': expected temperature or isotonic", method));
}

Calibration read_calibration(const std::filesystem::path& file) {
  const core::ConfigNode root = core::load_yaml_file(file);
  const core::ConfigNode* node = root.find("calibration");
  if (node == nullptr)
    throw core::ConfigError(file.string() + ": no calibration: section; expected what pneumo calibrate writes");
  const auto c = core::read_section<Calibration>(*node, "calibration");
  if (const std::string problem = c.problem(); !problem.empty())
    throw core::ConfigError(fmt::format("{}: calibration.{}", file.string(), problem));
  return c;
}

void write_calibration(const std::filesystem::path& file, const Calibration& c) {
  core::ConfigNode root = core::ConfigNode::map();
  root.set("calibration", core::write_section(c));
  core::write_file_atomic(file, core::to_yaml(root, true));
}

std::string calibration_to_json(const Calibration& c) {
  nlohmann::ordered_json j;
  j["method"] = c.method;
  if (c.method == "temperature") {
    j["temperature"] = c.temperature;
  } else {
    j["scores"] = c.scores;
    j["probabilities"] = c.probabilities;
  }
  j["fitted_on"] = c.fitted_on;
  j["images"] = c.images;
  j["positives"] = c.positives;
  return j.dump();
}

Calibration calibration_from_json(const std::string& text) {
  Calibration c;
  try {
    const auto j = nlohmann::json::parse(text);
    c.method = j.at("method").get<std::string>();
    if (c.method == "temperature") {
      c.temperature = j.at("temperature").get<double>();
    } else if (c.method == "isotonic") {
      c.scores = j.at("scores").get<std::vector<double>>();
      c.probabilities = j.at("probabilities").get<std::vector<double>>();
    }
    c.fitted_on = j.value("fitted_on", "");
    c.images = j.value("images", int64_t{0});
    c.positives = j.value("positives", int64_t{0});
  } catch (const nlohmann::json::exception& e) {
    throw core::DataError(fmt::format("calibration: {}", e.what()));
  }
  if (const std::string problem = c.problem(); !problem.empty())
    throw core::DataError(fmt::format("calibration: {}", problem));
  return c;
}

std::vector<ReliabilityBin> reliability_bins(const std::vector<double>& scores, const std::vector<int>& labels,
                                             int bins, bool equal_mass) {
  if (scores.size() != labels.size() || bins < 1) throw core::Error("reliability_bins: bad arguments");
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  // The bin index of each image in score order.
  std::vector<int> bin_of(order.size());
  for (size_t k = 0; k < order.size(); ++k) {
    const double s = scores[order[k]];
    bin_of[k] = equal_mass ? static_cast<int>(k * static_cast<size_t>(bins) / order.size())
                           : std::min(bins - 1, static_cast<int>(std::floor(s * bins)));
    if (equal_mass && k > 0 && scores[order[k - 1]] == s) bin_of[k] = bin_of[k - 1];  // ties stay together
  }
  std::vector<ReliabilityBin> out;
  for (size_t k = 0; k < order.size();) {
    ReliabilityBin b;
    const int bin = bin_of[k];
    b.lower = equal_mass ? scores[order[k]] : static_cast<double>(bin) / bins;
    for (; k < order.size() && bin_of[k] == bin; ++k) {
      ++b.count;
      b.mean_score += scores[order[k]];
      b.observed += labels[order[k]] == 1 ? 1.0 : 0.0;
      if (equal_mass) b.upper = scores[order[k]];
    }
    if (!equal_mass) b.upper = static_cast<double>(bin + 1) / bins;
    b.mean_score /= static_cast<double>(b.count);
    b.observed /= static_cast<double>(b.count);
    out.push_back(b);
  }
  return out;
}

double expected_calibration_error(const std::vector<ReliabilityBin>& bins) {
  int64_t total = 0;
  double sum = 0;
  for (const ReliabilityBin& b : bins) total += b.count, sum += static_cast<double>(b.count) * std::abs(b.observed - b.mean_score);
  return total > 0 ? sum / static_cast<double>(total) : 0.0;
}

double brier_score(const std::vector<double>& scores, const std::vector<int>& labels) {
  if (scores.empty()) return 0.0;
  double sum = 0;
  for (size_t i = 0; i < scores.size(); ++i) sum += std::pow(scores[i] - (labels[i] == 1 ? 1.0 : 0.0), 2);
  return sum / static_cast<double>(scores.size());
}

}  // namespace pneumo::infer
