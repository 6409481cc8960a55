#include "blocks.h"

#include <fmt/format.h>

#include "layers.h"
#include "pneumo/core/error.h"

namespace pneumo::models {

namespace nn = torch::nn;

nn::Sequential conv_relu(int64_t in, int64_t out, bool batch_norm_layer, int64_t kernel, int64_t padding) {
  nn::Sequential seq;
  seq->push_back(conv(in, out, kernel, 1, padding, !batch_norm_layer));
  if (batch_norm_layer)
    seq->push_back(batch_norm(out));
  else
    seq->push_back(nn::Identity());
  seq->push_back(nn::ReLU(nn::ReLUOptions(true)));
  return seq;
}

SCSEImpl::SCSEImpl(int64_t channels, int64_t reduction) {
  const int64_t squeezed = std::max<int64_t>(channels / reduction, 1);
  cse_ = register_module("cSE", nn::Sequential(nn::AdaptiveAvgPool2d(1), conv(channels, squeezed, 1, 1, 0, true),
                                               nn::ReLU(nn::ReLUOptions(true)),
                                               conv(squeezed, channels, 1, 1, 0, true), nn::Sigmoid()));
  sse_ = register_module("sSE", nn::Sequential(conv(channels, 1, 1, 1, 0, true), nn::Sigmoid()));
}

torch::Tensor SCSEImpl::forward(const torch::Tensor& x) { return x * cse_->forward(x) + x * sse_->forward(x); }

AttentionImpl::AttentionImpl(const std::string& type, int64_t channels) {
  if (type == "scse")
    scse_ = register_module("attention", SCSE(channels));
  else if (!type.empty())
    throw core::ConfigError(fmt::format("decoder attention '{}': expected scse or nothing", type));
}

Upsampling parse_upsampling(const std::string& name) {
  if (name == "nearest") return Upsampling::kNearest;
  if (name == "bilinear") return Upsampling::kBilinear;
  if (name == "transposed") return Upsampling::kTransposed;
  throw core::ConfigError(fmt::format("upsampling '{}': expected nearest, bilinear or transposed", name));
}

DecoderBlockImpl::DecoderBlockImpl(int64_t in, int64_t skip, int64_t out, bool batch_norm_layers,
                                   const std::string& attention, Upsampling upsampling)
    : upsampling_(upsampling) {
  if (upsampling == Upsampling::kTransposed)
    up_ = register_module("up", nn::ConvTranspose2d(nn::ConvTranspose2dOptions(in, in, 2).stride(2)));
  conv1_ = register_module("conv1", conv_relu(in + skip, out, batch_norm_layers));
  attention1_ = register_module("attention1", Attention(attention, in + skip));
  conv2_ = register_module("conv2", conv_relu(out, out, batch_norm_layers));
  attention2_ = register_module("attention2", Attention(attention, out));
}

torch::Tensor DecoderBlockImpl::forward(torch::Tensor x, const torch::Tensor& skip) {
  namespace F = torch::nn::functional;
  switch (upsampling_) {
    case Upsampling::kNearest:
      x = F::interpolate(x, F::InterpolateFuncOptions().scale_factor(std::vector<double>{2, 2}).mode(torch::kNearest));
      break;
    case Upsampling::kBilinear:
      x = F::interpolate(x, F::InterpolateFuncOptions()
                                .scale_factor(std::vector<double>{2, 2})
                                .mode(torch::kBilinear)
                                .align_corners(false));
      break;
    case Upsampling::kTransposed:
      x = up_(x);
      break;
  }
  if (skip.defined()) {
    x = torch::cat({x, skip}, 1);
    x = attention1_(x);
  }
  return attention2_(conv2_->forward(conv1_->forward(x)));
}

SmpDecoderScaffold smp_decoder_scaffold(nn::Module& net, const std::vector<int64_t>& encoder_out_channels,
                                        const std::string& encoder_name, const std::vector<int64_t>& decoder_channels,
                                        bool batch_norm_layers) {
  const size_t depth = encoder_out_channels.size() - 1;
  if (decoder_channels.size() != depth)
    throw core::ConfigError(fmt::format("decoder_channels: {} values for an encoder of depth {}; expected {}",
                                        decoder_channels.size(), depth, depth));
  SmpDecoderScaffold s;
  s.encoder_channels.assign(encoder_out_channels.rbegin(), encoder_out_channels.rend() - 1);
  const int64_t head = s.encoder_channels[0];
  auto decoder = net.register_module("decoder", std::make_shared<nn::Module>());
  if (encoder_name.rfind("vgg", 0) == 0) {  // smp adds a centre block for VGG
    auto center = decoder->register_module("center", std::make_shared<nn::Module>());
    for (int i = 0; i < 2; ++i)
      s.center.push_back(center->register_module(std::to_string(i), conv_relu(head, head, batch_norm_layers)));
  }
  s.blocks = decoder->register_module("blocks", std::make_shared<nn::Module>());
  return s;
}

nn::Sequential classification_head(int64_t in, int64_t classes, double dropout) {
  nn::Sequential head;
  head->push_back(nn::AdaptiveAvgPool2d(1));
  head->push_back(nn::Flatten());
  if (dropout > 0)
    head->push_back(nn::Dropout(dropout));
  else
    head->push_back(nn::Identity());
  head->push_back(nn::Linear(in, classes));
  return head;
}

}  // namespace pneumo::models
