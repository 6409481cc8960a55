// RAdam against torch.optim.RAdam (reference_optimizers.py), its state through save/load,
// the gradient scaler's algorithm, autocast scopes (bfloat16 on the CPU, what CUDA's leaves
// alone) and channels-last.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <map>

#include <torch/torch.h>

#include "pneumo/core/error.h"
#include "pneumo/core/sections.h"
#include "pneumo/models/model_section.h"
#include "pneumo/models/network.h"
#include "pneumo/models/weights.h"
#include "pneumo/train/mixed_precision.h"
#include "pneumo/train/radam.h"
#include "pneumo_test_paths.h"
#include "python_reference.h"
#include "test_support.h"

using namespace pneumo;

namespace {

std::map<std::string, torch::Tensor> reference() {
  static const auto values = pneumo::testing::python_reference("tests/train/reference_optimizers.py");
  return values;
}

struct Problem {
  torch::Tensor a, b;
  std::unique_ptr<train::RAdam> optimizer;
};

Problem make_problem(const torch::Tensor& a0, const torch::Tensor& b0) {
  Problem p;
  p.a = a0.clone().requires_grad_(true);
  p.b = b0.clone().requires_grad_(true);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{p.a}, std::make_unique<train::RAdamOptions>(
                                                           train::RAdamOptions(0.01).betas({0.8, 0.95}).eps(1e-6)));
  groups.emplace_back(std::vector<torch::Tensor>{p.b},
                      std::make_unique<train::RAdamOptions>(
                          train::RAdamOptions(0.05).betas({0.8, 0.95}).eps(1e-6).weight_decay(0.1)));
  p.optimizer = std::make_unique<train::RAdam>(std::move(groups));
  return p;
}

void take_step(Problem& p, int step, const torch::Tensor& target_a, const torch::Tensor& target_b) {
  {
    torch::NoGradGuard no_grad;
    p.a.mutable_grad() = 2 * (p.a - target_a) + 0.1 * step * torch::sin(p.a);
    p.b.mutable_grad() = 2 * (p.b - target_b) + 0.1 * step * torch::sin(p.b);
  }
  p.optimizer->step();
}

}  // namespace

TEST_CASE("RAdam follows torch.optim.RAdam step by step") {
  auto ref = reference();
  Problem p = make_problem(ref["a0"], ref["b0"]);
  for (int step = 1; step <= 12; ++step) {
    take_step(p, step, ref["target_a"], ref["target_b"]);
    INFO("step " << step);
    CHECK(torch::allclose(p.a, ref["a" + std::to_string(step)], 1e-14, 1e-15));
    CHECK(torch::allclose(p.b, ref["b" + std::to_string(step)], 1e-14, 1e-15));
  }
  // Steps 1..5 are un-adapted (rho_t <= 5 for beta2 = 0.95), later ones rectified: both checked.
}

TEST_CASE("RAdam's state survives save and load: a resumed run takes the same steps") {
  auto ref = reference();
  Problem straight = make_problem(ref["a0"], ref["b0"]);
  for (int step = 1; step <= 8; ++step) take_step(straight, step, ref["target_a"], ref["target_b"]);

  Problem first = make_problem(ref["a0"], ref["b0"]);
  for (int step = 1; step <= 4; ++step) take_step(first, step, ref["target_a"], ref["target_b"]);
  std::ostringstream bytes;
  torch::serialize::OutputArchive out;
  first.optimizer->save(out);
  out.save_to(bytes);

  Problem second = make_problem(first.a.detach(), first.b.detach());
  std::istringstream in(bytes.str());
  torch::serialize::InputArchive archive;
  archive.load_from(in);
  second.optimizer->load(archive);
  CHECK(second.optimizer->param_groups()[1].options().get_lr() == 0.05);
  for (int step = 5; step <= 8; ++step) take_step(second, step, ref["target_a"], ref["target_b"]);
  CHECK(torch::equal(second.a, straight.a));
  CHECK(torch::equal(second.b, straight.b));
}

TEST_CASE("the gradient scaler scales, finds overflow, backs off and grows like PyTorch's") {
  train::GradScalerOptions options;
  options.init_scale = 1024;
  options.growth_interval = 3;
  train::GradScaler scaler(true, options);
  CHECK(scaler.scale(torch::tensor(2.0)).item<double>() == 2048.0);

  torch::Tensor w = torch::zeros({3}, torch::kFloat32).requires_grad_(true);
  w.mutable_grad() = torch::tensor({1024.0f, -2048.0f, 512.0f});
  CHECK(scaler.unscale({w}));
  CHECK(torch::equal(w.grad(), torch::tensor({1.0f, -2.0f, 0.5f})));

  w.mutable_grad() = torch::tensor({1.0f, std::numeric_limits<float>::infinity(), 0.0f});
  CHECK_FALSE(scaler.unscale({w}));
  w.mutable_grad() = torch::tensor({1.0f, std::nanf(""), 0.0f});
  CHECK_FALSE(scaler.unscale({w}));

  scaler.update(false);  // overflow: halve, restart the count
  CHECK(scaler.current_scale() == 512);
  CHECK(scaler.growth_tracker() == 0);
  scaler.update(true);
  scaler.update(true);
  CHECK(scaler.current_scale() == 512);
  scaler.update(true);  // the third clean step in a row doubles it
  CHECK(scaler.current_scale() == 1024);
  CHECK(scaler.growth_tracker() == 0);

  scaler.restore(256, 2);
  CHECK(scaler.current_scale() == 256);
  CHECK(scaler.growth_tracker() == 2);
  CHECK_THROWS_AS(scaler.restore(0, 0), core::CheckpointError);
  CHECK_THROWS_AS(scaler.restore(std::nan(""), 0), core::CheckpointError);
}

