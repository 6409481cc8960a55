// Metrics: the Kaggle SIIM metric and IoUs for masks, and the usual binary-classification
// metrics for the classifier and the segmenters' image-level decisions.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace pneumo::train {

// Per-image Dice of binary masks ([N, H, W] or [N, 1, H, W], anything non-zero is inside):
// 2|A n B| / (|A| + |B|), and 1 when both are empty, the Kaggle metric's rule. Returns [N]
// float64. The SIIM score is its mean, computed at the images' full (1024) resolution.
torch::Tensor kaggle_dice(const torch::Tensor& predicted, const torch::Tensor& truth);

// Per-image IoU, 1 when both are empty. [N] float64.
torch::Tensor iou(const torch::Tensor& predicted, const torch::Tensor& truth);

// The TGS Salt stepped IoU the seeds logged: per image, the share of thresholds 0.50, 0.55, ...,
// 0.95 that its IoU ((|A n B| + 1e-10) / (|A u B| + 1e-10)) exceeds. [N] float64.
torch::Tensor tgs_iou(const torch::Tensor& predicted, const torch::Tensor& truth);

struct BinaryMetrics {
  double threshold = 0.5;
  double auc = 0.0;                // NaN when only one class is present
  double average_precision = 0.0;  // scikit-learn's definition; NaN without positives
  double precision = 0.0;          // 0 when nothing is predicted positive
  double recall = 0.0;             // = sensitivity; 0 without positives
  double f1 = 0.0;
  double specificity = 0.0;
  int64_t tp = 0, fp = 0, tn = 0, fn = 0;  // score >= threshold is positive
};

// Throws ModelError when the lengths differ or a label is not 0 or 1.
BinaryMetrics binary_metrics(const std::vector<double>& scores, const std::vector<int>& labels, double threshold);

// One class's scores and 0/1 labels from row-major [images, classes] scores and targets, the
// images whose target is NaN (ignored) left out.
struct ClassColumn {
  std::vector<double> scores;
  std::vector<int> labels;
};
ClassColumn class_column(const std::vector<double>& scores, const std::vector<float>& targets, size_t classes,
                         size_t c);

// The AUC of each class (NaN for a class without both a positive and a negative known target)
// and their mean over the classes that have one (CheXNet's table), NaN when none has.
struct ClassAucs {
  std::vector<double> per_class;
  double mean = 0.0;
};
ClassAucs class_aucs(const std::vector<double>& scores, const std::vector<float>& targets, size_t classes);

}  // namespace pneumo::train
