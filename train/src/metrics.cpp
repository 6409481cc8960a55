#include "pneumo/train/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <fmt/format.h>
#include <torch/torch.h>

#include "pneumo/core/error.h"

namespace pneumo::train {

namespace {

// Intersection and both areas per image, as float64 [N] tensors.
struct Overlap {
  torch::Tensor intersection, predicted, truth;
};

Overlap overlap(const torch::Tensor& predicted, const torch::Tensor& truth) {
  if (predicted.sizes() != truth.sizes() || predicted.dim() < 2)
    throw core::ModelError("mask metrics: predicted and true masks must have the same [N, ...] shape");
  const int64_t n = predicted.size(0);
  const torch::Tensor p = (predicted != 0).reshape({n, -1}).to(torch::kFloat64);
  const torch::Tensor t = (truth != 0).reshape({n, -1}).to(torch::kFloat64);
  return {(p * t).sum(1), p.sum(1), t.sum(1)};
}

}  // namespace

torch::Tensor kaggle_dice(const torch::Tensor& predicted, const torch::Tensor& truth) {
  const Overlap o = overlap(predicted, truth);
  const torch::Tensor total = o.predicted + o.truth;
  return torch::where(total == 0, torch::ones_like(total), 2 * o.intersection / total.clamp_min(1));
}

torch::Tensor iou(const torch::Tensor& predicted, const torch::Tensor& truth) {
  const Overlap o = overlap(predicted, truth);
  const torch::Tensor uni = o.predicted + o.truth - o.intersection;
  return torch::where(uni == 0, torch::ones_like(uni), o.intersection / uni.clamp_min(1));
}

torch::Tensor tgs_iou(const torch::Tensor& predicted, const torch::Tensor& truth) {
  const Overlap o = overlap(predicted, truth);
  const torch::Tensor value = (o.intersection + 1e-10) / (o.predicted + o.truth - o.intersection + 1e-10);
  torch::Tensor score = torch::zeros_like(value);
  for (int k = 0; k < 10; ++k) score += (value > 0.5 + 0.05 * k).to(torch::kFloat64);  // np.arange(0.5, 1, 0.05)
  return score / 10;
}

BinaryMetrics binary_metrics(const std::vector<double>& scores, const std::vector<int>& labels, double threshold) {
  if (scores.size() != labels.size())
    throw core::ModelError(fmt::format("binary metrics: {} scores for {} labels", scores.size(), labels.size()));
  BinaryMetrics m;
  m.threshold = threshold;
  int64_t positives = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (labels[i] != 0 && labels[i] != 1) throw core::ModelError("binary metrics: labels must be 0 or 1");
    positives += labels[i];
    const bool predicted = scores[i] >= threshold;
    if (predicted && labels[i]) ++m.tp;
    if (predicted && !labels[i]) ++m.fp;
    if (!predicted && !labels[i]) ++m.tn;
    if (!predicted && labels[i]) ++m.fn;
  }
  const int64_t negatives = static_cast<int64_t>(scores.size()) - positives;
  m.precision = m.tp + m.fp > 0 ? static_cast<double>(m.tp) / static_cast<double>(m.tp + m.fp) : 0.0;
  m.recall = positives > 0 ? static_cast<double>(m.tp) / static_cast<double>(positives) : 0.0;
  m.f1 = m.precision + m.recall > 0 ? 2 * m.precision * m.recall / (m.precision + m.recall) : 0.0;
  m.specificity = negatives > 0 ? static_cast<double>(m.tn) / static_cast<double>(negatives) : 0.0;

  // Sorted by score, highest first; ties form one group (one threshold).
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  const double nan = std::numeric_limits<double>::quiet_NaN();

  // AUC = the Mann-Whitney statistic: positives ranked above negatives, ties counting half.
  if (positives == 0 || negatives == 0) {
    m.auc = nan;
  } else {
    double above = 0.0;
    int64_t negatives_seen = 0;
    for (size_t i = 0; i < order.size();) {
      size_t j = i;
      int64_t group_pos = 0, group_neg = 0;
      while (j < order.size() && scores[order[j]] == scores[order[i]]) {
        (labels[order[j]] ? group_pos : group_neg) += 1;
        ++j;
      }
      // Positives in this group beat the negatives below (not yet seen) and half the tied ones.
      above += static_cast<double>(group_pos) *
               (static_cast<double>(negatives - negatives_seen - group_neg) + 0.5 * static_cast<double>(group_neg));
      negatives_seen += group_neg;
      i = j;
    }
    m.auc = above / (static_cast<double>(positives) * static_cast<double>(negatives));
  }
  // Average precision: sum over thresholds of (recall step) * precision.
  if (positives == 0) {
    m.average_precision = nan;
  } else {
    double ap = 0.0, previous_recall = 0.0;
    int64_t tp = 0, fp = 0;
    for (size_t i = 0; i < order.size();) {
      size_t j = i;
      while (j < order.size() && scores[order[j]] == scores[order[i]]) {
        (labels[order[j]] ? tp : fp) += 1;
        ++j;
      }
      const double recall = static_cast<double>(tp) / static_cast<double>(positives);
      ap += (recall - previous_recall) * static_cast<double>(tp) / static_cast<double>(tp + fp);
      previous_recall = recall;
      i = j;
    }
    m.average_precision = ap;
  }
  return m;
}

ClassColumn class_column(const std::vector<double>& scores, const std::vector<float>& targets, size_t classes,
                         size_t c) {
  if (classes == 0 || scores.size() != targets.size() || scores.size() % classes != 0 || c >= classes)
    throw core::ModelError(fmt::format("class metrics: {} scores and {} targets for {} classes", scores.size(),
                                       targets.size(), classes));
  ClassColumn column;
  for (size_t i = c; i < scores.size(); i += classes) {
    if (std::isnan(targets[i])) continue;
    column.scores.push_back(scores[i]);
    column.labels.push_back(targets[i] > 0.5f ? 1 : 0);
  }
  return column;
}

ClassAucs class_aucs(const std::vector<double>& scores, const std::vector<float>& targets, size_t classes) {
  ClassAucs out;
  double sum = 0.0;
  int counted = 0;
  for (size_t c = 0; c < classes; ++c) {
    const ClassColumn column = class_column(scores, targets, classes, c);
    const double auc = binary_metrics(column.scores, column.labels, 0.5).auc;
    out.per_class.push_back(auc);
    if (!std::isnan(auc)) sum += auc, ++counted;
  }
  out.mean = counted > 0 ? sum / counted : std::numeric_limits<double>::quiet_NaN();
  return out;
}

}  // namespace pneumo::train
