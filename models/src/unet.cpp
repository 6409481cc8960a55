#include "pneumo/models/unet.h"

#include <fmt/format.h>

#include "blocks.h"
#include "layers.h"
#include "pneumo/core/error.h"

namespace pneumo::models {

namespace nn = torch::nn;

UNetImpl::UNetImpl(const UNetOptions& options) {
  encoder_ = register_module("encoder", make_encoder(options.encoder));
  const int depth = options.encoder.depth;
  SmpDecoderScaffold scaffold = smp_decoder_scaffold(*this, encoder_->out_channels(), options.encoder.name,
                                                     options.decoder_channels, options.batch_norm);
  if (options.classes < 1) throw core::ConfigError("classes: expected at least 1");
  const Upsampling upsampling = parse_upsampling(options.upsampling);
  const std::vector<int64_t>& encoder_channels = scaffold.encoder_channels;  // deepest first
  const int64_t head = encoder_channels[0];
  center_ = std::move(scaffold.center);
  auto& blocks = scaffold.blocks;
  int64_t in = head;
  for (int i = 0; i < depth; ++i) {
    const int64_t skip = i + 1 < depth ? encoder_channels[i + 1] : 0;
    auto block = std::make_shared<DecoderBlockImpl>(in, skip, options.decoder_channels[i], options.batch_norm,
                                                    options.attention, upsampling);
    blocks->register_module(std::to_string(i), block);
    blocks_.push_back(block);
    in = options.decoder_channels[i];
  }
  segmentation_head_ = register_module("segmentation_head",
                                       nn::Sequential(conv(in, options.classes, 3, 1, 1, true)));
  if (options.aux_head)
    classification_head_ =
        register_module("classification_head", classification_head(head, 1, options.aux_dropout));
}

ModelOutput UNetImpl::forward(const torch::Tensor& x) {
  std::vector<torch::Tensor> features = encoder_->forward_features(x);
  // Deepest first, without the first (full-resolution) map.
  std::vector<torch::Tensor> skips(features.rbegin(), features.rend() - 1);
  torch::Tensor y = skips[0];
  ModelOutput out;
  if (classification_head_) out.logits = classification_head_->forward(y);
  for (auto& layer : center_) y = layer->forward(y);
  for (size_t i = 0; i < blocks_.size(); ++i)
    y = blocks_[i]->forward(y, i + 1 < skips.size() ? skips[i + 1] : torch::Tensor());
  out.masks = segmentation_head_->forward(y);
  return out;
}

}  // namespace pneumo::models
