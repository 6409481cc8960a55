// Encoders, the classifier, U-Net and UNet++ against torchvision and segmentation_models_pytorch
// (reference_models.py) with the same random weights, both ways; shapes, gradients and weight
// files.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>

#include <torch/serialize.h>
#include <torch/torch.h>

#include "pneumo/core/error.h"
#include "pneumo/models/attention_unet.h"
#include "pneumo/models/classifier.h"
#include "pneumo/models/double_unet.h"
#include "pneumo/models/encoder.h"
#include "pneumo/models/unet.h"
#include "pneumo/models/torch_save.h"
#include "pneumo/models/unet_plus_plus.h"
#include "pneumo/models/weights.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

using namespace pneumo;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

// Runs the Python reference once per test run and keeps its files for every test case.
const fs::path& reference_dir() {
  static pneumo::testing::TempDir dir;
  static bool made = [] {
    const auto r = pneumo::testing::run_command(
        {PNEUMO_REFERENCE_PYTHON, std::string(PNEUMO_SOURCE_DIR) + "/tests/models/reference_models.py",
         dir.path().string()});
    if (r.exit_code != 0) FAIL("reference_models.py failed: " << r.err);
    return true;
  }();
  (void)made;
  return dir.path();
}

std::map<std::string, torch::Tensor> read_io(const std::string& name) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [key, tensor] : models::read_weights(reference_dir() / (name + ".io.pth"))) out[key] = tensor;
  return out;
}

// Largest difference relative to the reference's largest magnitude.
double relative_error(const torch::Tensor& ours, const torch::Tensor& theirs) {
  return (ours - theirs).abs().max().item<double>() / std::max(theirs.abs().max().item<double>(), 1e-12);
}

int64_t parameter_count(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

}  // namespace

TEST_CASE("every encoder equals torchvision's stages with the same weights") {
  torch::NoGradGuard no_grad;
  for (const std::string& name : models::encoder_names()) {
    INFO("encoder " << name);
    auto encoder = models::make_encoder({name, 3, 5});
    // Strict: every tensor of torchvision's model (minus its classifier head) has its place.
    const auto report = models::load_weights(*encoder, models::read_weights(reference_dir() / (name + ".weights.pth")));
    encoder->eval();
    auto io = read_io(name);
    CHECK(parameter_count(*encoder) == io["parameters"].item<int64_t>());
    const auto features = encoder->forward_features(io["input"]);
    REQUIRE(features.size() == 6);
    for (size_t i = 0; i < features.size(); ++i) {
      INFO("feature " << i);
      const torch::Tensor& expected = io["out" + std::to_string(i)];
      REQUIRE(features[i].sizes() == expected.sizes());
      CHECK(features[i].size(1) == encoder->out_channels()[i]);
      const double err = relative_error(features[i], expected);
      CHECK(err < 1e-5);
    }
    std::cout << "  " << name << ": " << report.loaded.size() << " tensors, " << parameter_count(*encoder)
              << " parameters, equal to torchvision\n";
  }
}

TEST_CASE("a one-channel encoder sums 3-channel weights over RGB") {
  torch::NoGradGuard no_grad;
  auto encoder = models::make_encoder({"resnet18", 1, 5});
  const auto report = models::load_weights(*encoder, models::read_weights(reference_dir() / "resnet18_grey.weights.pth"));
  CHECK(report.summed_rgb == std::vector<std::string>{"conv1.weight"});
  encoder->eval();
  auto io = read_io("resnet18_grey");
  const auto features = encoder->forward_features(io["input"]);
  for (size_t i = 0; i < features.size(); ++i) CHECK(relative_error(features[i], io["out" + std::to_string(i)]) < 1e-5);
}

