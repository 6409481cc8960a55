// Reading what Python's torch.save writes, without executing anything from the file: a
// restricted unpickler that builds dicts (OrderedDict too), lists, tuples, scalars, strings and
// tensors, and keeps every other object as an opaque placeholder. Both the zip format
// (PyTorch >= 1.6) and the legacy format (CheXNet-era checkpoints) are read.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace pneumo::models {

struct PickleValue;
using PickleRef = std::shared_ptr<PickleValue>;

struct PickleValue {
  enum class Kind { kNone, kBool, kInt, kFloat, kString, kList, kDict, kTensor, kStorage, kGlobal, kOpaque };
  Kind kind = Kind::kNone;
  bool boolean = false;
  int64_t integer = 0;
  double number = 0.0;
  std::string text;                               // string, global name, opaque description
  std::vector<PickleRef> items;                   // list or tuple
  std::vector<std::pair<PickleRef, PickleRef>> entries;  // dict, in insertion order
  torch::Tensor tensor;                           // tensor, or a storage's flat data
};

// Throws CheckpointError naming the file when it is not a torch.save file or is damaged.
PickleRef read_torch_save(const std::filesystem::path& file);

// The bytes of a torch.save zip file holding an OrderedDict of the given (CPU) tensors, as
// Python's `torch.save(state_dict)` writes it; Python reads it back with `torch.load`.
std::string torch_save_bytes(const std::vector<std::pair<std::string, torch::Tensor>>& tensors);

}  // namespace pneumo::models
