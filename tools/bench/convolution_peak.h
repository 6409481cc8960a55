// The machine's convolution rate, measured in the benchmark's own run: what a network's
// convolutions can reach on this CPU (or GPU), against which bench_infer and bench_train
// report each network's achieved GFLOP/s.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

#include <torch/cuda.h>
#include <torch/torch.h>

namespace pneumo::bench {

// A 3x3 convolution 256 -> 256 channels at 128x128, batch 4, in `dtype`: GFLOP/s (2 per
// multiply-add), the median of 7 runs after 2 warm-ups, on the threads already configured.
inline double convolution_peak_gflops(const c10::Device& device, torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  const auto options = torch::TensorOptions().device(device).dtype(dtype);
  const torch::Tensor x = torch::randn({4, 256, 128, 128}, options), w = torch::randn({256, 256, 3, 3}, options);
  std::vector<double> seconds;
  for (int r = 0; r < 9; ++r) {
    const auto start = std::chrono::steady_clock::now();
    const torch::Tensor y = torch::conv2d(x, w, {}, 1, 1);
    if (device.is_cuda()) torch::cuda::synchronize();
    if (r >= 2) seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(seconds.begin(), seconds.end());
  const double flop = 2.0 * 4 * 256 * 128 * 128 * 256 * 9;
  return flop / seconds[seconds.size() / 2] / 1e9;
}

}  // namespace pneumo::bench
