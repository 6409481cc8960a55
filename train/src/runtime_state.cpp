#include "runtime_state.h"

#include <mutex>
#include <unordered_set>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "pneumo/core/log.h"
#include "pneumo/train/radam.h"

namespace pneumo::train {

namespace {

std::unique_ptr<torch::optim::OptimizerOptions> optimizer_options(const OptimizerSection& o, double lr) {
  const auto betas = std::make_tuple(o.betas.at(0), o.betas.at(1));
  if (o.name == "adam")
    return std::make_unique<torch::optim::AdamOptions>(torch::optim::AdamOptions(lr).betas(betas).weight_decay(o.weight_decay));
  if (o.name == "adamw")
    return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(lr).betas(betas).weight_decay(o.weight_decay));
  if (o.name == "radam") return std::make_unique<RAdamOptions>(RAdamOptions(lr).betas(betas).weight_decay(o.weight_decay));
  return std::make_unique<torch::optim::SGDOptions>(
      torch::optim::SGDOptions(lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(o.weight_decay));
}

torch::Tensor generator_state(at::Generator generator) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}

void set_generator_state(at::Generator generator, const torch::Tensor& state) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

int64_t visible_gpus() {
  return torch::cuda::is_available() ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
}

at::Generator cuda_generator(int64_t i) {
  return at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(i)));
}

}  // namespace

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerSection& o, models::Network& net) {
  std::unordered_set<const void*> in_encoder;
  for (const torch::Tensor& p : net.encoder_parameters()) in_encoder.insert(p.unsafeGetTensorImpl());
  std::vector<torch::Tensor> encoder, rest;  // in named_parameters order
  for (const auto& p : net.named_parameters())
    (in_encoder.count(p.value().unsafeGetTensorImpl()) ? encoder : rest).push_back(p.value());
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(encoder, optimizer_options(o, o.lr * o.encoder_lr_multiplier));
  groups.emplace_back(rest, optimizer_options(o, o.lr));
  if (o.name == "adam") return std::make_unique<torch::optim::Adam>(groups, torch::optim::AdamOptions(o.lr));
  if (o.name == "adamw") return std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(o.lr));
  if (o.name == "radam") return std::make_unique<RAdam>(groups, RAdamOptions(o.lr));
  return std::make_unique<torch::optim::SGD>(groups, torch::optim::SGDOptions(o.lr));
}

std::string optimizer_bytes(torch::optim::Optimizer& optimizer) {
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  std::string bytes;
  archive.save_to([&bytes](const void* data, size_t size) {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  return bytes;
}

namespace {

// Whether every moment the optimiser holds has its parameter's shape.
bool state_fits(torch::optim::Optimizer& optimizer) {
  const auto fits = [](const torch::Tensor& p, const torch::Tensor& t) { return !t.defined() || t.sizes() == p.sizes(); };
  for (const auto& group : optimizer.param_groups())
    for (const auto& p : group.params()) {
      const auto found = optimizer.state().find(p.unsafeGetTensorImpl());
      if (found == optimizer.state().end()) continue;
      const auto* state = found->second.get();
      if (const auto* s = dynamic_cast<const torch::optim::AdamParamState*>(state)) {
        if (!fits(p, s->exp_avg()) || !fits(p, s->exp_avg_sq())) return false;
      } else if (const auto* s = dynamic_cast<const torch::optim::AdamWParamState*>(state)) {
        if (!fits(p, s->exp_avg()) || !fits(p, s->exp_avg_sq())) return false;
      } else if (const auto* s = dynamic_cast<const torch::optim::SGDParamState*>(state)) {
        if (!fits(p, s->momentum_buffer())) return false;
      } else if (const auto* s = dynamic_cast<const RAdamParamState*>(state)) {
        if (!fits(p, s->exp_avg()) || !fits(p, s->exp_avg_sq())) return false;
      }
    }
  return true;
}

}  // namespace

void restore_optimizer(torch::optim::Optimizer& optimizer, const std::string& bytes) {
  torch::serialize::InputArchive archive;
  archive.load_from(bytes.data(), bytes.size());
  optimizer.load(archive);
  // LibTorch 1.13 keyed optimiser state by the parameters' addresses as text, 2.x by pointer;
  // 2.x reads a 1.13 archive, and its moments can come out paired with other parameters (seen on
  // tests/train/fixtures/c0189b9-run: a shape error at the first step). Refuse such pairs
  // rather than fail at the next step with a shape error.
  if (!state_fits(optimizer)) {
    core::log::warn("the checkpoint's optimiser state (written with LibTorch 1.13) does not map onto this "
                    "LibTorch's parameters; the optimiser's moments start afresh");
    optimizer.state().clear();
  }
}

void capture_random_state(TrainingState& state) {
  state.rng_cpu = generator_state(at::detail::getDefaultCPUGenerator());
  state.rng_cuda.clear();
  for (int64_t i = 0; i < visible_gpus(); ++i) state.rng_cuda.push_back(generator_state(cuda_generator(i)));
}

void restore_random_state(const TrainingState& state) {
  set_generator_state(at::detail::getDefaultCPUGenerator(), state.rng_cpu);
  if (state.rng_cuda.empty()) return;
  const int64_t gpus = visible_gpus();
  const auto saved = static_cast<int64_t>(state.rng_cuda.size());
  if (saved != gpus)
    core::log::warn("the checkpoint holds CUDA random states for {} GPU(s), this machine has {}; GPU random "
                    "draws will not continue exactly", saved, gpus);
  for (int64_t i = 0; i < std::min(gpus, saved); ++i) set_generator_state(cuda_generator(i), state.rng_cuda[i]);
}

}  // namespace pneumo::train
