#include "safetensors.h"

#include <cstring>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "pneumo/core/error.h"

namespace pneumo::models {

namespace {

const std::map<std::string, c10::ScalarType>& dtypes() {
  static const std::map<std::string, c10::ScalarType> map = {
      {"F64", c10::kDouble}, {"F32", c10::kFloat}, {"F16", c10::kHalf},  {"BF16", c10::kBFloat16},
      {"I64", c10::kLong},   {"I32", c10::kInt},   {"I16", c10::kShort}, {"I8", c10::kChar},
      {"U8", c10::kByte},    {"BOOL", c10::kBool}};
  return map;
}

uint64_t header_length(const std::string& bytes) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
  return n;
}

}  // namespace

bool looks_like_safetensors(const std::string& bytes) {
  return bytes.size() >= 10 && header_length(bytes) <= bytes.size() - 8 && bytes[8] == '{';
}

std::vector<std::pair<std::string, torch::Tensor>> parse_safetensors(const std::string& bytes) {
  if (!looks_like_safetensors(bytes)) throw core::CheckpointError("not a safetensors file");
  const uint64_t n = header_length(bytes);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  } catch (const nlohmann::json::exception& e) {
    throw core::CheckpointError(fmt::format("safetensors header is not valid JSON: {}", e.what()));
  }
  if (!header.is_object()) throw core::CheckpointError("safetensors header is not a JSON object");
  const size_t data_start = 8 + n;
  const size_t data_size = bytes.size() - data_start;
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    try {
      const auto dtype = dtypes().find(info.at("dtype").get<std::string>());
      if (dtype == dtypes().end())
        throw core::CheckpointError(fmt::format("tensor '{}': unsupported dtype {}", name, info.at("dtype").dump()));
      std::vector<int64_t> shape = info.at("shape").get<std::vector<int64_t>>();
      const auto offsets = info.at("data_offsets").get<std::vector<uint64_t>>();
      int64_t numel = 1;
      for (int64_t d : shape) {
        if (d < 0 || d > (int64_t{1} << 40)) throw core::CheckpointError(fmt::format("tensor '{}': bad shape", name));
        numel *= d;
      }
      const size_t expected = static_cast<size_t>(numel) * c10::elementSize(dtype->second);
      if (offsets.size() != 2 || offsets[0] > offsets[1] || offsets[1] > data_size ||
          offsets[1] - offsets[0] != expected)
        throw core::CheckpointError(fmt::format("tensor '{}': data_offsets do not fit its shape or the file", name));
      torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(dtype->second));
      if (expected > 0) std::memcpy(t.data_ptr(), bytes.data() + data_start + offsets[0], expected);
      out.emplace_back(name, t);
    } catch (const nlohmann::json::exception& e) {
      throw core::CheckpointError(fmt::format("tensor '{}': malformed header entry: {}", name, e.what()));
    }
  }
  // JSON objects are unordered; keep file (offset) order, as the tensors were written.
  return out;
}

std::string safetensors_bytes(const std::vector<std::pair<std::string, torch::Tensor>>& tensors) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  std::string data;
  for (const auto& [name, tensor] : tensors) {
    const torch::Tensor t = tensor.detach().cpu().contiguous();
    std::string dtype;
    for (const auto& [key, type] : dtypes())
      if (type == t.scalar_type()) dtype = key;
    if (dtype.empty())
      throw core::CheckpointError(fmt::format("tensor '{}': {} cannot be stored in safetensors", name,
                                              c10::toString(t.scalar_type())));
    const size_t begin = data.size();
    data.append(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()) * t.element_size());
    header[name] = {{"dtype", dtype}, {"shape", t.sizes().vec()}, {"data_offsets", {begin, data.size()}}};
  }
  std::string json = header.dump();
  while ((8 + json.size()) % 8 != 0) json += ' ';  // the format pads the header with spaces
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((json.size() >> (8 * i)) & 0xff);
  return out + json + data;
}

}  // namespace pneumo::models
