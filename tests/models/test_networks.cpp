// Every network built from its YAML section: forward and backward at 64x64, output shapes,
// every parameter reached by the gradient, train/eval modes; attention gates; encoder weights.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include <torch/torch.h>

#include "pneumo/core/config_node.h"
#include "pneumo/core/config_schema.h"
#include "pneumo/core/error.h"
#include "pneumo/models/attention_unet.h"
#include "pneumo/models/classifier.h"
#include "pneumo/models/inference_graph.h"
#include "pneumo/models/model_section.h"
#include "pneumo/models/weights.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

using namespace pneumo;
using Catch::Matchers::Contains;

namespace {

models::ModelSection section(const std::string& yaml) {
  return core::read_section<models::ModelSection>(core::parse_yaml(yaml, "model.yaml"), "model");
}

// Parameters segmentation_models_pytorch also creates but never uses, kept for its names: the
// first attention of the skip-less last decoder block, and encoder stages beyond `depth`.
bool unused_by_design(const std::string& name, int depth) {
  const std::string last_block = ".blocks." + std::to_string(depth - 1) + ".attention1.";
  const std::string last_node = ".x_0_" + std::to_string(depth - 1) + ".attention1.";
  if (name.find(last_block) != std::string::npos || name.find(last_node) != std::string::npos) return true;
  for (int layer = depth; layer <= 4; ++layer)
    if (name.rfind("encoder.layer" + std::to_string(layer) + ".", 0) == 0) return true;
  return false;
}

// Forward + backward in train mode; checks shapes and that every parameter got a gradient.
void exercise(models::Network& net, int in_channels, int64_t classes, bool aux, size_t extra, int depth) {
  net.train();
  const torch::Tensor x = torch::randn({2, in_channels, 64, 64});
  const models::ModelOutput out = net.forward(x);
  torch::Tensor loss = torch::zeros({});
  if (net.is_segmenter()) {
    CHECK(out.masks.sizes() == torch::IntArrayRef({2, classes, 64, 64}));
    REQUIRE(out.extra_masks.size() == extra);
    for (const auto& m : out.extra_masks) {
      CHECK(m.sizes() == out.masks.sizes());
      loss = loss + m.mean();
    }
    loss = loss + out.masks.mean();
  }
  if (aux || !net.is_segmenter()) {
    REQUIRE(out.logits.defined());
    CHECK(out.logits.sizes() == torch::IntArrayRef({2, net.is_segmenter() ? 1 : classes}));
    loss = loss + out.logits.mean();
  } else {
    CHECK_FALSE(out.logits.defined());
  }
  loss.backward();
  int64_t without = 0;
  for (const auto& p : net.named_parameters())
    if (!p.value().grad().defined() && !unused_by_design(p.key(), depth)) {
      UNSCOPED_INFO("no gradient: " << p.key());
      ++without;
    }
  CHECK(without == 0);
  net.eval();
  torch::NoGradGuard no_grad;
  const auto a = net.forward(x), b = net.forward(x);
  CHECK(torch::equal(net.is_segmenter() ? a.masks : a.logits, net.is_segmenter() ? b.masks : b.logits));
}

}  // namespace

