// The batch size trial of `pneumo plan` (plan.h): real training steps, memory counted.
#include <algorithm>
#include <chrono>
#include <cmath>

#include <fmt/format.h>
#include <torch/torch.h>

#include "forward.h"
#include "memory_meter.h"
#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/core/runtime.h"
#include "pneumo/models/model_section.h"
#include "pneumo/models/network.h"
#include "pneumo/train/plan.h"
#include "runtime_state.h"

namespace pneumo::train {

namespace {

std::string gib(int64_t bytes) { return fmt::format("{:.2f} GiB", static_cast<double>(bytes) / (1 << 30)); }

// The network and optimiser as training holds them, with random weights (the trial needs no
// weights files).
struct TrialModel {
  std::shared_ptr<models::Network> net;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  Forward forward;
  bool segmenter = true;
};

TrialModel build_trial_model(const ExperimentConfig& config, const c10::Device& device) {
  models::ModelSection section = config.model;
  section.weights.clear();
  section.encoder.weights.clear();
  TrialModel m;
  m.net = models::build_model(section);
  m.net->to(device);
  m.forward.channels_last = core::resolve_channels_last(config.runtime.channels_last, device, m.net->is_segmenter());
  if (m.forward.channels_last) models::use_channels_last(*m.net);
  m.forward.precision = mixed_precision_for(config.runtime, device);
  m.segmenter = m.net->is_segmenter();
  m.net->train();
  m.optimizer = make_optimizer(config.train.optimizer, *m.net);
  return m;
}

// A batch of noise images with sparse masks, as the loader would give it.
data::Batch synthetic_batch(const ExperimentConfig& config, int64_t batch, const c10::Device& device) {
  const int64_t s = config.data.size;
  const auto on = torch::TensorOptions().device(device);
  data::Batch b;
  b.images = torch::randn({batch, config.data.channels, s, s}, on);
  b.masks = (torch::rand({batch, 1, s, s}, on) > 0.9).to(torch::kFloat);
  b.labels = torch::ones({batch}, on);
  if (!config.data.table.empty()) b.targets = torch::zeros({batch, config.model.classes}, on);
  for (int64_t i = 0; i < batch; ++i) {
    b.ids.push_back(fmt::format("trial-{}", i));
    b.indices.push_back(i);
  }
  return b;
}

bool is_out_of_memory(const c10::Error& e, const MemoryMeter& meter) {
  return meter.exceeded() || std::string(e.what()).find("out of memory") != std::string::npos;
}

// One training step at `batch`; `fitted` false when memory ran out (the step is abandoned).
TrialStep run_step(TrialModel& m, const ExperimentConfig& config, int64_t batch, const c10::Device& device,
                   MemoryMeter& meter) {
  TrialStep step;
  step.batch = batch;
  meter.clear_exceeded();
  meter.reset_peak();
  const auto start = std::chrono::steady_clock::now();
  try {
    {
      const data::Batch b = synthetic_batch(config, batch, device);
      const torch::Tensor loss = experiment_loss(m.forward(*m.net, b.images), b, m.segmenter, config.train.loss, {});
      loss.backward();
    }
    step.pass_peak_bytes = meter.peak_bytes();
    m.optimizer->step();
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
    step.fitted = true;
  } catch (const c10::Error& e) {
    if (!is_out_of_memory(e, meter))
      throw core::ModelError(fmt::format("batch size trial: a training step of batch {} at {}x{} failed: {}", batch,
                                         config.data.size, config.data.size, e.what_without_backtrace()));
  }
  m.optimizer->zero_grad();
  step.peak_bytes = meter.peak_bytes();
  step.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  core::log::info("batch size trial: batch {} {} ({} peak, {:.2f} s)", batch,
                  step.fitted ? "fits" : "ran out of memory", gib(step.peak_bytes), step.seconds);
  return step;
}

[[noreturn]] void batch_one_does_not_fit(const ExperimentConfig& config, const BatchTrial& trial, const char* what) {
  throw core::DeviceError(fmt::format(
      "even batch 1 does not fit on {}: {} of {} at {}x{} ({} channel(s)) needs more than the {} usable of the {} "
      "budget{}. Lower data.size, choose a smaller encoder, set runtime.mixed_precision, or give more memory "
      "(--gpu-memory GB)",
      trial.device, what, config.model.name, config.data.size, config.data.size, config.data.channels,
      gib(trial.usable_bytes), gib(trial.budget_bytes),
      trial.steps.empty() ? "" : fmt::format(" (it held {} when it stopped)", gib(trial.steps.back().peak_bytes))));
}

int64_t power_of_two_at_most(int64_t n) {
  int64_t p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}

}  // namespace

BatchTrial measure_batch_size(const ExperimentConfig& config, const BatchTrialOptions& options) {
  const c10::Device device = core::activate_runtime(config.runtime, static_cast<uint64_t>(config.experiment.seed));
  BatchTrial trial;
  trial.device = device.str();
  trial.size = config.data.size;
  trial.budget_bytes = options.budget_bytes > 0 ? options.budget_bytes : MemoryMeter::device_memory_bytes(device);
  trial.usable_bytes = static_cast<int64_t>(static_cast<double>(trial.budget_bytes) * options.headroom);
  MemoryMeter meter(device, trial.budget_bytes);
  TrialModel model;
  try {
    model = build_trial_model(config, device);
  } catch (const c10::Error& e) {
    if (!is_out_of_memory(e, meter)) throw;
    batch_one_does_not_fit(config, trial, "the weights");
  }
  auto fits = [&](const TrialStep& s) { return s.fitted && s.peak_bytes <= trial.usable_bytes; };
  // The first step also creates the gradients and the optimiser state; the second is measured.
  for (int i = 0; i < 2; ++i) {
    trial.steps.push_back(run_step(model, config, 1, device, meter));
    if (!fits(trial.steps.back())) batch_one_does_not_fit(config, trial, "one training step");
  }
  const TrialStep one = trial.steps.back();
  trial.batch = 1;
  if (options.max_batch < 2) return trial;
  trial.steps.push_back(run_step(model, config, 2, device, meter));
  const TrialStep two = trial.steps.back();
  if (!fits(two)) return trial;
  trial.batch = 2;
  // The slope from the passes alone; the update's peak does not grow with the batch.
  const int64_t per_image = std::max<int64_t>(two.pass_peak_bytes - one.pass_peak_bytes, 1);
  const int64_t fixed = std::max(one.peak_bytes, one.pass_peak_bytes) - per_image;
  trial.predicted = std::max<int64_t>((trial.usable_bytes - fixed) / per_image, 1);
  for (int64_t b = power_of_two_at_most(std::min(trial.predicted, options.max_batch)); b > 2; b /= 2) {
    trial.steps.push_back(run_step(model, config, b, device, meter));
    if (fits(trial.steps.back())) {
      trial.batch = b;
      break;
    }
  }
  return trial;
}

}  // namespace pneumo::train
