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

}  // namespace pneumo::train
