// Double U-Net (Jha et al. 2020), as published: a VGG19 encoder with four skips, ASPP, a
// decoder of squeeze-excite conv blocks and a first mask; the input multiplied by that mask's
// sigmoid feeds a second encoder (four squeeze-excite conv blocks), ASPP and a decoder taking
// skips from both encoders, giving the second mask. forward returns the second mask as `masks`
// and the first in `extra_masks`, both as logits.
#pragma once

#include <memory>
#include <string>

#include "pneumo/models/encoder.h"
#include "pneumo/models/network.h"

namespace pneumo::models {

struct DoubleUNetOptions {
  std::string encoder = "vgg19";  // vgg19 | vgg19_bn (the first encoder)
  int in_channels = 1;
  int64_t classes = 1;
  bool aux_head = false;
};

class DoubleUNetImpl : public Network {
 public:
  explicit DoubleUNetImpl(const DoubleUNetOptions& options);
  ModelOutput forward(const torch::Tensor& x) override;
  std::shared_ptr<torch::nn::Module> encoder() override { return encoder1_; }  // the pretrainable VGG19
  // Both encoders: the VGG19 and the second, squeeze-excite one.
  std::vector<torch::Tensor> encoder_parameters() override;

 private:
  std::shared_ptr<Encoder> encoder1_;
  std::shared_ptr<torch::nn::Module> aspp1_, decoder1_, encoder2_, aspp2_, decoder2_;
  torch::nn::Conv2d output1_{nullptr}, output2_{nullptr};
  torch::nn::Sequential classification_head_{nullptr};
};
TORCH_MODULE(DoubleUNet);

}  // namespace pneumo::models
