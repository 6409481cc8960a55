// `pneumo evaluate` on an image-level class table: CheXNet's table (AUC per class and their
// mean), with the average precision and the counts of each class, and a ROC curve per class.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "pneumo/infer/evaluate.h"

namespace pneumo::infer {

// The predictions of a class-table evaluation, in image order: row-major [images, classes].
struct ClassPredictions {
  std::vector<std::string> classes;
  std::vector<std::string> ids;
  std::vector<double> scores;  // probabilities
  std::vector<float> targets;  // 1, 0 or NaN (ignored)
};

// Each class's AUC, AP and counts (ignored targets left out), and their mean AUC.
std::vector<ClassMetrics> class_metrics(const ClassPredictions& predictions, double& mean_auc);

// Writes class_metrics.csv (class,auc,average_precision,positives,negatives,ignored),
// per_image.csv (ImageId, then p:<class> and truth:<class> for each class; truth blank where
// ignored), roc_classes.png (every class) and roc/<class>.png.
void write_class_report(const std::filesystem::path& out, const ClassPredictions& predictions,
                        const std::vector<ClassMetrics>& metrics);

}  // namespace pneumo::infer
