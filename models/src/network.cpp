#include "pneumo/models/network.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/models/weights.h"

namespace pneumo::models {

std::vector<torch::Tensor> Network::encoder_parameters() {
  const std::shared_ptr<torch::nn::Module> e = encoder();
  return e ? e->parameters() : std::vector<torch::Tensor>{};
}

void Network::load_encoder_weights(const std::string& file) {
  const std::shared_ptr<torch::nn::Module> e = encoder();
  if (!e) throw core::ConfigError(
        "model.encoder.weights: this network has no pretrained encoder to load weights into (the plain "
        "attention_unet; its resnet34 encoder has one)");
  const LoadReport report = load_weights(*e, read_weights(file), /*strict=*/false, file);
  if (!report.missing.empty() || !report.mismatched.empty())
    throw core::CheckpointError(fmt::format("{}: does not fit the encoder: {}", file, report.summary()));
  core::log::info("encoder weights {}: {}", file, report.summary());
}

torch::Tensor pneumothorax_logit(const ModelOutput& out, bool segmenter) {
  if (!out.logits.defined()) return {};
  if (segmenter || out.logits.size(1) == 1) return out.logits.select(1, 0);
  return out.logits.select(1, 7);
}

void use_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters())
    if (p.dim() == 4) p.set_data(to_channels_last(p.data()));
  for (auto& b : module.buffers())
    if (b.dim() == 4) b.set_data(to_channels_last(b.data()));
}

torch::Tensor to_channels_last(const torch::Tensor& x) {
  const auto nhwc = torch::MemoryFormat::ChannelsLast;
  if (x.dim() != 4 || (x.is_contiguous(nhwc) && x.suggest_memory_format() == nhwc)) return x;
  // empty() in NHWC sets the strides of size-1 dimensions in that order too.
  return torch::empty(x.sizes(), x.options().memory_format(nhwc)).copy_(x);
}

}  // namespace pneumo::models
