// The `model:` section of an experiment file and the network it builds:
//
//   model:
//     name: unet                 # a registered network: networks() below, `pneumo models`
//     encoder: {name: resnet34, in_channels: 1, weights: imagenet-resnet34.pth}
//     decoder_channels: [256, 128, 64, 32, 16]
//     aux_head: true
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pneumo/core/config_schema.h"
#include "pneumo/core/registry.h"
#include "pneumo/models/network.h"

namespace pneumo::models {

struct ModelSection;

// A network as the registry knows it: the `model:` keys it reads (besides name, weights and
// encoder.weights, which build_model handles for all) and how it builds from them.
struct NetworkEntry {
  std::string summary;                // one line, for `pneumo models` and the docs
  std::vector<std::string> keys;      // e.g. "encoder.depth", "decoder_channels"
  std::vector<std::string> examples;  // model: sections `pneumo models` builds and counts
  // Reads its options from the section; ConfigError for a value it does not support.
  std::function<std::shared_ptr<Network>(const ModelSection&)> build;
};

// Every network by model.name (network_registry.cpp).
const core::Registry<NetworkEntry>& networks();
std::vector<std::string> network_names();

struct EncoderSection {
  std::string name;  // empty: the network's default (see network_defaults in the docs)
  int in_channels = 1;
  int depth = 5;
  std::string weights;  // a torch.save file of the encoder (e.g. torchvision's ImageNet weights)

  template <class V>
  void visit(V& v) {
    v("name", name,
      "encoder: resnet18/34/50, vgg19, vgg19_bn, densenet121 (unet, unet++); plain or resnet34 "
      "(attention_unet); vgg19 or vgg19_bn (double_unet); densenet121 (classifier); empty = the "
      "network's default");
    v("in_channels", in_channels, "input channels: 1 (grey) or 3",
      core::Check<int>{"1 or 3", [](const int& c) { return c == 1 || c == 3; }});
    v("depth", depth, "encoder stages used (unet, unet++)", core::in_range(1, 5));
    v("weights", weights,
      "encoder weights file (torch.save of a state dict, e.g. torchvision ImageNet weights); "
      "classifier heads are ignored, every encoder tensor must be present");
  }
};

struct ModelSection {
  std::string name = "unet";
  EncoderSection encoder;
  std::vector<int64_t> decoder_channels{256, 128, 64, 32, 16};
  std::string upsampling = "nearest";
  bool batch_norm = true;
  std::string attention = "none";
  int64_t classes = 1;
  bool aux_head = false;
  double aux_dropout = 0.0;
  bool deep_supervision = false;
  std::vector<int64_t> widths{16, 32, 64, 128, 256};
  std::string pooling = "avg";
  std::string weights;

  template <class V>
  void visit(V& v) {
    v("name", name, "network", networks().check());
    v("encoder", encoder, "the encoder");
    v("decoder_channels", decoder_channels, "decoder block widths, deepest first, one per encoder stage (unet, unet++)");
    v("upsampling", upsampling, "decoder upsampling (unet, unet++)", core::one_of({"nearest", "bilinear", "transposed"}));
    v("batch_norm", batch_norm, "batch norm in decoder blocks (unet, unet++)");
    v("attention", attention, "decoder attention (unet, unet++)", core::one_of({"none", "scse"}));
    v("classes", classes, "output channels (segmenters: 1) or logits (classifier: 1 for pneumothorax, or one per "
      "data.classes; 14 is CheXNet's head)", core::in_range<int64_t>(1, 1000));
    v("aux_head", aux_head, "segmenters: add an image-level 'pneumothorax present' logit from the deepest features");
    v("aux_dropout", aux_dropout, "dropout before the auxiliary head", core::in_range(0.0, 0.99));
    v("deep_supervision", deep_supervision, "unet++: extra masks from the nested nodes");
    v("widths", widths, "attention_unet with the plain encoder: the five stage widths, finest first");
    v("pooling", pooling, "classifier pooling", core::one_of({"avg", "avgmax"}));
    v("weights", weights, "whole-model weights file (torch.save of a state dict), loaded strictly");
  }
};

// Builds the registered network, then loads encoder and model weights when given. Throws
// ConfigError for an option the network does not support, CheckpointError naming the file when
// weights are missing (saying how to bring them) or do not fit.
std::shared_ptr<Network> build_model(const ModelSection& model);

}  // namespace pneumo::models
