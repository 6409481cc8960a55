// TorchScript export: the file loads in C++ (torch::jit::load) and in Python (torch.jit.load
// with Debian's python3-torch) and gives the native model's outputs within 1e-5.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <torch/script.h>
#include <torch/torch.h>

#include "common.h"
#include "pneumo/core/error.h"
#include "pneumo/infer/ensemble.h"
#include "pneumo/infer/export.h"
#include "pneumo/models/weights.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

using namespace pneumo;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

struct Native {
  torch::Tensor mask, probability;
};

// The members run directly: normalise as the loader does, forward, sigmoid, weighted mean;
// the image probability from the classifiers when there are any, else the auxiliary heads.
Native native(const std::vector<infer::ModelSpec>& specs, const torch::Tensor& pixels) {
  torch::NoGradGuard no_grad;
  const auto members = infer::load_members(specs, "best", {}, c10::Device(c10::kCPU));
  bool classifiers = false;
  for (const auto& m : members) classifiers = classifiers || !m.segmenter;
  Native out;
  double mask_weight = 0, gate_weight = 0;
  for (const auto& m : members) {
    const auto& d = m.config.data;
    std::vector<torch::Tensor> channels;
    for (int c = 0; c < d.channels; ++c) {
      const double mean = d.mean.size() == 1 ? d.mean[0] : d.mean[c];
      const double std = d.std.size() == 1 ? d.std[0] : d.std[c];
      channels.push_back((pixels / 255.0 - mean) / std);
    }
    const auto y = m.network->forward(torch::cat(channels, 1));
    if (m.segmenter) {
      const auto p = torch::sigmoid(y.masks) * m.weight;
      out.mask = out.mask.defined() ? out.mask + p : p;
      mask_weight += m.weight;
    }
    if (m.segmenter == classifiers) continue;  // not a gate member
    const auto p = torch::sigmoid(models::pneumothorax_logit(y, m.segmenter)) * m.weight;
    out.probability = out.probability.defined() ? out.probability + p : p;
    gate_weight += m.weight;
  }
  if (out.mask.defined()) out.mask /= mask_weight;
  out.probability /= gate_weight;
  return out;
}

torch::Tensor run_file(const fs::path& file, const torch::Tensor& x, int output) {
  torch::jit::Module loaded = torch::jit::load(file.string());
  torch::NoGradGuard no_grad;
  return loaded.forward({x}).toTuple()->elements().at(static_cast<size_t>(output)).toTensor();
}

}  // namespace