TEST_CASE("a disabled scaler and autocast scope change nothing") {
  train::GradScaler scaler(false);
  const torch::Tensor loss = torch::tensor(3.0);
  CHECK(scaler.scale(loss).item<double>() == 3.0);
  torch::Tensor w = torch::zeros({2}).requires_grad_(true);
  w.mutable_grad() = torch::tensor({std::numeric_limits<float>::infinity(), 4.0f});
  CHECK(scaler.unscale({w}));  // disabled: no check, no division
  CHECK(w.grad()[1].item<float>() == 4.0f);
  scaler.update(false);
  CHECK(scaler.current_scale() == 65536);

  // CUDA autocast leaves CPU computations in float32, and a disabled scope does nothing.
  const torch::Tensor x = torch::randn({4, 4});
  train::MixedPrecision cuda_half;
  cuda_half.enabled = true;
  cuda_half.device = c10::DeviceType::CUDA;
  {
    train::AutocastScope autocast(cuda_half);
    CHECK(torch::mm(x, x).scalar_type() == torch::kFloat32);
    {
      train::AutocastScope inner(cuda_half);
    }
    CHECK(torch::mm(x, x).scalar_type() == torch::kFloat32);
    train::AutocastScope off(train::MixedPrecision{});
    CHECK(torch::mm(x, x).scalar_type() == torch::kFloat32);
  }
}

TEST_CASE("bfloat16 autocast on the CPU: matrix products in bfloat16 inside the scope, the state restored after it") {
  const torch::Tensor x = torch::randn({8, 8});
  train::MixedPrecision bf16;
  bf16.enabled = true;
  bf16.device = c10::DeviceType::CPU;
  bf16.dtype = torch::kBFloat16;
  CHECK_FALSE(bf16.needs_loss_scaling());
  CHECK(bf16.str() == "bfloat16 autocast on cpu");
  CHECK(torch::mm(x, x).scalar_type() == torch::kFloat32);
  {
    train::AutocastScope autocast(bf16);
    const torch::Tensor y = torch::mm(x, x);
    CHECK(y.scalar_type() == torch::kBFloat16);
    CHECK(torch::allclose(y.to(torch::kFloat32), torch::mm(x.to(torch::kDouble), x.to(torch::kDouble)).to(torch::kFloat32),
                          2e-2, 5e-2));
    // Reductions stay in float32 (PyTorch's CPU list): a loss is not computed in 8 bits of mantissa.
    CHECK(torch::binary_cross_entropy_with_logits(y, torch::zeros_like(x)).scalar_type() == torch::kFloat32);
    {
      train::AutocastScope inner(bf16);
      CHECK(torch::mm(x, x).scalar_type() == torch::kBFloat16);
    }
    CHECK(torch::mm(x, x).scalar_type() == torch::kBFloat16);  // the outer scope is still open
  }
  CHECK(torch::mm(x, x).scalar_type() == torch::kFloat32);

  train::MixedPrecision cuda_half;
  cuda_half.enabled = true;
  cuda_half.device = c10::DeviceType::CUDA;
  CHECK(cuda_half.needs_loss_scaling());
  CHECK(cuda_half.str() == "float16 autocast on cuda");
  CHECK(train::MixedPrecision{}.str() == "float32");
  train::MixedPrecision other = bf16;
  other.device = c10::DeviceType::Meta;
  CHECK_THROWS_AS(train::AutocastScope(other), core::DeviceError);
}

TEST_CASE("the runtime section's mixed precision on each device") {
  core::RuntimeSection runtime;
  const c10::Device cpu("cpu"), cuda("cuda");
  CHECK_FALSE(train::mixed_precision_for(runtime, cpu).enabled);  // off by default
  runtime.mixed_precision = true;
  CHECK_FALSE(train::mixed_precision_for(runtime, cpu).enabled);  // float16 on the CPU: float32
  const auto half = train::mixed_precision_for(runtime, cuda);
  CHECK((half.enabled && half.dtype == torch::kHalf && half.device == c10::DeviceType::CUDA));
  runtime.mixed_precision_dtype = "bfloat16";
  const auto on_cpu = train::mixed_precision_for(runtime, cpu);
  CHECK((on_cpu.enabled && on_cpu.dtype == torch::kBFloat16 && on_cpu.device == c10::DeviceType::CPU));
  CHECK(train::mixed_precision_for(runtime, cuda).dtype == torch::kBFloat16);
  runtime.mixed_precision = false;
  CHECK_FALSE(train::mixed_precision_for(runtime, cpu).enabled);
}

TEST_CASE("channels-last weights give the same outputs") {
  models::ModelSection section;
  section.name = "unet";
  section.encoder.name = "resnet18";
  section.encoder.in_channels = 1;
  section.decoder_channels = {32, 16, 16, 8, 8};
  torch::manual_seed(1);
  auto net = models::build_model(section);
  net->eval();
  const torch::Tensor x = torch::randn({2, 1, 64, 64});
  torch::NoGradGuard no_grad;
  const torch::Tensor before = net->forward(x).masks;
  models::use_channels_last(*net);
  for (const auto& p : net->parameters())
    if (p.dim() == 4) CHECK(p.is_contiguous(torch::MemoryFormat::ChannelsLast));
  const torch::Tensor after = net->forward(x.contiguous(torch::MemoryFormat::ChannelsLast)).masks;
  CHECK(torch::allclose(before, after, 1e-4, 1e-5));
}
