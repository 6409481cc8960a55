// `pneumo evaluate`: an ensemble against ground truth at the images' own resolution.
//
// The report folder holds metrics.json (Kaggle mean Dice, IoU, image-level AUC, AP,
// precision, recall, F1, specificity, confusion matrix), per_image.csv, and the charts
// roc.png, pr.png, confusion.png, dice_histogram.png and worst.png (the lowest-Dice images with
// truth outlined in green and prediction in yellow).
//
// With it, the questions a deployment is asked: calibration of the image-level probability (ECE in
// 10 equal-width and 10 equal-mass bins, Brier score; before and, when the run has a
// calibration.yaml, after calibration) with reliability.png; the operating points (sensitivity at
// specificity 0.90 and 0.95, specificity at sensitivity 0.90 and 0.95, each with its threshold on
// the score); and 95% bootstrap intervals (1000 resamples, seeded; whole patients when the DICOMs
// name them) for mean Dice, AUC and each operating point.
//
// On an image-level class table (a classifier trained with data.table) it holds CheXNet's
// table instead: metrics.json and class_metrics.csv with the AUC, AP and counts of each class
// and the mean AUC, per_image.csv with each class's probability and truth, roc_classes.png and
// roc/<class>.png.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "pneumo/infer/calibrate.h"
#include "pneumo/infer/labelled_run.h"
#include "pneumo/infer/operating_points.h"
#include "pneumo/train/metrics.h"

namespace pneumo::infer {

// Per-image Kaggle Dice (1 when both masks are empty) and IoU of two CV_8UC1 masks.
double mask_dice(const cv::Mat& predicted, const cv::Mat& truth);
double mask_iou(const cv::Mat& predicted, const cv::Mat& truth);

// Points of the ROC curve (false-positive rate, true-positive rate) and of the precision-recall
// curve (recall, precision), one per distinct score, from the highest score down.
std::vector<std::pair<double, double>> roc_curve(const std::vector<double>& scores, const std::vector<int>& labels);
std::vector<std::pair<double, double>> pr_curve(const std::vector<double>& scores, const std::vector<int>& labels);

struct EvaluateOptions {
  LabelledRunOptions run;
  std::filesystem::path out;  // the report folder
  int worst = 16;             // images on the contact sheet
  BootstrapOptions bootstrap;
};

// One row of the operating-point table: `name` ("sensitivity at specificity >= 0.90"), the point
// found on all images, and the interval of the figure it names (the sensitivity in that example).
struct OperatingPointRow {
  std::string name;
  ThresholdPoint point;
  Interval value;
};

// One class of a class-table evaluation.
struct ClassMetrics {
  std::string name;
  double auc = 0.0;                // NaN when the class lacks a positive or a negative
  double average_precision = 0.0;  // NaN without positives
  int64_t positives = 0, negatives = 0, ignored = 0;
};

struct EvaluationReport {
  std::string set;  // what was evaluated
  int64_t images = 0;
  std::vector<ClassMetrics> classes;  // a class table's; empty for masks (then the figures below)
  double mean_auc = 0.0;              // over the classes with an AUC
  double dice = 0, iou = 0;  // means over images
  train::BinaryMetrics image;  // image-level decision (score vs truth positive)
  PostprocessSection postprocess;
  std::vector<std::pair<std::string, std::string>> failures;

  CalibrationFigures raw;                      // of the raw score
  std::optional<CalibrationFigures> calibrated;  // of the calibrated probability, when there is a calibration
  std::string calibration;                     // its description and what it was fitted on, or empty
  bool calibrated_on_same_set = false;         // fitted on the images evaluated (then "after" is optimistic)
  std::vector<OperatingPointRow> operating_points;
  Interval dice_interval, auc_interval;
  int64_t patients = 0;  // resampling units when patients are known; 0: images were resampled
};

EvaluationReport evaluate(const EvaluateOptions& options);

}  // namespace pneumo::infer
