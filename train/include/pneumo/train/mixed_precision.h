// Mixed precision: an autocast scope (PyTorch's torch.autocast) and a dynamic loss scaler (the
// algorithm of torch.cuda.amp.GradScaler). Both do nothing when disabled, which is how float32
// training runs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

namespace pneumo::core {
struct RuntimeSection;
}

namespace pneumo::train {

// What a run computes in: autocast on one device type in float16 or bfloat16, or nothing.
struct MixedPrecision {
  bool enabled = false;
  c10::DeviceType device = c10::DeviceType::CPU;
  at::ScalarType dtype = at::kHalf;

  // float16's narrow range needs loss scaling; bfloat16 has float32's exponent range.
  bool needs_loss_scaling() const { return enabled && dtype == at::kHalf; }
  std::string str() const;  // "float32", "float16 autocast on cuda", ...
};

// The mixed precision a runtime section asks for on `device`: float16 on CUDA; bfloat16 on CUDA
// or the CPU; off otherwise (float16 on the CPU computes in float32, as activate_runtime says).
MixedPrecision mixed_precision_for(const core::RuntimeSection& runtime, const c10::Device& device);

// While alive, operations on the scope's device type run under autocast in its type (matrix
// products and convolutions in 16 bits, reductions and losses in float32, PyTorch's lists);
// the previous autocast state of that device type comes back at the end. Scopes nest.
class AutocastScope {
 public:
  explicit AutocastScope(const MixedPrecision& precision);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  MixedPrecision precision_;
  bool previous_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kHalf;
};

struct GradScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;  // steps without overflow before the scale grows
};

class GradScaler {
 public:
  explicit GradScaler(bool enabled, GradScalerOptions options = {});

  bool enabled() const { return enabled_; }
  // The loss multiplied by the current scale (unchanged when disabled).
  torch::Tensor scale(const torch::Tensor& loss) const;
  // Divides the gradients of `parameters` by the scale, in place. Returns false when any
  // gradient holds Inf or NaN: the optimiser step must then be skipped. One host sync.
  bool unscale(const std::vector<torch::Tensor>& parameters) const;
  // After each optimiser step (taken or skipped): back off on overflow, grow after
  // growth_interval clean steps.
  void update(bool finite);

  double current_scale() const { return scale_; }
  int64_t growth_tracker() const { return growth_tracker_; }
  void restore(double scale, int64_t growth_tracker);

 private:
  bool enabled_;
  GradScalerOptions options_;
  double scale_;
  int64_t growth_tracker_ = 0;
};

}  // namespace pneumo::train