TEST_CASE("every network and encoder builds from YAML, trains and evaluates at 64x64") {
  const std::vector<std::string> cases = {
      "{name: unet, encoder: {name: resnet18}}",
      "{name: unet, encoder: {name: resnet34}, attention: scse, aux_head: true}",
      "{name: unet, encoder: {name: resnet50, in_channels: 3}, upsampling: bilinear, classes: 2}",
      "{name: unet, encoder: {name: vgg19}, upsampling: transposed, batch_norm: false}",
      "{name: unet, encoder: {name: vgg19_bn}, aux_head: true}",
      "{name: unet, encoder: {name: densenet121}}",
      "{name: unet, encoder: {name: efficientnet-b0}, aux_head: true}",
      "{name: unet++, encoder: {name: efficientnet-b3}}",
      "{name: unet, encoder: {name: resnet34, depth: 3}, decoder_channels: [64, 32, 16]}",
      "{name: unet++, encoder: {name: resnet18}, deep_supervision: true, aux_head: true}",
      "{name: unet++, encoder: {name: vgg19_bn}, attention: scse}",
      "{name: unet++, encoder: {name: densenet121}}",
      "{name: attention_unet}",
      "{name: attention_unet, encoder: {name: resnet34}, aux_head: true}",
      "{name: double_unet, aux_head: true}",
      "{name: classifier}",
      "{name: classifier, encoder: {in_channels: 3}, classes: 14, pooling: avgmax}",
  };
  for (const std::string& yaml : cases) {
    INFO(yaml);
    const models::ModelSection m = section(yaml);
    auto net = models::build_model(m);
    const bool deep = m.deep_supervision;
    const size_t extra = m.name == "double_unet" ? 1 : deep ? static_cast<size_t>(m.encoder.depth - 2) : 0;
    exercise(*net, m.encoder.in_channels, m.classes, m.aux_head, extra, m.encoder.depth);
  }
}

TEST_CASE("bad model sections are configuration errors naming the key") {
  CHECK_THROWS_WITH(section("{name: unet3}"), Contains("model.name") && Contains("unet++"));
  CHECK_THROWS_WITH(models::build_model(section("{name: unet, decoder_channels: [8, 8]}")),
                    Contains("decoder_channels"));
  CHECK_THROWS_WITH(models::build_model(section("{name: classifier, encoder: {name: resnet34}}")),
                    Contains("DenseNet121"));
  CHECK_THROWS_WITH(models::build_model(section("{name: double_unet, encoder: {name: resnet34}}")),
                    Contains("vgg19"));
  CHECK_THROWS_WITH(models::build_model(section("{name: unet, deep_supervision: true}")), Contains("unet++"));
  CHECK_THROWS_WITH(section("{name: unet, encoder: {in_channels: 2}}"), Contains("1 or 3"));
}

TEST_CASE("an attention gate multiplies the skip by coefficients in (0, 1)") {
  torch::NoGradGuard no_grad;
  models::AttentionGate gate(8, 6, 4);
  gate->eval();
  const torch::Tensor g = torch::randn({2, 8, 16, 16}), x = torch::randn({2, 6, 16, 16});
  const torch::Tensor alpha = gate->alpha(g, x);
  CHECK(alpha.sizes() == torch::IntArrayRef({2, 1, 16, 16}));
  CHECK(alpha.min().item<float>() > 0.0f);
  CHECK(alpha.max().item<float>() < 1.0f);
  CHECK(torch::allclose(gate->forward(g, x), x * alpha));
}

