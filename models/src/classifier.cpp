#include "pneumo/models/classifier.h"

#include <fmt/format.h>

#include "densenet.h"
#include "layers.h"
#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/models/feature_tap.h"
#include "pneumo/models/weights.h"

namespace pneumo::models {

ClassifierImpl::ClassifierImpl(const ClassifierOptions& options) : options_(options) {
  if (options.in_channels != 1 && options.in_channels != 3)
    throw core::ConfigError(fmt::format("in_channels {}: expected 1 or 3", options.in_channels));
  if (options.classes < 1)
    throw core::ConfigError(fmt::format("classes {}: expected 1 (pneumothorax) or more (one logit per class)",
                                        options.classes));
  if (options.pooling != "avg" && options.pooling != "avgmax")
    throw core::ConfigError(fmt::format("pooling '{}': expected avg or avgmax", options.pooling));
  features_ = register_module("features", DenseNet121Features(options.in_channels).ptr());
  classifier_ = register_module(
      "classifier", torch::nn::Linear(options.pooling == "avgmax" ? 2048 : 1024, options.classes));
}

torch::Tensor ClassifierImpl::logits(const torch::Tensor& x) {
  if (x.dim() != 4 || x.size(1) != options_.in_channels)
    throw core::ModelError(fmt::format("classifier input of shape {}; expected [N, {}, H, W]",
                                       shape_string(x), options_.in_channels));
  torch::Tensor f = x;
  for (int s = 1; s <= 5; ++s) {  // features_->forward(x), each stage offered to a FeatureTap
    auto [out, skip] = features_->stage(s, f);
    FeatureTap::offer(s, skip);
    f = out;
  }
  f = torch::relu(f);  // torchvision applies the last ReLU here
  torch::Tensor pooled = torch::adaptive_avg_pool2d(f, {1, 1}).flatten(1);
  if (options_.pooling == "avgmax")
    pooled = torch::cat({pooled, f.amax({2, 3})}, 1);
  return classifier_(pooled);
}

std::shared_ptr<torch::nn::Module> ClassifierImpl::encoder() { return features_; }

void ClassifierImpl::load_encoder_weights(const std::string& file) {
  NamedTensors features;
  for (auto& [k, t] : read_weights(file))
    if (k.rfind("features.", 0) == 0 || k.rfind("densenet121.features.", 0) == 0) features.emplace_back(k, t);
  const LoadReport report = load_weights(*this, features, /*strict=*/false, file);
  for (const std::string& missing : report.missing)
    if (missing.rfind("features.", 0) == 0)
      throw core::CheckpointError(fmt::format("{}: does not fit the DenseNet121 features: {}", file, report.summary()));
  core::log::info("encoder weights {}: {}", file, report.summary());
}

torch::Tensor ClassifierImpl::pneumothorax_logit(const torch::Tensor& logits) const {
  return options_.classes == 1 ? logits.select(1, 0) : logits.select(1, kChexnetPneumothoraxIndex);
}

}  // namespace pneumo::models
