#include "forward.h"

#include <torch/torch.h>

#include "pneumo/train/losses.h"

namespace pneumo::train {

models::ModelOutput Forward::operator()(models::Network& model, const torch::Tensor& images) const {
  models::ModelOutput out;
  {
    AutocastScope autocast(precision);
    out = model.forward(channels_last ? models::to_channels_last(images) : images);
  }
  if (precision.enabled) {
    const auto to_float = [](const torch::Tensor& x) { return x.defined() ? x.to(torch::kFloat32) : x; };
    out.masks = to_float(out.masks);
    out.logits = to_float(out.logits);
    for (auto& m : out.extra_masks) m = to_float(m);
  }
  return out;
}

torch::Tensor experiment_loss(const models::ModelOutput& out, const data::Batch& b, bool segmenter,
                              const LossSection& l, const std::vector<double>& class_weights) {
  if (!segmenter && b.targets.defined()) return classification_loss(out.logits, b.targets, l.label_smoothing, class_weights);
  if (!segmenter) {
    const torch::Tensor logit = models::pneumothorax_logit(out, false).unsqueeze(1);
    return classification_loss(logit, b.labels.unsqueeze(1), l.label_smoothing,
                               class_weights.empty() ? std::vector<double>{} : std::vector<double>{class_weights[0]});
  }
  torch::Tensor loss = deep_supervision_loss(out.masks, out.extra_masks, b.masks, l, l.extra_mask_weights);
  if (out.logits.defined() && l.aux_weight > 0) loss = loss + l.aux_weight * bce_loss(out.logits.select(1, 0), b.labels);
  return loss;
}

}  // namespace pneumo::train
