// Moving weights between pneumo and Python PyTorch.
//
// Files are what Python's `torch.save` writes (the zip format): a dict of tensors, possibly
// nested under `state_dict` or `model`, keys possibly prefixed with `module.` (DataParallel).
// pneumo writes the same form, which Python reads with `torch.load`.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/module.h>

namespace pneumo::models {

// Named tensors, in file order.
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Reads a weights file: torch.save (zip or legacy), or `.safetensors` by extension. Keys lose
// `module.` prefixes. Throws CheckpointError naming the file
// when it is missing, not a torch.save file, or holds no tensors.
NamedTensors read_weights(const std::filesystem::path& file);

// Writes every parameter and buffer of `module` by name, atomically, as Python's
// `torch.save(model.state_dict())` would (an OrderedDict of tensors in the zip format), or as
// safetensors when the file name ends in `.safetensors`.
void save_weights(const torch::nn::Module& module, const std::filesystem::path& file);
void save_weights(const NamedTensors& tensors, const std::filesystem::path& file);

struct LoadReport {
  std::vector<std::string> loaded;
  std::vector<std::string> missing;     // in the model, not in the weights
  std::vector<std::string> unexpected;  // in the weights, not in the model
  std::vector<std::string> mismatched;  // "name: model AxB, weights CxD"
  std::vector<std::string> summed_rgb;  // 3-channel kernels summed into a 1-channel convolution
  std::string summary() const;          // counts, and the names of everything not loaded
};

// Copies weights into the module's parameters and buffers (BatchNorm statistics included) by
// name. Accepts torchvision's legacy DenseNet names (`norm.1` for `norm1`) and CheXNet's
// (`densenet121.` prefix, `classifier.0.`); a [O, 3, k, k] kernel loads into a [O, 1, k, k]
// convolution summed over RGB. With `strict`, anything missing, unexpected or mis-shaped is a
// CheckpointError listing the names; otherwise what fits is loaded and the report says what
// was skipped.
LoadReport load_weights(torch::nn::Module& module, const NamedTensors& weights, bool strict = true,
                        const std::string& source = "weights");

}  // namespace pneumo::models
