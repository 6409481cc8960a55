#include "pneumo/train/losses.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "pneumo/core/error.h"
#include "pneumo/core/tensor_shape.h"

namespace pneumo::train {

namespace F = torch::nn::functional;

namespace {

void check_same_shape(const torch::Tensor& logits, const torch::Tensor& targets, const char* loss) {
  if (logits.sizes() != targets.sizes())
    throw core::ModelError(fmt::format("{}: logits {} and targets {} differ in shape", loss,
                                       core::shape_string(logits), core::shape_string(targets)));
}

}  // namespace

torch::Tensor bce_loss(const torch::Tensor& logits, const torch::Tensor& targets, std::optional<double> pos_weight) {
  check_same_shape(logits, targets, "bce");
  auto options = F::BinaryCrossEntropyWithLogitsFuncOptions();
  if (pos_weight) options.pos_weight(torch::full({1}, *pos_weight, logits.options()));
  return F::binary_cross_entropy_with_logits(logits, targets, options);
}

torch::Tensor soft_dice_loss(const torch::Tensor& logits, const torch::Tensor& targets, bool per_image, double smooth) {
  check_same_shape(logits, targets, "dice");
  const int64_t rows = per_image ? logits.size(0) : 1;
  const torch::Tensor p = torch::sigmoid(logits).reshape({rows, -1});
  const torch::Tensor t = targets.reshape({rows, -1});
  const torch::Tensor intersection = (p * t).sum(1);
  const torch::Tensor dice = (2 * intersection + smooth) / (p.sum(1) + t.sum(1) + smooth);
  return (1 - dice).mean();
}

torch::Tensor focal_loss(const torch::Tensor& logits, const torch::Tensor& targets, double gamma) {
  check_same_shape(logits, targets, "focal");
  const double eps = 1e-8;
  const torch::Tensor p = torch::sigmoid(logits).reshape(-1).clamp(eps, 1 - eps);
  const torch::Tensor t = targets.reshape(-1).clamp(eps, 1 - eps);
  const torch::Tensor pt = (1 - t) * (1 - p) + t * p;
  return (-(1 - pt).pow(gamma) * torch::log(pt)).mean();
}

torch::Tensor weighted_bce_dice_loss(const torch::Tensor& logits, const torch::Tensor& targets) {
  check_same_shape(logits, targets, "weighted_bce_dice");
  if (logits.dim() != 4) throw core::ModelError("weighted_bce_dice: expected [N, C, H, W] masks");
  const torch::Tensor averaged = F::avg_pool2d(
      targets, F::AvgPool2dFuncOptions(11).stride(1).padding(5).count_include_pad(false));
  const torch::Tensor border = (averaged > 0.005).to(targets.dtype()) * (averaged < 0.995).to(targets.dtype());
  torch::Tensor weight = torch::ones_like(averaged);
  const torch::Tensor w0 = weight.sum();
  weight = weight + border * 2;
  weight = weight * (w0 / weight.sum());
  // Weighted BCE as the Keras seeds wrote it, from the clipped probability's logit.
  const double eps = 1e-7;
  const torch::Tensor z = logits.clamp(std::log(eps / (1 - eps)), std::log((1 - eps) / eps));
  const torch::Tensor bce =
      ((1 - targets) * z + (1 + (weight - 1) * targets) * (torch::log1p(torch::exp(-z.abs())) + torch::relu(-z))).sum() /
      weight.sum();
  const torch::Tensor p = torch::sigmoid(z);
  const torch::Tensor w = weight * weight;
  const torch::Tensor dice = (2 * (w * targets * p).sum() + 1) / ((w * targets).sum() + (w * p).sum() + 1);
  return bce + (1 - dice);
}

namespace {

torch::Tensor lovasz_hinge_flat(const torch::Tensor& logits, const torch::Tensor& labels) {
  if (labels.numel() == 0) return logits.sum() * 0;
  const torch::Tensor signs = 2 * labels - 1;
  const torch::Tensor errors = 1 - logits * signs;
  auto [errors_sorted, perm] = torch::sort(errors, 0, /*descending=*/true);
  const torch::Tensor gt_sorted = labels.index_select(0, perm);
  const torch::Tensor gts = gt_sorted.sum();
  const torch::Tensor intersection = gts - gt_sorted.cumsum(0);
  const torch::Tensor uni = gts + (1 - gt_sorted).cumsum(0);
  torch::Tensor jaccard = 1 - intersection / uni;
  if (jaccard.numel() > 1) {
    using torch::indexing::Slice;
    jaccard = torch::cat({jaccard.index({Slice(0, 1)}), jaccard.index({Slice(1, torch::indexing::None)}) -
                                                            jaccard.index({Slice(0, -1)})});
  }
  return torch::dot(torch::relu(errors_sorted), jaccard.detach());
}

}  // namespace

torch::Tensor lovasz_hinge_loss(const torch::Tensor& logits, const torch::Tensor& targets, bool per_image) {
  check_same_shape(logits, targets, "lovasz");
  if (!per_image) return lovasz_hinge_flat(logits.reshape(-1), targets.reshape(-1));
  std::vector<torch::Tensor> losses;
  for (int64_t i = 0; i < logits.size(0); ++i)
    losses.push_back(lovasz_hinge_flat(logits[i].reshape(-1), targets[i].reshape(-1)));
  return torch::stack(losses).mean();
}

torch::Tensor classification_loss(const torch::Tensor& logits, const torch::Tensor& targets, double label_smoothing,
                                  const std::vector<double>& pos_weights) {
  check_same_shape(logits, targets, "classification");
  const torch::Tensor smoothed = targets * (1 - label_smoothing) + 0.5 * label_smoothing;
  auto options = F::BinaryCrossEntropyWithLogitsFuncOptions();
  if (!pos_weights.empty()) {
    if (logits.dim() != 2 || static_cast<int64_t>(pos_weights.size()) != logits.size(1))
      throw core::ConfigError(fmt::format("class weights: {} values for {} classes", pos_weights.size(),
                                          logits.dim() == 2 ? logits.size(1) : 0));
    options.pos_weight(torch::tensor(pos_weights, logits.options()));
  }
  const torch::Tensor ignored = targets.isnan();
  if (!ignored.any().item<bool>()) return F::binary_cross_entropy_with_logits(logits, smoothed, options);
  // Ignored targets (NaN) are left out of the mean; their logits get no gradient.
  const torch::Tensor known = ignored.logical_not();
  const torch::Tensor filled = torch::where(known, smoothed, torch::zeros_like(smoothed));
  options.reduction(torch::kNone);
  const torch::Tensor per_target = F::binary_cross_entropy_with_logits(logits, filled, options) * known;
  return per_target.sum() / known.sum().clamp_min(1);
}

torch::Tensor combo_loss(const torch::Tensor& logits, const torch::Tensor& targets, const ComboLossOptions& o) {
  torch::Tensor loss = torch::zeros({}, logits.options());
  if (o.bce != 0)
    loss = loss + o.bce * bce_loss(logits, targets, o.pos_weight == 1.0 ? std::nullopt : std::optional<double>(o.pos_weight));
  if (o.dice != 0) loss = loss + o.dice * soft_dice_loss(logits, targets, o.dice_per_image, o.dice_smooth);
  if (o.focal != 0) loss = loss + o.focal * focal_loss(logits, targets, o.focal_gamma);
  if (o.lovasz != 0) loss = loss + o.lovasz * lovasz_hinge_loss(logits, targets, o.lovasz_per_image);
  if (o.weighted_bce_dice != 0) loss = loss + o.weighted_bce_dice * weighted_bce_dice_loss(logits, targets);
  return loss;
}

torch::Tensor deep_supervision_loss(const torch::Tensor& main, const std::vector<torch::Tensor>& extra,
                                    const torch::Tensor& targets, const ComboLossOptions& options,
                                    const std::vector<double>& weights) {
  torch::Tensor loss = combo_loss(main, targets, options);
  for (size_t i = 0; i < extra.size(); ++i) {
    const double w = weights.empty() ? 1.0 : weights[std::min(i, weights.size() - 1)];
    if (w != 0) loss = loss + w * combo_loss(extra[i], targets, options);
  }
  return loss;
}

}  // namespace pneumo::train
