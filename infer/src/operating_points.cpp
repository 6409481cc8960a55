#include "pneumo/infer/operating_points.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>

#include <fmt/format.h>

#include "pneumo/core/error.h"
#include "pneumo/core/random.h"

namespace pneumo::infer {

namespace {

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

// Every distinct threshold (each distinct score, highest first) with its sensitivity and
// specificity; `keep(point)` says whether it reaches the target, `better(a, b)` which is better.
template <class Keep, class Better>
ThresholdPoint best_point(const std::vector<double>& scores, const std::vector<int>& labels, Keep keep, Better better) {
  if (scores.size() != labels.size()) throw core::Error("operating point: scores and labels differ in size");
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  const auto positives = static_cast<double>(std::count(labels.begin(), labels.end(), 1));
  const double negatives = static_cast<double>(labels.size()) - positives;
  ThresholdPoint best{kNan, kNan, kNan};
  if (positives == 0 || negatives == 0) return best;
  double tp = 0, fp = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    (labels[order[k]] == 1 ? tp : fp) += 1;
    if (k + 1 < order.size() && scores[order[k + 1]] == scores[order[k]]) continue;
    const ThresholdPoint p{scores[order[k]], tp / positives, 1.0 - fp / negatives};
    if (keep(p) && (std::isnan(best.threshold) || better(p, best))) best = p;
  }
  return best;
}

double percentile(std::vector<double> sorted_values, double q) {
  if (sorted_values.empty()) return kNan;
  const double position = q * static_cast<double>(sorted_values.size() - 1);
  const auto below = static_cast<size_t>(std::floor(position));
  const size_t above = std::min(below + 1, sorted_values.size() - 1);
  const double share = position - static_cast<double>(below);
  return sorted_values[below] * (1 - share) + sorted_values[above] * share;
}

}  // namespace

std::string OperatingPointTarget::describe() const {
  return fmt::format("{} >= {:.4g}", sensitivity ? "sensitivity" : "specificity", level);
}

OperatingPointTarget parse_operating_point(const std::string& text) {
  const size_t equals = text.find('=');
  const std::string name = text.substr(0, equals);
  OperatingPointTarget target;
  const auto refuse = [&] {
    throw core::UsageError(fmt::format("operating point '{}': expected sensitivity=S or specificity=S with S in "
                                       "(0, 1], e.g. sensitivity=0.95",
                                       text));
  };
  if (equals == std::string::npos || (name != "sensitivity" && name != "specificity")) refuse();
  target.sensitivity = name == "sensitivity";
  const std::string value = text.substr(equals + 1);
  char* end = nullptr;
  target.level = std::strtod(value.c_str(), &end);
  if (value.empty() || end != value.c_str() + value.size() || !(target.level > 0 && target.level <= 1)) refuse();
  return target;
}

ThresholdPoint sensitivity_at_specificity(const std::vector<double>& scores, const std::vector<int>& labels,
                                          double specificity) {
  return best_point(
      scores, labels, [&](const ThresholdPoint& p) { return p.specificity >= specificity - 1e-12; },
      [](const ThresholdPoint& a, const ThresholdPoint& b) {
        return a.sensitivity > b.sensitivity || (a.sensitivity == b.sensitivity && a.specificity > b.specificity);
      });
}

ThresholdPoint specificity_at_sensitivity(const std::vector<double>& scores, const std::vector<int>& labels,
                                          double sensitivity) {
  return best_point(
      scores, labels, [&](const ThresholdPoint& p) { return p.sensitivity >= sensitivity - 1e-12; },
      [](const ThresholdPoint& a, const ThresholdPoint& b) {
        return a.specificity > b.specificity || (a.specificity == b.specificity && a.sensitivity > b.sensitivity);
      });
}

std::vector<Interval> bootstrap(size_t images, const std::vector<std::string>& groups, const BootstrapOptions& options,
                                const std::function<std::vector<double>(const std::vector<size_t>&)>& statistics) {
  if (!groups.empty() && groups.size() != images) throw core::Error("bootstrap: one group per image expected");
  if (options.resamples < 1 || !(options.level > 0 && options.level < 1))
    throw core::UsageError("bootstrap: expected at least one resample and a level between 0 and 1");
  // The units drawn: patients (their images together) or single images.
  std::vector<std::vector<size_t>> units;
  bool grouped = false;
  for (const std::string& g : groups) grouped = grouped || !g.empty();
  if (grouped) {
    std::map<std::string, size_t> unit_of;
    for (size_t i = 0; i < images; ++i) {
      const std::string key = groups[i].empty() ? "\x01image " + std::to_string(i) : groups[i];
      const auto [it, added] = unit_of.emplace(key, units.size());
      if (added) units.emplace_back();
      units[it->second].push_back(i);
    }
  } else {
    for (size_t i = 0; i < images; ++i) units.push_back({i});
  }
  std::vector<size_t> all(images);
  std::iota(all.begin(), all.end(), 0);
  const std::vector<double> estimates = statistics(all);
  std::vector<std::vector<double>> draws(estimates.size());
  core::Rng rng(options.seed);
  std::vector<size_t> indices;
  for (int r = 0; r < options.resamples && !units.empty(); ++r) {
    indices.clear();
    for (size_t u = 0; u < units.size(); ++u) {
      const auto& unit = units[static_cast<size_t>(rng.randint(0, static_cast<int64_t>(units.size()) - 1))];
      indices.insert(indices.end(), unit.begin(), unit.end());
    }
    const std::vector<double> values = statistics(indices);
    for (size_t s = 0; s < values.size() && s < draws.size(); ++s)
      if (!std::isnan(values[s])) draws[s].push_back(values[s]);
  }
  std::vector<Interval> out;
  const double tail = (1 - options.level) / 2;
  for (size_t s = 0; s < estimates.size(); ++s) {
    std::sort(draws[s].begin(), draws[s].end());
    out.push_back({estimates[s], percentile(draws[s], tail), percentile(draws[s], 1 - tail),
                   static_cast<int64_t>(draws[s].size())});
  }
  return out;
}

}  // namespace pneumo::infer
