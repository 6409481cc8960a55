// The file format of Python's torch.save, both ways.
//
// Reading never executes anything from the file: a restricted unpickler builds dicts
// (OrderedDict too), lists, tuples, scalars, strings and tensors, and keeps every other object
// as an opaque placeholder. Both the zip format (PyTorch >= 1.6) and the legacy format
// (CheXNet-era checkpoints) are read. Writing produces the zip format from the same value tree
// (dicts with string keys, lists, numbers, strings, tensors), which Python reads with
// torch.load; weight files and pneumo's checkpoints are written this way.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/types.h>

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

// Value constructors for building a tree to write.
PickleRef pickle_none();
PickleRef pickle_bool(bool value);
PickleRef pickle_int(int64_t value);
PickleRef pickle_float(double value);
PickleRef pickle_string(std::string value);
PickleRef pickle_tensor(torch::Tensor value);
PickleRef pickle_list(std::vector<PickleRef> items);
// A dict; written as collections.OrderedDict, as a state_dict is.
PickleRef pickle_dict(std::vector<std::pair<std::string, PickleRef>> entries);

// Looks up a string key of a dict value; null when absent or not a dict.
PickleRef pickle_get(const PickleRef& dict, const std::string& key);

// CRC-32 of a value tree: kinds, numbers, strings, and each tensor's dtype, shape and bytes,
// in order; the top-level dict's entry whose key is `skip_key` is left out. Used for the
// checksum that detects damaged checkpoints.
uint32_t pickle_checksum(const PickleRef& value, const std::string& skip_key = "");

// The bytes of a torch.save zip file holding `root`. Tensors are written from CPU copies.
std::string torch_save_bytes(const PickleRef& root);

// An OrderedDict of the given tensors, as Python's `torch.save(state_dict)` writes it.
std::string torch_save_bytes(const std::vector<std::pair<std::string, torch::Tensor>>& tensors);

}  // namespace pneumo::models
