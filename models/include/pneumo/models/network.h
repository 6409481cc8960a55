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

}  // namespace pneumo::models
