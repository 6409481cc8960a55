// `pneumo calibrate`: fits the calibration of the image-level probability (calibration.h) on
// labelled images the models did not train on and stores it as the run's calibration.yaml,
// which predict, evaluate, serve, pacs and export then use.
//
// The images: by default the run's validation fold (as tune), or --labels/--images or
// --masks/--images; for a cross-validation folder from `pneumo cv` its out-of-fold predictions
// (oof/fold-K.csv: each image scored by the fold that did not train on it), read without
// running a network. Positive means a non-empty truth mask.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "pneumo/infer/calibration.h"
#include "pneumo/infer/labelled_run.h"

namespace pneumo::infer {

struct CalibrateOptions {
  LabelledRunOptions run;
  std::string method = "temperature";  // or "isotonic"
  std::filesystem::path out;           // empty: <run>/calibration.yaml
};

// Calibration figures of scores against labels (10 bins).
struct CalibrationFigures {
  double ece = 0;       // equal-width bins
  double ece_mass = 0;  // equal-mass bins
  double brier = 0;
};
CalibrationFigures calibration_figures(const std::vector<double>& probabilities, const std::vector<int>& labels);

struct CalibrateResult {
  Calibration calibration;
  std::string set;
  CalibrationFigures before, after;  // on the fitting images themselves (optimistic after)
  std::filesystem::path written;
  std::vector<std::pair<std::string, std::string>> failures;
};

CalibrateResult calibrate(const CalibrateOptions& options);

// A sentence for the user when the calibration raised the ECE on the images it was fitted on
// (scores that already separate the classes: Platt's smoothed targets make temperature scaling
// less confident than the 0/1 labels), else "".
std::string calibration_caveat(const CalibrateResult& result);

// What `pneumo cv` and calibrate of a CV folder fit on: every fold's out-of-fold score and
// whether its truth is non-empty. Throws DataError naming a damaged file.
void out_of_fold_scores(const std::filesystem::path& top, std::vector<double>& scores, std::vector<int>& labels);

}  // namespace pneumo::infer
