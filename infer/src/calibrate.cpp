#include "pneumo/infer/calibrate.h"

#include <fmt/format.h>
#include <opencv2/core.hpp>

#include "pneumo/core/error.h"
#include "pneumo/infer/cross_validation.h"
#include "pneumo/infer/ensemble.h"

namespace pneumo::infer {

namespace fs = std::filesystem;

CalibrationFigures calibration_figures(const std::vector<double>& probabilities, const std::vector<int>& labels) {
  CalibrationFigures f;
  f.ece = expected_calibration_error(reliability_bins(probabilities, labels, 10, false));
  f.ece_mass = expected_calibration_error(reliability_bins(probabilities, labels, 10, true));
  f.brier = brier_score(probabilities, labels);
  return f;
}

void out_of_fold_scores(const fs::path& top, std::vector<double>& scores, std::vector<int>& labels) {
  for (const int fold : read_cv_manifest(top).folds) {
    if (!has_out_of_fold(top, fold))
      throw core::DataError(fmt::format("{}: fold {} has no out-of-fold predictions yet; finish it with pneumo cv --resume",
                                        top.string(), fold));
    for (const OofImage& image : read_out_of_fold(top, fold)) {
      scores.push_back(image.score);
      labels.push_back(image.truth != "-1" ? 1 : 0);
    }
  }
}

CalibrateResult calibrate(const CalibrateOptions& options) {
  if (options.run.models.empty()) throw core::UsageError("no model given; expected --model CHECKPOINT_OR_RUN_FOLDER");
  if (!options.run.table.empty())
    throw core::UsageError("calibrate fits the pneumothorax probability against masks or SIIM labels; a class table's "
                           "classes are not calibrated (give --labels or --masks)");
  if (!options.run.calibration.empty())
    throw core::UsageError("--calibration names a calibration to use; calibrate fits a new one from the raw scores");
  const fs::path& model = options.run.models.front().path;
  const fs::path home = postprocess_folder_of(model);
  const fs::path out = !options.out.empty() ? options.out : home.empty() ? fs::path() : home / "calibration.yaml";
  if (out.empty())
    throw core::UsageError(fmt::format("{} is not inside a run folder; give --out FILE for the calibration.yaml",
                                       model.string()));
  CalibrateResult result;
  std::vector<double> scores;
  std::vector<int> labels;
  const bool out_of_fold = options.run.labels.empty() && options.run.images.empty() && options.run.masks.empty() &&
                           options.run.models.size() == 1 && is_cv_folder(model);
  if (out_of_fold) {
    out_of_fold_scores(model, scores, labels);
    result.set = fmt::format("out-of-fold predictions of {}", model.string());
  } else {
    LabelledRunOptions run = options.run;
    run.no_calibration = true;  // fitted on the raw scores
    const LabelledRunSummary summary = run_labelled(run, "calibrate", false, [&](Prediction& p, const LabelledTruth& t) {
      scores.push_back(p.score());
      labels.push_back(cv::countNonZero(t.mask) > 0 ? 1 : 0);
    });
    result.set = summary.set;
    result.failures = summary.failures;
  }
  result.calibration = fit_calibration(options.method, scores, labels);
  result.calibration.fitted_on = result.set;
  std::vector<double> calibrated;
  for (double s : scores) calibrated.push_back(result.calibration.apply(s));
  result.before = calibration_figures(scores, labels);
  result.after = calibration_figures(calibrated, labels);
  write_calibration(out, result.calibration);
  result.written = out;
  return result;
}

std::string calibration_caveat(const CalibrateResult& r) {
  if (!(r.after.ece > r.before.ece)) return "";
  return fmt::format(
      "the ECE rose on the fitting images: the scores already separate them (Brier {:.4f}), and Platt's smoothed "
      "targets ({} of {} positive) keep the fit from the full confidence their 0/1 labels ask for",
      r.before.brier, r.calibration.positives, r.calibration.images);
}

}  // namespace pneumo::infer
