// Segmentation and classification losses, on logits. Formulas follow the seeds (Keras
// `bce_dice_loss` and `weighted_bce_dice_loss`, the SIIM winner's ComboLoss terms, Berman's
// Lovasz hinge) so a recipe's loss transcribes with its weights.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

namespace pneumo::train {

// Mean binary cross-entropy on logits; `pos_weight` scales the positive term.
torch::Tensor bce_loss(const torch::Tensor& logits, const torch::Tensor& targets,
                       std::optional<double> pos_weight = std::nullopt);

// 1 - (2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth), p = sigmoid(logits), summed over
// the whole batch or per image and averaged. smooth 1 is the Keras seeds'; 1e-5 the winner's.
torch::Tensor soft_dice_loss(const torch::Tensor& logits, const torch::Tensor& targets, bool per_image,
                             double smooth = 1.0);

// The SIIM winner's FocalLoss2d on probabilities clamped to [1e-8, 1 - 1e-8]:
// mean(-(1 - pt)^gamma * log(pt)), pt = p for positives and 1 - p for negatives.
torch::Tensor focal_loss(const torch::Tensor& logits, const torch::Tensor& targets, double gamma = 2.0);

// The Keras seeds' weighted_bce_dice_loss: pixels near the mask border (11x11 average of the
// mask strictly between 0.005 and 0.995) weigh 3x, renormalised; weighted BCE + 1 - weighted Dice.
torch::Tensor weighted_bce_dice_loss(const torch::Tensor& logits, const torch::Tensor& targets);

// Lovasz hinge (Berman et al. 2018) on logits, per image (averaged) or over the batch.
torch::Tensor lovasz_hinge_loss(const torch::Tensor& logits, const torch::Tensor& targets, bool per_image);

// Classification BCE on logits [N, C] with label smoothing (targets t(1 - e) + e/2) and optional
// per-class positive weights, averaged over the targets. A NaN target is ignored: left out of
// the mean, its logit gets no gradient (CheXpert's uncertain labels under `ignore`).
torch::Tensor classification_loss(const torch::Tensor& logits, const torch::Tensor& targets,
                                  double label_smoothing = 0.0, const std::vector<double>& pos_weights = {});

// A weighted sum of segmentation terms (`bce`, `dice`, `focal`, `lovasz`, `weighted_bce_dice`),
// the seeds' combinations: {bce: 1, dice: 1} is `bce_dice_loss`; {bce: 3, dice: 1, focal: 4}
// the winner's ComboLoss.
struct ComboLossOptions {
  double bce = 1.0;
  double dice = 1.0;
  double focal = 0.0;
  double lovasz = 0.0;
  double weighted_bce_dice = 0.0;
  bool dice_per_image = false;
  double dice_smooth = 1.0;
  bool lovasz_per_image = true;
  double focal_gamma = 2.0;
  double pos_weight = 1.0;  // BCE weight of positive pixels; 1: unweighted
};
torch::Tensor combo_loss(const torch::Tensor& logits, const torch::Tensor& targets, const ComboLossOptions& options);

// The main mask's loss plus weighted losses of the extra masks (deep supervision, Double U-Net's
// first output): loss(main) + sum_i weights[i] * loss(extra[i]); a missing weight counts as the last.
torch::Tensor deep_supervision_loss(const torch::Tensor& main, const std::vector<torch::Tensor>& extra,
                                    const torch::Tensor& targets, const ComboLossOptions& options,
                                    const std::vector<double>& weights);

}  // namespace pneumo::train