TEST_CASE("encoder weights load into a network, ignoring the source's classifier head") {
  pneumo::testing::TempDir dir;
  // A torchvision-style resnet34 file: the encoder's names plus fc.*.
  auto encoder = models::make_encoder({"resnet34", 3, 5});
  models::NamedTensors tensors;
  for (const auto& p : encoder->named_parameters()) tensors.emplace_back(p.key(), torch::randn_like(p.value()));
  for (const auto& b : encoder->named_buffers()) tensors.emplace_back(b.key(), b.value());
  tensors.emplace_back("fc.weight", torch::randn({1000, 512}));
  tensors.emplace_back("fc.bias", torch::randn({1000}));
  models::save_weights(tensors, dir / "resnet34.pth");

  auto net = models::build_model(section("{name: unet, encoder: {name: resnet34, in_channels: 1, weights: " +
                                         (dir / "resnet34.pth").string() + "}}"));
  const torch::Tensor loaded = net->named_parameters()["encoder.conv1.weight"];
  CHECK(loaded.sizes() == torch::IntArrayRef({64, 1, 7, 7}));
  CHECK(torch::allclose(loaded, tensors[0].second.sum(1, true)));  // RGB summed for one channel
  CHECK(torch::equal(net->named_parameters()["encoder.layer4.2.bn2.weight"],
                     encoder->named_parameters()["layer4.2.bn2.weight"].detach() * 0 +
                         std::find_if(tensors.begin(), tensors.end(), [](const auto& e) {
                           return e.first == "layer4.2.bn2.weight";
                         })->second));

  // A file that misses encoder tensors is refused, naming them.
  models::NamedTensors partial(tensors.begin() + 3, tensors.end());
  models::save_weights(partial, dir / "partial.pth");
  CHECK_THROWS_WITH(models::build_model(section("{name: unet, encoder: {name: resnet34, weights: " +
                                                (dir / "partial.pth").string() + "}}")),
                    Contains("partial.pth") && Contains("missing") && Contains("conv1.weight"));

  // The classifier takes torchvision DenseNet121 `features.*` and ignores its 1000-class head.
  models::ModelSection c = section("{name: classifier}");
  auto classifier = models::build_model(c);
  models::NamedTensors dense;
  for (const auto& p : classifier->named_parameters())
    if (p.key().rfind("features.", 0) == 0) dense.emplace_back(p.key(), torch::randn_like(p.value()));
  for (const auto& b : classifier->named_buffers()) dense.emplace_back(b.key(), b.value());
  dense.emplace_back("classifier.weight", torch::randn({1000, 1024}));
  models::save_weights(dense, dir / "densenet121.pth");
  c.encoder.weights = (dir / "densenet121.pth").string();
  CHECK_NOTHROW(models::build_model(c));
}

TEST_CASE("CheXNet-style checkpoints load: module. and densenet121. prefixes, legacy norm.1 names") {
  pneumo::testing::TempDir dir;
  models::Classifier reference(models::ClassifierOptions{3, 14, "avg"});
  models::NamedTensors chexnet;
  const std::regex dense_layer(R"((denselayer\d+\.)(norm|relu|conv)([12])\.)");
  for (const auto& p : reference->named_parameters()) {
    std::string key = std::regex_replace(p.key(), dense_layer, "$1$2.$3.");  // norm1 -> norm.1
    if (key.rfind("classifier.", 0) == 0) key = "classifier.0." + key.substr(11);
    chexnet.emplace_back("module.densenet121." + key, p.value().detach().clone());
  }
  for (const auto& b : reference->named_buffers())  // PyTorch 0.3 had no num_batches_tracked
    if (b.key().find("num_batches_tracked") == std::string::npos)
      chexnet.emplace_back("module.densenet121." + std::regex_replace(b.key(), dense_layer, "$1$2.$3."), b.value());
  CHECK(std::any_of(chexnet.begin(), chexnet.end(), [](const auto& e) {
    return e.first == "module.densenet121.features.denseblock1.denselayer1.norm.1.weight";
  }));
  models::save_weights(chexnet, dir / "chexnet.pth.tar");

  models::Classifier classifier(models::ClassifierOptions{3, 14, "avg"});
  const auto report = models::load_weights(*classifier, models::read_weights(dir / "chexnet.pth.tar"));
  CHECK(report.missing.empty());
  CHECK(report.unexpected.empty());
  const auto head = std::find_if(chexnet.begin(), chexnet.end(), [](const auto& e) {
    return e.first == "module.densenet121.classifier.0.weight";
  });
  REQUIRE(head != chexnet.end());
  CHECK(torch::equal(classifier->named_parameters()["classifier.weight"], head->second));
  classifier->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor logits = classifier->logits(torch::randn({1, 3, 64, 64}));
  CHECK(logits.sizes() == torch::IntArrayRef({1, 14}));
  CHECK(classifier->pneumothorax_logit(logits).item<float>() == logits[0][7].item<float>());
}