TEST_CASE("the classifier equals torchvision's DenseNet121 with a one-logit head") {
  torch::NoGradGuard no_grad;
  models::Classifier classifier(models::ClassifierOptions{3, 1, "avg"});
  models::load_weights(*classifier, models::read_weights(reference_dir() / "classifier.weights.pth"));
  classifier->eval();
  auto io = read_io("classifier");
  CHECK(parameter_count(*classifier) == io["parameters"].item<int64_t>());
  const torch::Tensor logits = classifier->logits(io["input"]);
  CHECK(logits.sizes() == io["out0"].sizes());
  CHECK(relative_error(logits, io["out0"]) < 1e-5);
  CHECK(classifier->pneumothorax_logit(logits).sizes() == torch::IntArrayRef({2}));
}

TEST_CASE("U-Net equals segmentation_models_pytorch's, auxiliary head included") {
  torch::NoGradGuard no_grad;
  models::UNetOptions options;
  options.encoder = {"resnet34", 3, 5};
  options.attention = "scse";
  options.aux_head = true;
  models::UNet unet(options);
  const auto report = models::load_weights(*unet, models::read_weights(reference_dir() / "unet_resnet34.weights.pth"));
  CHECK(report.missing.empty());
  unet->eval();
  auto io = read_io("unet_resnet34");
  CHECK(parameter_count(*unet) == io["parameters"].item<int64_t>());
  const auto out = unet->forward(io["input"]);
  CHECK(relative_error(out.masks, io["out0"]) < 1e-5);
  CHECK(relative_error(out.logits, io["out1"]) < 1e-5);

  // Nested under state_dict with DataParallel prefixes, as training scripts save; and the
  // OrderedDict that torch.save(model.state_dict()) writes; and the legacy (pre-1.6) format.
  for (const char* file : {"unet_nested.pth", "unet_ordered.pth", "unet_legacy.pth", "unet.safetensors"}) {
    INFO(file);
    models::UNet again(options);
    models::load_weights(*again, models::read_weights(reference_dir() / file));
    again->eval();
    CHECK(relative_error(again->forward(io["input"]).masks, io["out0"]) < 1e-5);
  }
}

