#include "pneumo/train/mixed_precision.h"

#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include "pneumo/core/error.h"

namespace pneumo::train {

namespace {
// LibTorch 2.4 made autocast per device type; 1.x and early 2.x name the CUDA switch alone.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool cuda_autocast_enabled() { return at::autocast::is_autocast_enabled(at::kCUDA); }
void set_cuda_autocast(bool enabled) { at::autocast::set_autocast_enabled(at::kCUDA, enabled); }
#else
bool cuda_autocast_enabled() { return at::autocast::is_enabled(); }
void set_cuda_autocast(bool enabled) { at::autocast::set_enabled(enabled); }
#endif
}  // namespace

AutocastScope::AutocastScope(bool enabled) : enabled_(enabled) {
  if (!enabled_) return;
  previous_ = cuda_autocast_enabled();
  set_cuda_autocast(true);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!enabled_) return;
  // The float16 copies of the weights are cached while any scope is open.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_cuda_autocast(previous_);
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