namespace {

// What a built network is: its module tree with every module's options, and its tensors' names
// and shapes. Two sections that build the same thing give the same text.
std::string structure_of(const models::ModelSection& m) {
  auto net = models::build_model(m);
  std::ostringstream out;
  out << *net;
  for (const auto& p : net->named_parameters()) out << p.key() << p.value().sizes() << "\n";
  for (const auto& b : net->named_buffers()) out << b.key() << b.value().sizes() << "\n";
  return out.str();
}

// Every key path of the model: section, e.g. "encoder.depth".
std::vector<std::string> model_keys(const core::ConfigNode& node, const std::string& prefix = "") {
  std::vector<std::string> keys;
  for (const core::ConfigEntry& entry : node.entries()) {
    if (entry.value.is_map())
      for (const std::string& inner : model_keys(entry.value, prefix + entry.key + ".")) keys.push_back(inner);
    else
      keys.push_back(prefix + entry.key);
  }
  return keys;
}

}  // namespace

TEST_CASE("the network registry: every model key is read by a network, and each key a network reads changes it") {
  // A valid non-default value for every key a network may read (per network where it differs).
  const std::map<std::string, std::string> other_value = {
      {"encoder.in_channels", "3"}, {"encoder.depth", "4"},       {"decoder_channels", "[32, 16, 16, 8, 8]"},
      {"upsampling", "transposed"}, {"batch_norm", "false"},      {"attention", "scse"},
      {"classes", "14"},            {"aux_head", "true"},         {"aux_dropout", "0.5"},
      {"deep_supervision", "true"}, {"widths", "[4, 8, 8, 16, 16]"}, {"pooling", "avgmax"}};
  const std::map<std::string, std::string> per_network = {
      {"unet encoder.name", "resnet18"},        {"unet++ encoder.name", "resnet18"},
      {"attention_unet encoder.name", "resnet34"}, {"double_unet encoder.name", "vgg19_bn"},
      {"classifier encoder.name", "resnet34"},  {"unet aux_head", "false"},  // their bases have the head
      {"unet++ aux_head", "false"}};
  // Small defaults, so that every variant builds quickly.
  const std::map<std::string, std::string> base = {
      {"unet", "{name: unet, encoder: {name: resnet34}, decoder_channels: [16, 16, 8, 8, 8], aux_head: true}"},
      {"unet++", "{name: unet++, encoder: {name: resnet34}, decoder_channels: [16, 16, 8, 8, 8], aux_head: true}"},
      {"attention_unet", "{name: attention_unet, widths: [4, 4, 8, 8, 16]}"},
      {"double_unet", "{name: double_unet}"},
      {"classifier", "{name: classifier}"}};
  const std::vector<std::string> handled_by_build_model = {"name", "weights", "encoder.weights"};
  std::set<std::string> read_by_some_network(handled_by_build_model.begin(), handled_by_build_model.end());
  REQUIRE(models::network_names() == std::vector<std::string>{"attention_unet", "classifier", "double_unet", "unet", "unet++"});
  for (const std::string& name : models::network_names()) {
    const models::NetworkEntry& entry = models::networks().at(name);
    CHECK_FALSE(entry.summary.empty());
    for (const std::string& example : entry.examples) CHECK_NOTHROW(models::build_model(section(example)));
    const std::string reference = structure_of(section(base.at(name)));
    for (const std::string& key : entry.keys) {
      INFO(name << ": " << key);
      read_by_some_network.insert(key);
      const auto special = per_network.find(name + " " + key);
      const std::string value = special != per_network.end() ? special->second : other_value.at(key);
      const std::string assignment = key + "=" + value;
      core::ConfigNode node = core::parse_yaml(base.at(name), "model.yaml");
      core::apply_override(node, assignment);
      // The key is carried to the network: it builds something else, or refuses the value.
      bool changed = true;
      try {
        changed = structure_of(core::read_section<models::ModelSection>(node, "model")) != reference;
      } catch (const core::ConfigError&) {
      }
      CHECK(changed);
    }
  }
  for (const std::string& key : model_keys(core::write_section(models::ModelSection{}))) {
    INFO("model." << key << " is read by no network in the registry");
    CHECK(read_by_some_network.count(key) == 1);
  }
}