TEST_CASE("weights pneumo initialises and saves load strictly into segmentation_models_pytorch") {
  // The other way round: pneumo's own random weights, saved by pneumo, loaded by smp's U-Net
  // and UNet++ with strict=True, give pneumo's outputs.
  pneumo::testing::TempDir dir;
  torch::manual_seed(11);
  models::UNetOptions unet_options;
  unet_options.encoder = {"resnet34", 3, 5};
  unet_options.attention = "scse";
  unet_options.aux_head = true;
  models::UNet unet(unet_options);
  models::UNetPlusPlusOptions pp_options;
  pp_options.encoder = {"resnet34", 3, 5};
  models::UNetPlusPlus pp(pp_options);
  unet->eval();
  pp->eval();
  models::save_weights(*unet, dir / "unet.pth");
  models::save_weights(*pp, dir / "unetpp.pth");
  const torch::Tensor x = torch::randn({2, 3, 64, 64});
  pneumo::testing::write_file(dir / "x.pth", models::torch_save_bytes({{"x", x}}));
  const auto r = pneumo::testing::run_command(
      {PNEUMO_REFERENCE_PYTHON, "-W", "ignore", "-c",
       "import sys, torch, segmentation_models_pytorch as smp\n"
       "d = sys.argv[1]\n"
       "x = torch.load(d + '/x.pth')['x']\n"
       "unet = smp.Unet('resnet34', encoder_weights=None, decoder_attention_type='scse', aux_params={'classes': 1})\n"
       "pp = smp.UnetPlusPlus('resnet34', encoder_weights=None)\n"
       "unet.load_state_dict(torch.load(d + '/unet.pth'), strict=True)\n"
       "pp.load_state_dict(torch.load(d + '/unetpp.pth'), strict=True)\n"
       "unet.eval(); pp.eval()\n"
       "with torch.no_grad():\n"
       "    masks, logits = unet(x)\n"
       "    torch.save({'masks': masks, 'logits': logits, 'pp': pp(x)}, d + '/smp.pth')\n",
       dir.path().string()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  std::map<std::string, torch::Tensor> theirs;
  for (const auto& [key, tensor] : models::read_weights(dir / "smp.pth")) theirs[key] = tensor;
  torch::NoGradGuard no_grad;
  const auto ours = unet->forward(x);
  CHECK(relative_error(ours.masks, theirs["masks"]) < 1e-5);
  CHECK(relative_error(ours.logits, theirs["logits"]) < 1e-5);
  CHECK(relative_error(pp->forward(x).masks, theirs["pp"]) < 1e-5);
}

TEST_CASE("UNet++ equals segmentation_models_pytorch's") {
  torch::NoGradGuard no_grad;
  models::UNetPlusPlusOptions options;
  options.encoder = {"resnet34", 3, 5};
  models::UNetPlusPlus net(options);
  models::load_weights(*net, models::read_weights(reference_dir() / "unetpp_resnet34.weights.pth"));
  net->eval();
  auto io = read_io("unetpp_resnet34");
  CHECK(parameter_count(*net) == io["parameters"].item<int64_t>());
  CHECK(relative_error(net->forward(io["input"]).masks, io["out0"]) < 1e-5);
}

TEST_CASE("Attention U-Net equals the AttU_Net-named reference, plain and over ResNet34") {
  torch::NoGradGuard no_grad;
  for (const std::string encoder : {"plain", "resnet34"}) {
    INFO(encoder);
    models::AttentionUNetOptions options;
    options.encoder = encoder;
    options.in_channels = 3;
    options.widths = {8, 16, 32, 64, 128};
    models::AttentionUNet net(options);
    const std::string name = "attention_unet_" + encoder;
    models::load_weights(*net, models::read_weights(reference_dir() / (name + ".weights.pth")));
    net->eval();
    auto io = read_io(name);
    CHECK(parameter_count(*net) == io["parameters"].item<int64_t>());
    CHECK(relative_error(net->forward(io["input"]).masks, io["out0"]) < 1e-5);
  }
}

TEST_CASE("Double U-Net equals the reference, both networks' masks") {
  torch::NoGradGuard no_grad;
  models::DoubleUNetOptions options;
  options.in_channels = 3;
  models::DoubleUNet net(options);
  models::load_weights(*net, models::read_weights(reference_dir() / "double_unet_vgg19.weights.pth"));
  net->eval();
  auto io = read_io("double_unet_vgg19");
  CHECK(parameter_count(*net) == io["parameters"].item<int64_t>());
  const auto out = net->forward(io["input"]);
  CHECK(relative_error(out.masks, io["out0"]) < 1e-5);
  REQUIRE(out.extra_masks.size() == 1);
  CHECK(relative_error(out.extra_masks[0], io["out1"]) < 1e-5);
}

TEST_CASE("weights saved by pneumo load back, and strict loading names what does not fit") {
  pneumo::testing::TempDir dir;
  models::UNetOptions options;
  options.encoder = {"resnet18", 1, 5};
  models::UNet a(options), b(options);
  models::save_weights(*a, dir / "a.pth");
  models::load_weights(*b, models::read_weights(dir / "a.pth"));
  a->eval();
  b->eval();
  torch::NoGradGuard no_grad;
  const torch::Tensor x = torch::randn({1, 1, 64, 64});
  CHECK(torch::equal(a->forward(x).masks, b->forward(x).masks));
  // Python's torch.load reads what pneumo writes: same names, same values.
  int64_t numel = 0;
  for (const auto& p : a->parameters()) numel += p.numel();
  for (const auto& p : a->buffers()) numel += p.numel();
  const auto python = pneumo::testing::run_command(
      {PNEUMO_REFERENCE_PYTHON, "-c",
       "import sys, torch; sd = torch.load(sys.argv[1]); "
       "print(type(sd).__name__, len(sd), sum(v.numel() for v in sd.values()), "
       "float(sd['decoder.blocks.0.conv1.0.weight'].double().sum()))",
       (dir / "a.pth").string()});
  INFO(python.err);
  CHECK(python.exit_code == 0);
  const double sum = a->named_parameters()["decoder.blocks.0.conv1.0.weight"].to(torch::kDouble).sum().item<double>();
  CHECK_THAT(python.out, Contains(fmt::format("OrderedDict {} {} ", a->parameters().size() + a->buffers().size(), numel)));
  CHECK(std::stod(python.out.substr(python.out.rfind(' ') + 1)) == Approx(sum).epsilon(1e-9));

  options.decoder_channels = {128, 64, 32, 16, 8};
  models::UNet other(options);
  CHECK_THROWS_WITH(models::load_weights(*other, models::read_weights(dir / "a.pth"), true, "a.pth"),
                    Contains("a.pth do not fit") && Contains("decoder.blocks.0.conv1.0.weight: model"));
  const auto report = models::load_weights(*other, models::read_weights(dir / "a.pth"), false);
  CHECK(!report.mismatched.empty());
  CHECK(!report.loaded.empty());  // the encoder fits
  CHECK_THROWS_AS(models::read_weights(dir / "missing.pth"), core::CheckpointError);
  // safetensors both ways.
  models::save_weights(*a, dir / "a.safetensors");
  options.decoder_channels = {256, 128, 64, 32, 16};
  models::UNet c(options);
  models::load_weights(*c, models::read_weights(dir / "a.safetensors"));
  c->eval();
  CHECK(torch::equal(a->forward(x).masks, c->forward(x).masks));
  const std::string st = pneumo::testing::read_file(dir / "a.safetensors");
  pneumo::testing::write_file(dir / "cut.safetensors", st.substr(0, st.size() - 10));
  CHECK_THROWS_WITH(models::read_weights(dir / "cut.safetensors"), Contains("cut.safetensors") && Contains("data_offsets"));
  pneumo::testing::write_file(dir / "junk.pth", "not a zip");
  CHECK_THROWS_WITH(models::read_weights(dir / "junk.pth"), Contains("junk.pth") && Contains("torch.save"));
  // Truncated files at every length are refused cleanly, never crash.
  const std::string whole = pneumo::testing::read_file(dir / "a.pth");
  for (size_t cut : {size_t{10}, whole.size() / 3, whole.size() / 2, whole.size() - 100}) {
    pneumo::testing::write_file(dir / "cut.pth", whole.substr(0, cut));
    CHECK_THROWS_AS(models::read_weights(dir / "cut.pth"), core::CheckpointError);
  }
}

TEST_CASE("every encoder in a U-Net trains at 64x64: shapes, gradients, modes") {
  for (const std::string& name : models::encoder_names()) {
    for (const std::string upsampling : {"nearest", "bilinear", "transposed"}) {
      INFO(name << " " << upsampling);
      models::UNetOptions options;
      options.encoder = {name, 1, 5};
      options.upsampling = upsampling;
      options.aux_head = true;
      models::UNet unet(options);
      unet->train();
      const torch::Tensor x = torch::randn({2, 1, 64, 64});
      const auto out = unet->forward(x);
      CHECK(out.masks.sizes() == torch::IntArrayRef({2, 1, 64, 64}));
      CHECK(out.logits.sizes() == torch::IntArrayRef({2, 1}));
      (out.masks.mean() + out.logits.mean()).backward();
      int64_t without_grad = 0;
      for (const auto& p : unet->parameters()) without_grad += !p.grad().defined();
      CHECK(without_grad == 0);
      unet->eval();
      torch::NoGradGuard no_grad;
      CHECK(torch::equal(unet->forward(x).masks, unet->forward(x).masks));
      if (name != "resnet18") break;  // every upsampling once is enough
    }
  }
  models::UNetOptions bad;
  bad.decoder_channels = {16, 8};
  CHECK_THROWS_AS(models::UNet(bad), core::ConfigError);
  CHECK_THROWS_WITH(models::make_encoder({"resnet35", 3, 5}), Contains("did you mean 'resnet34'"));
  CHECK_THROWS_WITH(models::make_encoder({"resnet34", 3, 5})->forward_features(torch::zeros({1, 3, 60, 64})),
                    Contains("divisible by 32"));
}

TEST_CASE("weight files the fuzzers found problems with are refused cleanly") {
  const fs::path folder = fs::path(PNEUMO_SOURCE_DIR) / "tests/fuzz/regressions/checkpoint";
  int files = 0;
  for (const auto& entry : fs::directory_iterator(folder)) {
    INFO(entry.path().string());
    CHECK_THROWS_AS(models::read_weights(entry.path()), core::CheckpointError);
    ++files;
  }
  CHECK(files >= 1);
  // A 393-byte legacy file whose pickle declares a 5 GB storage: refused before allocating.
  CHECK_THROWS_WITH(models::read_weights(folder / "legacy-storage-larger-than-file"),
                    Contains("bytes in a file of 393 bytes"));
  // A zip whose files are not under one folder, and one with a version LibTorch does not read:
  // refused before LibTorch's reader sees them.
  pneumo::testing::TempDir dir;
  const auto r = pneumo::testing::run_command(
      {PNEUMO_REFERENCE_PYTHON, "-c",
       "import sys, zipfile\n"
       "with zipfile.ZipFile(sys.argv[1], 'w') as z:\n"
       "    z.writestr('version', '3\\n'); z.writestr('data.pkl', b'')\n"
       "with zipfile.ZipFile(sys.argv[2], 'w') as z:\n"
       "    z.writestr('a/version', '99\\n'); z.writestr('a/data.pkl', b'')\n",
       (dir / "flat.pth").string(), (dir / "future.pth").string()});
  REQUIRE(r.exit_code == 0);
  CHECK_THROWS_WITH(models::read_weights(dir / "flat.pth"), Contains("outside the archive's folder"));
  CHECK_THROWS_WITH(models::read_weights(dir / "future.pth"), Contains("version 99"));
  // Pickles built to take time: nesting 200,000 lists deep (each append walked the graph before:
  // minutes), one list shared twice per level 60 levels up (2^60 values to a checksum), a list
  // that grows after it was placed in another (how a cycle is made), and a global named by a
  // global (fuzz_checkpoint: the name doubled at each step). Each is refused at once.
  const auto pickles = pneumo::testing::run_command(
      {PNEUMO_REFERENCE_PYTHON, "-c",
       "import sys, zipfile\n"
       "def save(name, pickle):\n"
       "    with zipfile.ZipFile(name, 'w') as z:\n"
       "        z.writestr('a/version', '3\\n'); z.writestr('a/data.pkl', b'\\x80\\x02' + pickle + b'.')\n"
       "n = 200000\n"
       "save(sys.argv[1] + '/deep.pth', b']' * n + b'a' * (n - 1))\n"
       "save(sys.argv[1] + '/shared.pth', b']' + b'2\\x86' * 60)\n"
       "save(sys.argv[1] + '/grown.pth', b']q\\x00]h\\x00a0Na')\n"
       "save(sys.argv[1] + '/global.pth', b'X\\x01\\x00\\x00\\x00m2\\x93' + b'2\\x93' * 40)\n",
       dir.path().string()});
  REQUIRE(pickles.exit_code == 0);
  CHECK_THROWS_WITH(models::read_weights(dir / "deep.pth"), Contains("nested deeper than 1000 levels"));
  CHECK_THROWS_WITH(models::read_weights(dir / "shared.pth"), Contains("expand to more than"));
  CHECK_THROWS_WITH(models::read_weights(dir / "grown.pth"), Contains("grows after it was placed"));
  CHECK_THROWS_WITH(models::read_weights(dir / "global.pth"), Contains("STACK_GLOBAL needs two strings"));
}
