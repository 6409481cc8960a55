#include "pneumo/train/mixed_precision.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "pneumo/core/error.h"
#include "pneumo/core/sections.h"

namespace pneumo::train {

namespace {
// LibTorch 2.4 made autocast's switches and types per device type; 1.x and early 2.x have one
// function pair per device type (CUDA's unnamed, CPU's "cpu").
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool autocast_enabled(c10::DeviceType d) { return at::autocast::is_autocast_enabled(d); }
void set_autocast_enabled(c10::DeviceType d, bool on) { at::autocast::set_autocast_enabled(d, on); }
at::ScalarType autocast_dtype(c10::DeviceType d) { return at::autocast::get_autocast_dtype(d); }
void set_autocast_dtype(c10::DeviceType d, at::ScalarType t) { at::autocast::set_autocast_dtype(d, t); }
#else
bool autocast_enabled(c10::DeviceType d) {
  return d == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
void set_autocast_enabled(c10::DeviceType d, bool on) {
  d == c10::DeviceType::CUDA ? at::autocast::set_enabled(on) : at::autocast::set_cpu_enabled(on);
}
at::ScalarType autocast_dtype(c10::DeviceType d) {
  return d == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
void set_autocast_dtype(c10::DeviceType d, at::ScalarType t) {
  d == c10::DeviceType::CUDA ? at::autocast::set_autocast_gpu_dtype(t) : at::autocast::set_autocast_cpu_dtype(t);
}
#endif
}  // namespace

std::string MixedPrecision::str() const {
  if (!enabled) return "float32";
  return std::string(dtype == at::kBFloat16 ? "bfloat16" : "float16") + " autocast on " +
         c10::DeviceTypeName(device, /*lower_case=*/true);
}

MixedPrecision mixed_precision_for(const core::RuntimeSection& runtime, const c10::Device& device) {
  MixedPrecision p;
  p.device = device.type();
  p.dtype = runtime.mixed_precision_dtype == "bfloat16" ? at::kBFloat16 : at::kHalf;
  p.enabled = runtime.mixed_precision && (device.is_cuda() || (device.is_cpu() && p.dtype == at::kBFloat16));
  return p;
}

AutocastScope::AutocastScope(const MixedPrecision& precision) : precision_(precision) {
  if (!precision_.enabled) return;
  if (precision_.device != c10::DeviceType::CUDA && precision_.device != c10::DeviceType::CPU)
    throw core::DeviceError(std::string("mixed precision runs on CUDA or the CPU, not on ") +
                            c10::DeviceTypeName(precision_.device, true));
  previous_enabled_ = autocast_enabled(precision_.device);
  previous_dtype_ = autocast_dtype(precision_.device);
  set_autocast_enabled(precision_.device, true);
  set_autocast_dtype(precision_.device, precision_.dtype);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!precision_.enabled) return;
  // The 16-bit copies of the weights are cached while any scope is open.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast_dtype(precision_.device, previous_dtype_);
  set_autocast_enabled(precision_.device, previous_enabled_);
}

GradScaler::GradScaler(bool enabled, GradScalerOptions options)
    : enabled_(enabled), options_(options), scale_(options.init_scale) {}

torch::Tensor GradScaler::scale(const torch::Tensor& loss) const { return enabled_ ? loss * scale_ : loss; }

bool GradScaler::unscale(const std::vector<torch::Tensor>& parameters) const {
  if (!enabled_) return true;
  torch::NoGradGuard no_grad;
  torch::Tensor found_inf;
  for (const auto& p : parameters) {
    torch::Tensor grad = p.grad();
    if (!grad.defined()) continue;
    const torch::Tensor bad = grad.isfinite().logical_not().any();
    found_inf = found_inf.defined() ? found_inf.logical_or(bad) : bad;
    grad.mul_(1.0 / scale_);
  }
  return !found_inf.defined() || !found_inf.item<bool>();
}

void GradScaler::update(bool finite) {
  if (!enabled_) return;
  if (!finite) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
  } else if (++growth_tracker_ >= options_.growth_interval) {
    scale_ *= options_.growth_factor;
    growth_tracker_ = 0;
  }
}

void GradScaler::restore(double scale, int64_t growth_tracker) {
  if (!(scale > 0) || growth_tracker < 0)
    throw core::CheckpointError("the checkpoint's gradient-scaler state is invalid (scale " + std::to_string(scale) +
                                ", growth tracker " + std::to_string(growth_tracker) + ")");
  scale_ = scale;
  growth_tracker_ = growth_tracker;
}

}  // namespace pneumo::train