TEST_CASE("networks name their encoder parameters, and missing weight files say how to bring them") {
  for (const char* yaml : {"{name: unet, encoder: {name: resnet18}}", "{name: classifier}",
                                  "{name: attention_unet, widths: [4, 4, 8, 8, 16]}", "{name: double_unet}"}) {
    INFO(yaml);
    auto net = models::build_model(section(yaml));
    std::set<const void*> encoder;
    for (const auto& p : net->encoder_parameters()) encoder.insert(p.unsafeGetTensorImpl());
    CHECK(encoder.size() > 4);
    CHECK(encoder.size() < net->parameters().size());  // the decoder and head are not the encoder
    // The old rule the trainer matched names with: the same parameters.
    const std::regex old_rule("^(encoder|features\\.|Conv[0-9]).*");
    for (const auto& p : net->named_parameters())
      CHECK(encoder.count(p.value().unsafeGetTensorImpl()) == (std::regex_match(p.key(), old_rule) ? 1u : 0u));
  }
  CHECK_THROWS_WITH(models::build_model(section("{name: unet, encoder: {name: resnet34, weights: /nowhere/resnet34.pth}}")),
                    Contains("model.encoder.weights") && Contains("/nowhere/resnet34.pth") && Contains("not found") &&
                        Contains("Bringing pretrained weights") && Contains("weights: \"\""));
  CHECK_THROWS_WITH(models::build_model(section("{name: attention_unet, encoder: {weights: " PNEUMO_SOURCE_DIR "/README.md}}")),
                    Contains("model.encoder.weights") && Contains("no pretrained"));
  // An empty value clears a string key, in a file and from --set.
  core::ConfigNode node = core::parse_yaml("{name: unet, encoder: {weights: x.pth}}", "model.yaml");
  core::apply_override(node, "encoder.weights=");
  CHECK(core::read_section<models::ModelSection>(node, "model").encoder.weights.empty());
  CHECK(section("{name: unet, weights: }").weights.empty());
}

TEST_CASE("the README's table of networks lists every registered network") {
  const std::string readme = pneumo::testing::read_file(std::filesystem::path(PNEUMO_SOURCE_DIR) / "README.md");
  for (const std::string& name : models::network_names()) {
    INFO(name);
    CHECK(readme.find("| `" + name + "` |") != std::string::npos);
  }
}

TEST_CASE("BatchNorm folded into the convolutions: every family within 1e-5 of the unfolded network") {
  const std::vector<std::string> cases = {
      "{name: unet, encoder: {name: resnet34}, aux_head: true}",
      "{name: unet++, encoder: {name: resnet18}, deep_supervision: true}",
      "{name: unet, encoder: {name: efficientnet-b0}}",
      "{name: unet, encoder: {name: vgg19_bn}, attention: scse}",
      "{name: unet, encoder: {name: densenet121}}",
      "{name: attention_unet, encoder: {name: resnet34}}",
      "{name: double_unet}",
      "{name: classifier}",
  };
  torch::manual_seed(7);
  for (const std::string& yaml : cases) {
    INFO(yaml);
    const models::ModelSection m = section(yaml);
    auto net = models::build_model(m);
    {  // running statistics away from 0 and 1, so that folding changes every weight
      torch::NoGradGuard no_grad;
      for (auto& buffer : net->named_buffers()) {
        if (buffer.key().find("running_var") != std::string::npos) buffer.value().uniform_(0.5, 2.0);
        if (buffer.key().find("running_mean") != std::string::npos) buffer.value().normal_(0.0, 0.3);
      }
    }
    net->eval();
    const torch::Tensor x = torch::randn({2, m.encoder.in_channels, 64, 64});
    torch::NoGradGuard no_grad;
    const models::ModelOutput before = net->forward(x);
    torch::manual_seed(11);
    const torch::Tensor next_unfolded = torch::rand({3});
    torch::manual_seed(11);
    const models::BatchNormFolding folding = models::fold_batch_norms(*net, m.encoder.in_channels);
    INFO(folding.why_not);
    REQUIRE(folding.applied);
    CHECK(folding.folded > 0);
    CHECK(torch::equal(torch::rand({3}), next_unfolded));  // folding drew nothing from the global generator
    for (const auto& module : net->modules())  // a folded convolution states its real sizes
      if (const auto* conv = module->as<torch::nn::Conv2dImpl>()) {
        CHECK(conv->weight.size(0) == conv->options.out_channels());
        CHECK(conv->weight.size(1) * conv->options.groups() == conv->options.in_channels());
        CHECK((!conv->bias.defined() || conv->bias.size(0) == conv->options.out_channels()));
      }
    const models::ModelOutput after = net->forward(x);
    const auto check_close = [](const torch::Tensor& a, const torch::Tensor& b) {
      if (!a.defined()) {
        CHECK(!b.defined());
        return;
      }
      const double scale = std::max(1.0, a.abs().max().item<double>());
      CHECK((a - b).abs().max().item<double>() <= 1e-5 * scale);
    };
    check_close(before.masks, after.masks);
    check_close(before.logits, after.logits);
    REQUIRE(before.extra_masks.size() == after.extra_masks.size());
    for (size_t k = 0; k < before.extra_masks.size(); ++k) check_close(before.extra_masks[k], after.extra_masks[k]);
    net->train();
    CHECK_THROWS_AS(net->forward(x), core::ModelError);  // a folded BatchNorm does not train
  }
}

