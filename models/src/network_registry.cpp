// The network registry: every network, the `model:` keys it reads and how it builds from them.
// To add a network: its options struct and Impl (see unet.h), then one add() below.
#include <fmt/format.h>

#include "pneumo/core/error.h"
#include "pneumo/models/attention_unet.h"
#include "pneumo/models/classifier.h"
#include "pneumo/models/double_unet.h"
#include "pneumo/models/model_section.h"
#include "pneumo/models/unet.h"
#include "pneumo/models/unet_plus_plus.h"

namespace pneumo::models {

namespace {

std::string encoder_or(const ModelSection& m, const char* fallback) {
  return m.encoder.name.empty() ? fallback : m.encoder.name;
}

UNetPlusPlusOptions unet_options(const ModelSection& m) {
  UNetPlusPlusOptions o;
  o.encoder = {encoder_or(m, "resnet34"), m.encoder.in_channels, m.encoder.depth};
  o.decoder_channels = m.decoder_channels;
  o.upsampling = m.upsampling;
  o.batch_norm = m.batch_norm;
  o.attention = m.attention == "none" ? "" : m.attention;
  o.classes = m.classes;
  o.aux_head = m.aux_head;
  o.aux_dropout = m.aux_dropout;
  o.deep_supervision = m.deep_supervision;
  return o;
}

const std::vector<std::string> kUNetKeys = {"encoder.name", "encoder.in_channels", "encoder.depth", "decoder_channels",
                                            "upsampling",   "batch_norm",          "attention",     "classes",
                                            "aux_head",     "aux_dropout"};

std::shared_ptr<Network> build_classifier(const ModelSection& m) {
  if (encoder_or(m, "densenet121") != "densenet121")
    throw core::ConfigError(fmt::format("model.encoder.name: the classifier is DenseNet121; got '{}'", m.encoder.name));
  return Classifier(ClassifierOptions{m.encoder.in_channels, m.classes, m.pooling}).ptr();
}

std::shared_ptr<Network> build_unet(const ModelSection& m) {
  if (m.deep_supervision) throw core::ConfigError("model.deep_supervision: only unet++ has deep supervision");
  return UNet(static_cast<const UNetOptions&>(unet_options(m))).ptr();
}

std::shared_ptr<Network> build_unet_plus_plus(const ModelSection& m) { return UNetPlusPlus(unet_options(m)).ptr(); }

std::shared_ptr<Network> build_attention_unet(const ModelSection& m) {
  AttentionUNetOptions o;
  o.encoder = encoder_or(m, "plain");
  o.in_channels = m.encoder.in_channels;
  o.widths = m.widths;
  o.classes = m.classes;
  o.aux_head = m.aux_head;
  return AttentionUNet(o).ptr();
}

std::shared_ptr<Network> build_double_unet(const ModelSection& m) {
  DoubleUNetOptions o;
  o.encoder = encoder_or(m, "vgg19");
  o.in_channels = m.encoder.in_channels;
  o.classes = m.classes;
  o.aux_head = m.aux_head;
  return DoubleUNet(o).ptr();
}

core::Registry<NetworkEntry>* make_registry() {
  auto* r = new core::Registry<NetworkEntry>("network");
  r->add("classifier", {"CheXNet-style DenseNet121: one pneumothorax logit or the 14 ChestX-ray14 labels",
                        {"encoder.name", "encoder.in_channels", "classes", "pooling"},
                        {"{name: classifier}"},
                        build_classifier});
  r->add("unet", {"U-Net on any encoder (segmentation_models_pytorch's names)", kUNetKeys,
                  {"{name: unet, encoder: {name: resnet34}}"}, build_unet});
  std::vector<std::string> nested_keys = kUNetKeys;
  nested_keys.push_back("deep_supervision");
  r->add("unet++", {"Nested U-Net on any encoder, optional deep supervision", nested_keys,
                    {"{name: unet++, encoder: {name: resnet34}}"}, build_unet_plus_plus});
  r->add("attention_unet", {"Attention U-Net (Oktay et al.), plain encoder or ResNet34",
                            {"encoder.name", "encoder.in_channels", "widths", "classes", "aux_head"},
                            {"{name: attention_unet}", "{name: attention_unet, encoder: {name: resnet34}}"},
                            build_attention_unet});
  r->add("double_unet", {"Double U-Net (Jha et al. 2020) on VGG19", {"encoder.name", "encoder.in_channels", "classes", "aux_head"},
                         {"{name: double_unet}"}, build_double_unet});
  return r;
}

}  // namespace

const core::Registry<NetworkEntry>& networks() {
  static const core::Registry<NetworkEntry>* registry = make_registry();
  return *registry;
}

std::vector<std::string> network_names() { return networks().names(); }

}  // namespace pneumo::models
