#include "pneumo/models/encoder.h"

#include <fmt/format.h>

#include "encoders.h"
#include "layers.h"
#include "pneumo/core/error.h"
#include "pneumo/core/registry.h"
#include "pneumo/models/feature_tap.h"

namespace pneumo::models {

Encoder::Encoder(std::vector<int64_t> all_channels, int depth)
    : out_channels_(all_channels.begin(), all_channels.begin() + depth + 1), depth_(depth) {}

std::vector<torch::Tensor> Encoder::forward_features(const torch::Tensor& x) {
  std::vector<torch::Tensor> features = compute_features(x);
  for (size_t stage = 1; stage < features.size(); ++stage) FeatureTap::offer(static_cast<int>(stage), features[stage]);
  return features;
}

void Encoder::check_input(const torch::Tensor& x, int in_channels) const {
  const int64_t factor = int64_t{1} << depth_;
  if (x.dim() != 4 || x.size(1) != in_channels || x.size(2) % factor != 0 || x.size(3) % factor != 0)
    throw core::ModelError(fmt::format(
        "encoder input of shape {}; expected [N, {}, H, W] with H and W divisible by {}",
        shape_string(x), in_channels, factor));
}

namespace {

using EncoderFactory = std::function<std::shared_ptr<Encoder>(int in_channels, int depth)>;

core::Registry<EncoderFactory>& registry() {
  static core::Registry<EncoderFactory>* r = [] {
    auto* reg = new core::Registry<EncoderFactory>("encoder");
    reg->add("resnet18", [](int c, int d) { return make_resnet(ResNetKind::kResNet18, c, d); });
    reg->add("resnet34", [](int c, int d) { return make_resnet(ResNetKind::kResNet34, c, d); });
    reg->add("resnet50", [](int c, int d) { return make_resnet(ResNetKind::kResNet50, c, d); });
    reg->add("vgg19", [](int c, int d) { return make_vgg19(false, c, d); });
    reg->add("vgg19_bn", [](int c, int d) { return make_vgg19(true, c, d); });
    reg->add("densenet121", [](int c, int d) { return make_densenet121_encoder(c, d); });
    for (int b = 0; b <= 4; ++b)
      reg->add("efficientnet-b" + std::to_string(b), [b](int c, int d) { return make_efficientnet(b, c, d); });
    return reg;
  }();
  return *r;
}

}  // namespace

std::shared_ptr<Encoder> make_encoder(const EncoderOptions& options) {
  if (options.depth < 1 || options.depth > 5)
    throw core::ConfigError(fmt::format("encoder depth {}: expected 1..5", options.depth));
  if (options.in_channels != 1 && options.in_channels != 3)
    throw core::ConfigError(fmt::format("encoder in_channels {}: expected 1 or 3", options.in_channels));
  return registry().at(options.name)(options.in_channels, options.depth);
}

std::vector<std::string> encoder_names() { return registry().names(); }

}  // namespace pneumo::models