TEST_CASE("a folding the probe does not confirm is put back whole") {
  auto net = models::build_model(section("{name: unet, encoder: {name: resnet18}}"));
  {
    torch::NoGradGuard no_grad;
    for (auto& buffer : net->named_buffers())
      if (buffer.key().find("running_var") != std::string::npos) buffer.value().uniform_(0.5, 2.0);
  }
  net->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({1, 1, 64, 64});
  const torch::Tensor before = net->forward(x).masks;
  // A tolerance of 0 refuses the rounding differences every folding has.
  const models::BatchNormFolding folding = models::fold_batch_norms(*net, 1, 64, 0.0);
  CHECK_FALSE(folding.applied);
  CHECK(folding.folded == 0);
  CHECK_THAT(folding.why_not, Contains("moved"));
  CHECK(torch::equal(net->forward(x).masks, before));
  net->train();
  CHECK_NOTHROW(net->forward(torch::randn({2, 1, 64, 64})));  // the BatchNorms train again
}

TEST_CASE("channels-last: one-channel images and stem weights get NHWC strides so the stem runs in NHWC") {
  const auto nhwc = torch::MemoryFormat::ChannelsLast;
  torch::manual_seed(3);
  const torch::Tensor image = torch::randn({2, 1, 64, 64});
  // The pitfall: both orders are contiguous, so contiguous() keeps NCHW strides and PyTorch infers NCHW.
  CHECK(image.contiguous(nhwc).suggest_memory_format() == torch::MemoryFormat::Contiguous);
  const torch::Tensor x = models::to_channels_last(image);
  CHECK(x.suggest_memory_format() == nhwc);
  CHECK(torch::equal(x, image));

  auto net = models::build_model(section("{name: unet, encoder: {name: resnet18, in_channels: 1}}"));
  net->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor before = net->forward(image).masks;
  models::use_channels_last(*net);
  for (const auto& p : net->parameters())
    if (p.dim() == 4) CHECK(p.suggest_memory_format() == nhwc);  // the stem's [64, 1, 7, 7] too
  const torch::Tensor stem = net->named_modules()["encoder.conv1"]->as<torch::nn::Conv2dImpl>()->forward(x);
  CHECK(stem.suggest_memory_format() == nhwc);
  CHECK(torch::allclose(net->forward(x).masks, before, 1e-4, 1e-5));

  const torch::Tensor rgb = torch::randn({2, 3, 8, 8}).contiguous(nhwc);
  CHECK(models::to_channels_last(rgb).is_same(rgb));  // already NHWC: no copy
  const torch::Tensor flat = torch::randn({2, 3});
  CHECK(models::to_channels_last(flat).is_same(flat));
}
