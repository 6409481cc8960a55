// Small building blocks shared by the encoders and networks.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include <torch/torch.h>

namespace pneumo::models {

inline torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1,
                              int64_t padding = 0, bool bias = false) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(bias));
}

// BatchNorm2d as torch.nn.BatchNorm2d (eps 1e-5, momentum 0.1, affine, running statistics;
// the same parameter and buffer names and order), whose training batches can also be
// normalised with the statistics of the whole batch across the processes of a data-parallel
// run (synchronise_batchnorm in pneumo/models/batch_norm.h). Its own class because LibTorch
// does not export the pieces a subclass of torch::nn::BatchNorm2dImpl links against.
// How a synchronised BatchNorm reaches the other processes.
struct SyncContext {
  std::function<void(torch::Tensor&)> sum;  // in place, over all processes
  int rank = 0, world = 1;
};

class BatchNorm2dImpl : public torch::nn::Cloneable<BatchNorm2dImpl> {
 public:
  explicit BatchNorm2dImpl(int64_t channels) : channels(channels) { reset(); }
  void reset() override;
  void reset_running_stats();
  torch::Tensor forward(const torch::Tensor& input);
  void pretty_print(std::ostream& stream) const override;

  int64_t channels;
  double eps = 1e-5;
  std::optional<double> momentum = 0.1;  // nullopt: a cumulative average over all batches
  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  // Empty: this process's statistics only.
  std::shared_ptr<const SyncContext> sum_across_processes;
  // Its transform moved into the convolution before it (fold_batch_norms in
  // pneumo/models/inference_graph.h): the input passes through; training refuses.
  bool folded = false;

 private:
  torch::Tensor synchronised_forward(const torch::Tensor& input, double factor);
};
TORCH_MODULE(BatchNorm2d);

inline BatchNorm2d batch_norm(int64_t channels) { return BatchNorm2d(channels); }

}  // namespace pneumo::models

#include "pneumo/core/tensor_shape.h"

namespace pneumo::models {

using core::shape_string;

}  // namespace pneumo::models
