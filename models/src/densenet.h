// torchvision's DenseNet121 `features` (conv0, norm0, denseblock1..4, transition1..3, norm5),
// shared by the CheXNet classifier and the densenet121 encoder.
#pragma once

#include <utility>

#include <torch/torch.h>

#include "layers.h"

namespace pneumo::models {

class DenseNet121FeaturesImpl : public torch::nn::Module {
 public:
  explicit DenseNet121FeaturesImpl(int64_t in_channels);

  // The whole feature extractor: [N, 1024, H/32, W/32], after norm5 (no final ReLU).
  torch::Tensor forward(torch::Tensor x);

  // segmentation_models_pytorch's stages: 1 = conv0-norm0-relu0; 2..4 = (pool0 +) dense block
  // + transition, whose skip is taken after the transition's ReLU; 5 = block 4 + norm5.
  // Returns (output, skip) where skip is what the encoder reports for that stage.
  std::pair<torch::Tensor, torch::Tensor> stage(int index, torch::Tensor x);

 private:
  torch::nn::Conv2d conv0_{nullptr};
  BatchNorm2d norm0_{nullptr}, norm5_{nullptr};
  std::vector<std::shared_ptr<torch::nn::Module>> blocks_;
  std::vector<std::shared_ptr<torch::nn::Module>> transitions_;
};
TORCH_MODULE(DenseNet121Features);

}  // namespace pneumo::models
