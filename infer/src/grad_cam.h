// The Grad-CAM arithmetic (explain.h), apart from how a network is run.
#pragma once

#include <string>

#include <torch/types.h>

namespace pneumo::infer {

// `features` A [N, K, h, w] and `gradients` dT/dA of the same shape -> relu(sum_k w_k A_k)
// [N, h, w], with w as `method` ("gradcam" or "gradcam++") says.
torch::Tensor class_activation_map(const torch::Tensor& features, const torch::Tensor& gradients,
                                   const std::string& method);

}  // namespace pneumo::infer
