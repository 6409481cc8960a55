// A tensor's shape as text for messages: "2x3x64x64" ("scalar" for zero dimensions).
#pragma once

#include <string>

#include <ATen/core/Tensor.h>

namespace pneumo::core {

inline std::string shape_string(const at::Tensor& t) {
  if (t.dim() == 0) return "scalar";
  std::string out;
  for (int64_t i = 0; i < t.dim(); ++i) out += (i ? "x" : "") + std::to_string(t.size(i));
  return out;
}

}  // namespace pneumo::core
