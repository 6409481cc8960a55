#include "pneumo/models/unet_plus_plus.h"

#include <fmt/format.h>

#include "blocks.h"
#include "layers.h"
#include "pneumo/core/error.h"

namespace pneumo::models {

namespace nn = torch::nn;

namespace {
std::string node(int d, int l) { return fmt::format("x_{}_{}", d, l); }
}  // namespace

UNetPlusPlusImpl::UNetPlusPlusImpl(const UNetPlusPlusOptions& options) {
  encoder_ = register_module("encoder", make_encoder(options.encoder));
  const int blocks_count = options.encoder.depth;
  SmpDecoderScaffold scaffold = smp_decoder_scaffold(*this, encoder_->out_channels(), options.encoder.name,
                                                     options.decoder_channels, options.batch_norm);
  if (blocks_count < 2) throw core::ConfigError("unet++ needs an encoder depth of at least 2");
  const Upsampling upsampling = parse_upsampling(options.upsampling);
  const std::vector<int64_t>& encoder_channels = scaffold.encoder_channels;  // deepest first
  const int64_t head = encoder_channels[0];
  std::vector<int64_t> in_channels = {head}, skip_channels(encoder_channels.begin() + 1, encoder_channels.end());
  in_channels.insert(in_channels.end(), options.decoder_channels.begin(), options.decoder_channels.end() - 1);
  skip_channels.push_back(0);
  const std::vector<int64_t>& out_channels = options.decoder_channels;

  center_ = std::move(scaffold.center);
  auto& blocks = scaffold.blocks;
  auto add = [&](int d, int l, int64_t in, int64_t skip, int64_t out) {
    auto block = std::make_shared<DecoderBlockImpl>(in, skip, out, options.batch_norm, options.attention, upsampling);
    blocks->register_module(node(d, l), block);
    blocks_[node(d, l)] = block;
  };
  depth_ = blocks_count - 1;
  for (int l = 0; l < depth_; ++l) {
    for (int d = 0; d <= l; ++d) {
      if (d == 0)
        add(d, l, in_channels[l], skip_channels[l] * (l + 1), out_channels[l]);
      else
        add(d, l, skip_channels[l - 1], skip_channels[l] * (l + 1 - d), skip_channels[l]);
    }
  }
  add(0, depth_, in_channels.back(), 0, out_channels.back());
  segmentation_head_ = register_module("segmentation_head",
                                       nn::Sequential(conv(out_channels.back(), options.classes, 3, 1, 1, true)));
  if (options.aux_head)
    classification_head_ = register_module("classification_head", classification_head(head, 1, options.aux_dropout));
  if (options.deep_supervision) {
    auto heads = register_module("supervision_heads", std::make_shared<nn::Module>());
    for (int d = 1; d < depth_; ++d)
      supervision_heads_.push_back(heads->register_module(
          std::to_string(d - 1), conv(skip_channels[depth_ - 1], options.classes, 1, 1, 0, true)));
  }
}

ModelOutput UNetPlusPlusImpl::forward(const torch::Tensor& x) {
  const std::vector<torch::Tensor> all = encoder_->forward_features(x);
  std::vector<torch::Tensor> features(all.rbegin(), all.rend() - 1);  // deepest first
  ModelOutput out;
  if (classification_head_) out.logits = classification_head_->forward(features[0]);
  for (auto& layer : center_) features[0] = layer->forward(features[0]);

  std::map<std::string, torch::Tensor> dense;
  for (int layer = 0; layer < depth_; ++layer) {
    for (int d = 0; d < depth_ - layer; ++d) {
      if (layer == 0) {
        dense[node(d, d)] = blocks_[node(d, d)]->forward(features[d], features[d + 1]);
      } else {
        const int l = d + layer;
        std::vector<torch::Tensor> parts;
        for (int i = d + 1; i <= l; ++i) parts.push_back(dense[node(i, l)]);
        parts.push_back(features[l + 1]);
        dense[node(d, l)] = blocks_[node(d, l)]->forward(dense[node(d, l - 1)], torch::cat(parts, 1));
      }
    }
  }
  const torch::Tensor last = blocks_[node(0, depth_)]->forward(dense[node(0, depth_ - 1)]);
  out.masks = segmentation_head_->forward(last);
  namespace F = torch::nn::functional;
  for (size_t i = 0; i < supervision_heads_.size(); ++i) {
    const torch::Tensor m = supervision_heads_[i](dense[node(static_cast<int>(i) + 1, depth_ - 1)]);
    out.extra_masks.push_back(F::interpolate(
        m, F::InterpolateFuncOptions().size(std::vector<int64_t>{x.size(2), x.size(3)}).mode(torch::kBilinear).align_corners(false)));
  }
  return out;
}

}  // namespace pneumo::models
