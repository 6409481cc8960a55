// Mixed precision on CUDA: an autocast scope and a dynamic loss scaler (the algorithm of
// PyTorch's torch.cuda.amp.GradScaler). Both do nothing when disabled, which is how the CPU
// path runs.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace pneumo::train {

// While alive, CUDA operations run under autocast (float16 where it is safe).
class AutocastScope {
 public:
  explicit AutocastScope(bool enabled);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool enabled_;
  bool previous_ = false;
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
