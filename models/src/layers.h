// Small building blocks shared by the encoders and networks.
#pragma once

#include <torch/torch.h>

namespace pneumo::models {

inline torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1,
                              int64_t padding = 0, bool bias = false) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(bias));
}

inline torch::nn::BatchNorm2d batch_norm(int64_t channels) {
  return torch::nn::BatchNorm2d(torch::nn::BatchNorm2dOptions(channels));
}

}  // namespace pneumo::models

#include "pneumo/core/tensor_shape.h"

namespace pneumo::models {

using core::shape_string;

}  // namespace pneumo::models
