// Calibrated image-level probabilities: how sure the model is, stated so that of the images
// called 80% likely, about 80% have a pneumothorax.
//
// `pneumo calibrate` fits a map from the ensemble's image-level score (Prediction::score()) to a
// calibrated probability on labelled images the models did not train on (a run's validation
// fold, or a CV folder's out-of-fold predictions) and stores it as the run's calibration.yaml;
// predict, serve, pacs and export then report the calibrated probability beside the score. The
// decisions (post-processing, the gate) stay on the raw score, so tuned thresholds keep their
// meaning.
//   - temperature: p = sigmoid(logit(score) / T), T fitted by maximum likelihood with Platt's
//     smoothed targets ((positives + 1) / (positives + 2) and 1 / (negatives + 2)), which keeps
//     T finite when the scores separate the classes perfectly; monotone, so AUC is unchanged.
//   - isotonic: the pool-adjacent-violators fit of the labels on the scores, applied by linear
//     interpolation between its blocks' ends and clipped outside them (as scikit-learn's
//     IsotonicRegression(out_of_bounds="clip")); flexible, needs more images, may tie scores.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "pneumo/core/config_schema.h"

namespace pneumo::infer {

struct Calibration {
  std::string method = "temperature";  // "temperature" or "isotonic"
  double temperature = 1.0;
  std::vector<double> scores, probabilities;  // isotonic: the fitted points, scores ascending
  std::string fitted_on;                      // what it was fitted on (a set, "out-of-fold")
  int64_t images = 0, positives = 0;

  // The calibrated probability of a raw score in 0..1.
  double apply(double score) const;
  // "temperature T=1.234" or "isotonic, 12 points".
  std::string describe() const;
  // What makes it unusable, or "" (a temperature outside 1e-6..1e6; isotonic points that are
  // missing, unpaired, outside 0..1 or not ascending).
  std::string problem() const;

  // calibration.yaml's `calibration:` section.
  template <class V>
  void visit(V& v) {
    v("method", method, "temperature or isotonic", core::one_of({"temperature", "isotonic"}));
    v("temperature", temperature, "temperature: p = sigmoid(logit(score) / T)", core::in_range(1e-6, 1e6));
    v("scores", scores, "isotonic: the fitted points' scores, ascending");
    v("probabilities", probabilities, "isotonic: the fitted points' probabilities");
    v("fitted_on", fitted_on, "the images it was fitted on");
    v("images", images, "how many", core::at_least<int64_t>(0));
    v("positives", positives, "how many of them positive", core::at_least<int64_t>(0));
  }
};

// Throws DataError when the labels lack a positive or a negative, or sizes differ.
Calibration fit_temperature(const std::vector<double>& scores, const std::vector<int>& labels);
Calibration fit_isotonic(const std::vector<double>& scores, const std::vector<int>& labels);
Calibration fit_calibration(const std::string& method, const std::vector<double>& scores, const std::vector<int>& labels);

// calibration.yaml: `calibration: {method, temperature | scores + probabilities, fitted_on,
// images, positives}`. read_calibration throws ConfigError naming the file and key.
Calibration read_calibration(const std::filesystem::path& file);
void write_calibration(const std::filesystem::path& file, const Calibration& calibration);

// The calibration as a JSON object's text ({"method", "temperature" | "scores" + "probabilities",
// "fitted_on", "images", "positives"}), as pneumo.json of an export and metrics.json hold it,
// and back (throws DataError saying what is wrong).
std::string calibration_to_json(const Calibration& calibration);
Calibration calibration_from_json(const std::string& text);

// One bin of a reliability diagram: the images whose score fell in [lower, upper].
struct ReliabilityBin {
  double lower = 0, upper = 0;
  int64_t count = 0;
  double mean_score = 0;  // mean predicted probability (confidence)
  double observed = 0;    // share of positives
};

// `bins` equal-width bins over 0..1 (empty bins are left out), or with `equal_mass` bins of as
// equal a count as the images allow (ties stay together).
std::vector<ReliabilityBin> reliability_bins(const std::vector<double>& scores, const std::vector<int>& labels,
                                             int bins, bool equal_mass);

// Expected calibration error: sum over bins of count / N * |observed - mean_score|.
double expected_calibration_error(const std::vector<ReliabilityBin>& bins);
// Mean squared difference between probability and the 0/1 label.
double brier_score(const std::vector<double>& scores, const std::vector<int>& labels);

}  // namespace pneumo::infer
