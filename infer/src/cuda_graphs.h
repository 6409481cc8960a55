// CUDA graphs for inference at fixed shapes: the first forward pass of a given input shape runs
// a few times on a side stream (cuDNN picks its algorithms, lazy initialisation happens), then
// is captured into a CUDA graph with a static input tensor; later calls with that shape copy
// the input into the static tensor and replay the whole graph with one launch instead of one
// per kernel. That launch overhead is most of the time of a small batch on a fast GPU.
//
// Built only with a CUDA LibTorch (PNEUMO_WITH_CUDA); elsewhere the constructor throws
// DeviceError (the predictor creates one only on a CUDA device).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

namespace pneumo::infer {

// Replays captured forward passes of one function of one tensor. The function must be a pure
// forward pass: no autograd (call under NoGradGuard), no synchronisation with the host (no
// item(), no shapes that depend on values), eval-mode BatchNorm. Thread-safe: replays are
// serialised, and each call returns fresh copies of the outputs.
class CudaGraphCache {
 public:
  using Forward = std::function<std::vector<at::Tensor>(const at::Tensor&)>;

  explicit CudaGraphCache(Forward forward);
  ~CudaGraphCache();
  CudaGraphCache(const CudaGraphCache&) = delete;
  CudaGraphCache& operator=(const CudaGraphCache&) = delete;

  // forward(input), through the graph captured for input's shape, dtype, device and memory
  // format (capturing it on first use). Outputs may include undefined tensors.
  std::vector<at::Tensor> operator()(const at::Tensor& input);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace pneumo::infer
