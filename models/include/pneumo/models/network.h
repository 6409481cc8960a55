// What every network returns, so training and inference treat classifiers and segmenters
// alike.
#pragma once

#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

namespace pneumo::models {

struct ModelOutput {
  torch::Tensor masks;                      // [N, classes, H, W] logits; undefined for classifiers
  std::vector<torch::Tensor> extra_masks;   // deep supervision / earlier stages, same shape
  torch::Tensor logits;                     // classifier logits, or a segmenter's auxiliary head
};

class Network : public torch::nn::Module {
 public:
  virtual ModelOutput forward(const torch::Tensor& x) = 0;
  virtual bool is_segmenter() const { return true; }
};

// The image-level pneumothorax logit [N] a network gives: a segmenter's auxiliary head, or
// the classifier's output (its one class, or class 7, Pneumothorax, of the 14 ChestX-ray14
// findings); undefined when the network has none.
torch::Tensor pneumothorax_logit(const ModelOutput& out, bool segmenter);

// Moves every 4-D parameter and buffer of `module` (convolution weights) to channels-last
// (NHWC) memory order; the values are unchanged. Do it before building the optimiser.
void use_channels_last(torch::nn::Module& module);

}  // namespace pneumo::models
