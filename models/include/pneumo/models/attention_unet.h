// Attention U-Net (Oktay et al. 2018): a U-Net whose skips pass through additive attention
// gates, alpha = sigmoid(psi(relu(W_g g + W_x x))), gated skip = x * alpha.
//
// On the plain encoder (`encoder.name: plain`, widths default 16..256 as the seed used) the
// module names follow the widely used PyTorch AttU_Net (Conv1..Conv5, Up5, Att5, Up_conv5, ...,
// Conv_1x1); on a ResNet34 encoder the encoder is `encoder.*` and the same decoder names follow,
// plus Up1/Up_conv1 back to full resolution.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/nn/modules/container/sequential.h>

#include "pneumo/models/encoder.h"
#include "pneumo/models/network.h"

namespace pneumo::models {

struct AttentionUNetOptions {
  std::string encoder = "plain";  // plain | resnet34
  int in_channels = 1;
  std::vector<int64_t> widths{16, 32, 64, 128, 256};  // plain encoder, finest first
  int64_t classes = 1;
  bool aux_head = false;
};

// The additive attention gate. forward returns the gated skip; `alpha` the coefficients.
class AttentionGateImpl : public torch::nn::Module {
 public:
  AttentionGateImpl(int64_t gating_channels, int64_t skip_channels, int64_t inner_channels);
  torch::Tensor alpha(const torch::Tensor& g, const torch::Tensor& x);  // [N, 1, H, W] in (0, 1)
  torch::Tensor forward(const torch::Tensor& g, const torch::Tensor& x) { return x * alpha(g, x); }

 private:
  torch::nn::Sequential w_g_{nullptr}, w_x_{nullptr}, psi_{nullptr};
};
TORCH_MODULE(AttentionGate);

class AttentionUNetImpl : public Network {
 public:
  explicit AttentionUNetImpl(const AttentionUNetOptions& options);
  ModelOutput forward(const torch::Tensor& x) override;
  std::shared_ptr<torch::nn::Module> encoder() override { return encoder_; }  // null for the plain encoder
  // The ResNet34 encoder's, or the plain encoder's Conv1..Conv5.
  std::vector<torch::Tensor> encoder_parameters() override;

 private:
  struct Level {
    torch::nn::Sequential up{nullptr};
    AttentionGate gate{nullptr};
    torch::nn::Sequential conv{nullptr};
  };
  AttentionUNetOptions options_;
  std::shared_ptr<Encoder> encoder_;             // resnet34 only
  std::vector<torch::nn::Sequential> down_;      // plain only: Conv1..Conv5
  std::vector<Level> levels_;                    // deepest first: Up5/Att5/Up_conv5 ... Up2/...
  torch::nn::Sequential up1_{nullptr}, up_conv1_{nullptr};  // resnet34 only
  torch::nn::Conv2d head_{nullptr};
  torch::nn::Sequential classification_head_{nullptr};
};
TORCH_MODULE(AttentionUNet);

}  // namespace pneumo::models
