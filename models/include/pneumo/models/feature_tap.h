// A view into a network for explanations (Grad-CAM): while a FeatureTap lives on a thread, the
// first encoder run on that thread hands it the feature map of one stage, still part of the
// autograd graph, so the gradient of an output with respect to it can be taken.
//
//   models::FeatureTap tap(4);                 // stage 4: 1/16 of the input resolution
//   const ModelOutput out = network->forward(x);  // with gradients enabled
//   torch::Tensor grad = torch::autograd::grad({out.logits.sum()}, {tap.features()})[0];
//
// Stages count as Encoder::forward_features does: stage s is the map at 1/2^s of the input
// (1..depth). The classifier's DenseNet121 features are stages too. Taps do not nest.
#pragma once

#include <torch/types.h>

namespace pneumo::models {

class FeatureTap {
 public:
  explicit FeatureTap(int stage);  // throws ModelError when another tap is alive on this thread
  ~FeatureTap();
  FeatureTap(const FeatureTap&) = delete;
  FeatureTap& operator=(const FeatureTap&) = delete;

  int stage() const { return stage_; }
  // The map handed over (undefined when no encoder ran, or its depth is below the stage).
  const torch::Tensor& features() const { return features_; }

  // Called by encoders with each stage's map: kept when a tap for that stage is alive on this
  // thread and has none yet.
  static void offer(int stage, const torch::Tensor& features);

 private:
  int stage_;
  torch::Tensor features_;
};

}  // namespace pneumo::models
