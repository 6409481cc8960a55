// Operating points of an image-level score and confidence intervals by the bootstrap: the figures
// a radiology team is asked for ("at 95% sensitivity, what specificity, give or take?").
//
// An image is called positive when its score is >= the threshold. Sensitivity at a fixed
// specificity is the highest sensitivity among the thresholds whose specificity reaches the
// target (and the reverse); with no such threshold the point is not found (NaN).
//
// Intervals are percentile bootstrap intervals: `resamples` draws with replacement of the
// images, or of whole patients when each image names its patient (a patient's images stay
// together, as they are not independent), seeded so that the same call gives the same interval.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace pneumo::infer {

// A target a deployment states: "sensitivity=0.95" (the most specific settings that keep at
// least that sensitivity) or "specificity=0.90" (the most sensitive that keep that specificity).
struct OperatingPointTarget {
  bool sensitivity = true;  // the target is a sensitivity; else a specificity
  double level = 0.95;
  std::string describe() const;  // "sensitivity >= 0.95"
};
// Reads "sensitivity=S" or "specificity=S" (S in 0..1, exclusive of 0). Throws UsageError.
OperatingPointTarget parse_operating_point(const std::string& text);

struct ThresholdPoint {
  double threshold = 0;  // NaN when no threshold reaches the target
  double sensitivity = 0, specificity = 0;
};

ThresholdPoint sensitivity_at_specificity(const std::vector<double>& scores, const std::vector<int>& labels,
                                          double specificity);
ThresholdPoint specificity_at_sensitivity(const std::vector<double>& scores, const std::vector<int>& labels,
                                          double sensitivity);

struct Interval {
  double estimate = 0;     // the statistic on all images
  double low = 0, high = 0;  // the 2.5th and 97.5th percentiles over the resamples (NaN if none)
  int64_t resamples = 0;   // resamples where the statistic was defined (e.g. AUC needs both classes)
};

struct BootstrapOptions {
  int resamples = 1000;
  uint64_t seed = 20261203;
  double level = 0.95;
};

// `statistics(indices)` computes several statistics on the images `indices` (with repeats) and
// returns them in a fixed order; NaN marks one undefined on that resample. `groups[i]` names image
// i's patient, or is empty to resample images one by one. Returns one Interval per statistic.
std::vector<Interval> bootstrap(size_t images, const std::vector<std::string>& groups, const BootstrapOptions& options,
                                const std::function<std::vector<double>(const std::vector<size_t>& indices)>& statistics);

}  // namespace pneumo::infer
