// U-Net (Ronneberger et al. 2015) on any encoder, with segmentation_models_pytorch's module
// names (`encoder.*`, `decoder.blocks.N.conv1.0.weight`, `segmentation_head.0.weight`,
// `classification_head.3.weight`), so smp weights load here and ours load there.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>

#include "pneumo/models/encoder.h"
#include "pneumo/models/network.h"

namespace pneumo::models {

struct UNetOptions {
  EncoderOptions encoder;
  std::vector<int64_t> decoder_channels{256, 128, 64, 32, 16};  // one per encoder stage
  std::string upsampling = "nearest";  // nearest | bilinear | transposed
  bool batch_norm = true;
  std::string attention;  // "" or "scse"
  int64_t classes = 1;
  bool aux_head = false;  // an "is there a pneumothorax" logit from the deepest features
  double aux_dropout = 0.0;
};

class DecoderBlockImpl;

class UNetImpl : public Network {
 public:
  // Throws ConfigError when decoder_channels does not have one entry per encoder stage.
  explicit UNetImpl(const UNetOptions& options);
  // masks, and logits [N, 1] from the auxiliary head when it has one.
  ModelOutput forward(const torch::Tensor& x) override;
  std::shared_ptr<torch::nn::Module> encoder() override { return encoder_; }

 private:
  std::shared_ptr<Encoder> encoder_;
  std::vector<torch::nn::Sequential> center_;  // VGG encoders only
  std::vector<std::shared_ptr<DecoderBlockImpl>> blocks_;
  torch::nn::Sequential segmentation_head_{nullptr};
  torch::nn::Sequential classification_head_{nullptr};
};
TORCH_MODULE(UNet);

}  // namespace pneumo::models
