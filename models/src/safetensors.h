// The .safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header
// naming each tensor's dtype, shape and byte range, then the raw little-endian data.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace pneumo::models {

bool looks_like_safetensors(const std::string& bytes);
// Throws CheckpointError (without the file name; the caller adds it) for a damaged file.
std::vector<std::pair<std::string, torch::Tensor>> parse_safetensors(const std::string& bytes);
std::string safetensors_bytes(const std::vector<std::pair<std::string, torch::Tensor>>& tensors);

}  // namespace pneumo::models
