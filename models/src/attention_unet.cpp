#include "pneumo/models/attention_unet.h"

#include <fmt/format.h>

#include "blocks.h"
#include "layers.h"
#include "pneumo/core/error.h"

namespace pneumo::models {

namespace nn = torch::nn;

namespace {

// conv_block: (conv 3x3 with bias, BN, ReLU) x 2, under the name `conv`.
nn::Sequential conv_block(int64_t in, int64_t out) {
  return nn::Sequential(conv(in, out, 3, 1, 1, true), batch_norm(out), nn::ReLU(nn::ReLUOptions(true)),
                        conv(out, out, 3, 1, 1, true), batch_norm(out), nn::ReLU(nn::ReLUOptions(true)));
}

// up_conv: nearest x2, conv 3x3 with bias, BN, ReLU, under the name `up`.
nn::Sequential up_conv(int64_t in, int64_t out) {
  return nn::Sequential(nn::Upsample(nn::UpsampleOptions().scale_factor(std::vector<double>{2, 2}).mode(torch::kNearest)),
                        conv(in, out, 3, 1, 1, true), batch_norm(out), nn::ReLU(nn::ReLUOptions(true)));
}

// Registers `seq` as <name>.<inner>.N, the AttU_Net layout.
nn::Sequential wrapped(nn::Module& parent, const std::string& name, const std::string& inner, nn::Sequential seq) {
  auto holder = parent.register_module(name, std::make_shared<nn::Module>());
  return holder->register_module(inner, seq);
}

}  // namespace

AttentionGateImpl::AttentionGateImpl(int64_t gating_channels, int64_t skip_channels, int64_t inner_channels) {
  w_g_ = register_module("W_g", nn::Sequential(conv(gating_channels, inner_channels, 1, 1, 0, true), batch_norm(inner_channels)));
  w_x_ = register_module("W_x", nn::Sequential(conv(skip_channels, inner_channels, 1, 1, 0, true), batch_norm(inner_channels)));
  psi_ = register_module("psi", nn::Sequential(conv(inner_channels, 1, 1, 1, 0, true), batch_norm(1), nn::Sigmoid()));
}

torch::Tensor AttentionGateImpl::alpha(const torch::Tensor& g, const torch::Tensor& x) {
  return psi_->forward(torch::relu(w_g_->forward(g) + w_x_->forward(x)));
}

AttentionUNetImpl::AttentionUNetImpl(const AttentionUNetOptions& options) : options_(options) {
  if (options.in_channels != 1 && options.in_channels != 3)
    throw core::ConfigError(fmt::format("in_channels {}: expected 1 or 3", options.in_channels));
  std::vector<int64_t> skips;  // finest first, without the bottom
  int64_t bottom = 0;
  if (options.encoder == "plain") {
    if (options.widths.size() != 5)
      throw core::ConfigError(fmt::format("widths: {} values; expected 5 (finest first)", options.widths.size()));
    int64_t in = options.in_channels;
    for (size_t i = 0; i < 5; ++i) {
      down_.push_back(wrapped(*this, "Conv" + std::to_string(i + 1), "conv", conv_block(in, options.widths[i])));
      in = options.widths[i];
    }
    skips.assign(options.widths.begin(), options.widths.begin() + 4);
    bottom = options.widths[4];
  } else if (options.encoder == "resnet34") {
    encoder_ = register_module("encoder", make_encoder({"resnet34", options.in_channels, 5}));
    const auto& c = encoder_->out_channels();  // input, 64, 64, 128, 256, 512
    skips.assign(c.begin() + 1, c.begin() + 5);
    bottom = c[5];
  } else {
    throw core::ConfigError(fmt::format("attention_unet encoder '{}': expected plain or resnet34", options.encoder));
  }
  int64_t in = bottom;
  for (int level = 4; level >= 1; --level) {  // Up5/Att5/Up_conv5 for the deepest skip
    const int64_t skip = skips[level - 1];
    const std::string n = std::to_string(level + 1);
    Level l;
    l.up = wrapped(*this, "Up" + n, "up", up_conv(in, skip));
    l.gate = register_module("Att" + n, AttentionGate(skip, skip, std::max<int64_t>(skip / 2, 1)));
    l.conv = wrapped(*this, "Up_conv" + n, "conv", conv_block(2 * skip, skip));
    levels_.push_back(l);
    in = skip;
  }
  if (encoder_) {  // the ResNet's finest skip is at half resolution: one more level, no skip
    up1_ = wrapped(*this, "Up1", "up", up_conv(in, in / 2));
    up_conv1_ = wrapped(*this, "Up_conv1", "conv", conv_block(in / 2, in / 2));
    in /= 2;
  }
  head_ = register_module("Conv_1x1", conv(in, options.classes, 1, 1, 0, true));
  if (options.aux_head) classification_head_ = register_module("classification_head", classification_head(bottom, 1));
}

std::vector<torch::Tensor> AttentionUNetImpl::encoder_parameters() {
  if (encoder_) return encoder_->parameters();
  std::vector<torch::Tensor> out;
  for (const auto& stage : down_)
    for (const auto& p : stage->parameters()) out.push_back(p);
  return out;
}

ModelOutput AttentionUNetImpl::forward(const torch::Tensor& x) {
  std::vector<torch::Tensor> skips;
  torch::Tensor y;
  if (encoder_) {
    const auto f = encoder_->forward_features(x);
    skips.assign(f.begin() + 1, f.begin() + 5);
    y = f[5];
  } else {
    if (x.dim() != 4 || x.size(1) != options_.in_channels || x.size(2) % 16 || x.size(3) % 16)
      throw core::ModelError(fmt::format("input of shape {}; expected [N, {}, H, W] with H and W divisible by 16",
                                         shape_string(x), options_.in_channels));
    y = x;
    for (size_t i = 0; i < down_.size(); ++i) {
      if (i > 0) y = torch::max_pool2d(y, 2, 2);
      y = down_[i]->forward(y);
      if (i < 4) skips.push_back(y);
    }
  }
  ModelOutput out;
  if (classification_head_) out.logits = classification_head_->forward(y);
  for (size_t i = 0; i < levels_.size(); ++i) {
    const torch::Tensor& skip = skips[skips.size() - 1 - i];
    torch::Tensor d = levels_[i].up->forward(y);
    y = levels_[i].conv->forward(torch::cat({levels_[i].gate(d, skip), d}, 1));
  }
  if (up1_) y = up_conv1_->forward(up1_->forward(y));
  out.masks = head_(y);
  return out;
}

}  // namespace pneumo::models
