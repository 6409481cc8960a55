#include "pneumo/models/model_section.h"

#include <fmt/format.h>

#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/models/attention_unet.h"
#include "pneumo/models/classifier.h"
#include "pneumo/models/double_unet.h"
#include "pneumo/models/unet.h"
#include "pneumo/models/unet_plus_plus.h"
#include "pneumo/models/weights.h"

namespace pneumo::models {

namespace {

std::string encoder_or(const ModelSection& m, const char* fallback) {
  return m.encoder.name.empty() ? fallback : m.encoder.name;
}

void load_encoder_weights(torch::nn::Module& encoder, const std::string& file) {
  const LoadReport report = load_weights(encoder, read_weights(file), /*strict=*/false, file);
  if (!report.missing.empty() || !report.mismatched.empty())
    throw core::CheckpointError(fmt::format("{}: does not fit the encoder: {}", file, report.summary()));
  core::log::info("encoder weights {}: {}", file, report.summary());
}

std::shared_ptr<torch::nn::Module> child(torch::nn::Module& m, const std::string& name) {
  for (const auto& c : m.named_children())
    if (c.key() == name) return c.value();
  return nullptr;
}

}  // namespace

std::shared_ptr<Network> build_model(const ModelSection& m) {
  std::shared_ptr<Network> net;
  const std::string attention = m.attention == "none" ? "" : m.attention;
  if (m.name == "classifier") {
    if (encoder_or(m, "densenet121") != "densenet121")
      throw core::ConfigError(fmt::format("model.encoder.name: the classifier is DenseNet121; got '{}'", m.encoder.name));
    net = Classifier(ClassifierOptions{m.encoder.in_channels, m.classes, m.pooling}).ptr();
  } else if (m.name == "unet" || m.name == "unet++") {
    UNetPlusPlusOptions o;
    o.encoder = {encoder_or(m, "resnet34"), m.encoder.in_channels, m.encoder.depth};
    o.decoder_channels = m.decoder_channels;
    o.upsampling = m.upsampling;
    o.batch_norm = m.batch_norm;
    o.attention = attention;
    o.classes = m.classes;
    o.aux_head = m.aux_head;
    o.aux_dropout = m.aux_dropout;
    o.deep_supervision = m.deep_supervision;
    if (m.name == "unet" && m.deep_supervision)
      throw core::ConfigError("model.deep_supervision: only unet++ has deep supervision");
    if (m.name == "unet")
      net = UNet(static_cast<const UNetOptions&>(o)).ptr();
    else
      net = UNetPlusPlus(o).ptr();
  } else if (m.name == "attention_unet") {
    AttentionUNetOptions o;
    o.encoder = encoder_or(m, "plain");
    o.in_channels = m.encoder.in_channels;
    o.widths = m.widths;
    o.classes = m.classes;
    o.aux_head = m.aux_head;
    net = AttentionUNet(o).ptr();
  } else if (m.name == "double_unet") {
    DoubleUNetOptions o;
    o.encoder = encoder_or(m, "vgg19");
    o.in_channels = m.encoder.in_channels;
    o.classes = m.classes;
    o.aux_head = m.aux_head;
    net = DoubleUNet(o).ptr();
  } else {
    throw core::ConfigError(fmt::format("model.name '{}': expected one of {}", m.name,
                                        core::config_detail::join(network_names())));
  }
  if (!m.encoder.weights.empty()) {
    // The encoder is `features` in the classifier, `encoder1` in Double U-Net, `encoder` elsewhere.
    const char* name = m.name == "classifier" ? "features" : m.name == "double_unet" ? "encoder1" : "encoder";
    auto encoder = child(*net, name);
    if (!encoder)
      throw core::ConfigError("model.encoder.weights: the plain attention_unet encoder has no pretrained weights");
    if (m.name == "classifier") {
      // torchvision names the DenseNet's layers `features.*`: load into the whole classifier,
      // keeping only the features.
      NamedTensors features;
      for (auto& [k, t] : read_weights(m.encoder.weights))
        if (k.rfind("features.", 0) == 0 || k.rfind("densenet121.features.", 0) == 0) features.emplace_back(k, t);
      const LoadReport report = load_weights(*net, features, false, m.encoder.weights);
      for (const std::string& missing : report.missing)
        if (missing.rfind("features.", 0) == 0)
          throw core::CheckpointError(fmt::format("{}: does not fit the DenseNet121 features: {}",
                                                  m.encoder.weights, report.summary()));
      core::log::info("encoder weights {}: {}", m.encoder.weights, report.summary());
    } else {
      load_encoder_weights(*encoder, m.encoder.weights);
    }
  }
  if (!m.weights.empty()) {
    const LoadReport report = load_weights(*net, read_weights(m.weights), true, m.weights);
    core::log::info("model weights {}: {}", m.weights, report.summary());
  }
  return net;
}

std::vector<std::string> network_names() {
  return {"attention_unet", "classifier", "double_unet", "unet", "unet++"};
}

}  // namespace pneumo::models
