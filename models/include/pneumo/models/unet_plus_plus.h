// Nested U-Net / UNet++ (Zhou et al. 2018) on any encoder, with segmentation_models_pytorch's
// module names (`decoder.blocks.x_{d}_{l}.conv1.0.weight`, ...). Optional deep supervision adds
// a mask from each intermediate node of the last nested column (1x1 convolution, upsampled to
// the input size), as extra outputs.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pneumo/models/network.h"
#include "pneumo/models/unet.h"

namespace pneumo::models {

struct UNetPlusPlusOptions : UNetOptions {
  bool deep_supervision = false;
};

class UNetPlusPlusImpl : public Network {
 public:
  explicit UNetPlusPlusImpl(const UNetPlusPlusOptions& options);
  ModelOutput forward(const torch::Tensor& x) override;
  std::shared_ptr<torch::nn::Module> encoder() override { return encoder_; }

 private:
  std::shared_ptr<Encoder> encoder_;
  std::vector<torch::nn::Sequential> center_;
  std::map<std::string, std::shared_ptr<DecoderBlockImpl>> blocks_;
  int depth_ = 0;  // decoder blocks - 1, as smp counts
  torch::nn::Sequential segmentation_head_{nullptr};
  torch::nn::Sequential classification_head_{nullptr};
  std::vector<torch::nn::Conv2d> supervision_heads_;
};
TORCH_MODULE(UNetPlusPlus);

}  // namespace pneumo::models