TEST_CASE("an exported U-Net ensemble gives the native outputs in C++ and in Python") {
  pneumo::testing::TempDir dir;
  testing::ModelRecipe a, b;
  b.seed = 5;
  b.channels = 3;  // ImageNet normalisation inside the file
  const fs::path ca = testing::write_random_checkpoint(dir / "a.ckpt", a);
  const fs::path cb = testing::write_random_checkpoint(dir / "b.ckpt", b);
  const std::vector<infer::ModelSpec> specs{{ca, 1.0}, {cb, 2.0}};
  infer::ExportOptions options;
  options.models = specs;
  options.out = dir / "model.pt";
  options.postprocess.min_area = 77;
  const infer::ExportSummary s = infer::export_torchscript(options);
  CHECK(s.members == 2);
  CHECK(s.input_size == 64);

  torch::manual_seed(9);
  const torch::Tensor x = torch::rand({3, 1, 64, 64}) * 255;
  const Native expected = native(specs, x);

  torch::jit::ExtraFilesMap extra{{"pneumo.json", ""}};
  torch::jit::Module loaded = torch::jit::load((dir / "model.pt").string(), c10::Device(c10::kCPU), extra);
  const auto json = nlohmann::json::parse(extra["pneumo.json"]);
  CHECK(json["input"]["size"] == 64);
  CHECK(json["postprocess"]["min_area"] == 77);
  CHECK(json["class_names"][0] == "pneumothorax");
  CHECK(json["members"].size() == 2);
  torch::NoGradGuard no_grad;
  const auto outputs = loaded.forward({x}).toTuple()->elements();
  const torch::Tensor mask = outputs.at(0).toTensor(), probability = outputs.at(1).toTensor();
  CHECK(mask.sizes() == expected.mask.sizes());
  CHECK((mask - expected.mask).abs().max().item<double>() < 1e-5);
  CHECK((probability - expected.probability).abs().max().item<double>() < 1e-5);
  // Its state_dict keys are pneumo's checkpoint keys under memberN.
  bool found = false;
  for (const auto& p : loaded.named_parameters())
    if (p.name == "member1.encoder.conv1.weight") found = true;
  CHECK(found);

  // Python.
  models::save_weights(models::NamedTensors{{"x", x}}, dir / "inputs.pth");
  const auto r = pneumo::testing::run_command({PNEUMO_REFERENCE_PYTHON,
                                               std::string(PNEUMO_SOURCE_DIR) + "/tests/infer/run_torchscript.py",
                                               (dir / "model.pt").string(), (dir / "inputs.pth").string(),
                                               (dir / "python.pth").string()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  std::map<std::string, torch::Tensor> py;
  for (auto& [k, v] : models::read_weights(dir / "python.pth")) py[k] = v;
  CHECK(py["size"].item<int64_t>() == 64);
  CHECK((py["mask"] - expected.mask).abs().max().item<double>() < 1e-5);
  CHECK((py["probability"] - expected.probability).abs().max().item<double>() < 1e-5);
}

TEST_CASE("a two-stage export gates with the classifier, a classifier alone exports too") {
  pneumo::testing::TempDir dir;
  testing::ModelRecipe segmenter, classifier = testing::chexnet_recipe();
  classifier.channels = 3;
  const fs::path cs = testing::write_random_checkpoint(dir / "unet.ckpt", segmenter);
  const fs::path cc = testing::write_random_checkpoint(dir / "chexnet.ckpt", classifier);
  torch::manual_seed(4);
  const torch::Tensor x = torch::rand({2, 1, 64, 64}) * 255;

  infer::ExportOptions options;
  options.models = {{cs, 1.0}, {cc, 1.0}};
  options.out = dir / "two-stage.pt";
  infer::export_torchscript(options);
  const Native both = native(options.models, x);
  CHECK((run_file(options.out, x, 0) - both.mask).abs().max().item<double>() < 1e-5);
  CHECK((run_file(options.out, x, 1) - both.probability).abs().max().item<double>() < 1e-5);
  const Native classifier_only = native({{cc, 1.0}}, x);
  CHECK((run_file(options.out, x, 1) - classifier_only.probability).abs().max().item<double>() < 1e-5);

  options.models = {{cc, 1.0}};
  options.out = dir / "chexnet.pt";
  infer::export_torchscript(options);
  const torch::Tensor three = torch::rand({3, 1, 64, 64}) * 255;  // traced with one image
  CHECK(run_file(options.out, three, 0).sizes() == torch::IntArrayRef({3, 1, 0, 0}));
  CHECK((run_file(options.out, three, 1) - native({{cc, 1.0}}, three).probability).abs().max().item<double>() < 1e-5);
}

TEST_CASE("export refuses members with different inputs and leaves no file") {
  pneumo::testing::TempDir dir;
  testing::ModelRecipe a, b;
  b.size = 32;
  const fs::path ca = testing::write_random_checkpoint(dir / "a.ckpt", a);
  const fs::path cb = testing::write_random_checkpoint(dir / "b.ckpt", b);
  infer::ExportOptions options;
  options.models = {{ca, 1.0}, {cb, 1.0}};
  options.out = dir / "model.pt";
  CHECK_THROWS_WITH(infer::export_torchscript(options), Contains("64 px") && Contains("32 px"));
  CHECK_FALSE(fs::exists(dir / "model.pt"));
}
