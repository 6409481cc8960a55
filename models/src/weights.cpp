#include "pneumo/models/weights.h"

#include <algorithm>
#include <map>
#include <regex>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "layers.h"
#include "safetensors.h"
#include "pneumo/models/torch_save.h"
#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"

namespace pneumo::models {

namespace fs = std::filesystem;

namespace {

std::string strip_module_prefix(std::string key) {
  while (key.rfind("module.", 0) == 0) key.erase(0, 7);
  return key;
}

void collect(const PickleValue& dict, NamedTensors& out) {
  for (const auto& [key, value] : dict.entries)
    if (key->kind == PickleValue::Kind::kString && value->kind == PickleValue::Kind::kTensor)
      out.emplace_back(strip_module_prefix(key->text), value->tensor.contiguous());
}

// The names a weight may have in pneumo, most likely first.
std::vector<std::string> candidate_names(const std::string& key) {
  std::vector<std::string> names = {key};
  static const std::regex legacy_dense(
      R"(^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$)");
  std::smatch m;
  std::string k = key;
  if (k.rfind("densenet121.", 0) == 0) {  // CheXNet wraps torchvision's model
    k.erase(0, 12);
    names.push_back(k);
  }
  if (std::regex_match(k, m, legacy_dense)) names.push_back(m[1].str() + m[2].str());
  if (k.rfind("classifier.0.", 0) == 0) names.push_back("classifier." + k.substr(13));
  return names;
}

}  // namespace

NamedTensors read_weights(const fs::path& file) {
  NamedTensors out;
  if (file.extension() == ".safetensors") {
    std::error_code ec;
    if (!fs::is_regular_file(file, ec))
      throw core::CheckpointError(fmt::format("{}: weights file not found", file.string()));
    try {
      for (auto& [key, tensor] : parse_safetensors(core::read_text_file(file)))
        out.emplace_back(strip_module_prefix(key), tensor);
    } catch (const core::CheckpointError& e) {
      throw core::CheckpointError(fmt::format("{}: {}", file.string(), e.what()));
    }
    if (out.empty()) throw core::CheckpointError(fmt::format("{}: holds no tensors", file.string()));
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    return out;
  }
  const PickleRef root = read_torch_save(file);
  if (root->kind == PickleValue::Kind::kDict) {
    // Training scripts nest the weights beside epochs and optimiser state.
    for (const char* nested : {"state_dict", "model_state_dict", "model", "net"}) {
      for (const auto& [key, value] : root->entries)
        if (key->kind == PickleValue::Kind::kString && key->text == nested &&
            value->kind == PickleValue::Kind::kDict)
          collect(*value, out);
      if (!out.empty()) break;
    }
    if (out.empty()) collect(*root, out);
  }
  if (out.empty())
    throw core::CheckpointError(fmt::format("{}: holds no named tensors", file.string()));
  return out;
}

void save_weights(const torch::nn::Module& module, const fs::path& file) {
  NamedTensors tensors;
  for (const auto& p : module.named_parameters()) tensors.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers()) tensors.emplace_back(b.key(), b.value());
  save_weights(tensors, file);
}

void save_weights(const NamedTensors& tensors, const fs::path& file) {
  core::write_file_atomic(file, file.extension() == ".safetensors" ? safetensors_bytes(tensors)
                                                                     : torch_save_bytes(tensors));
}

std::string LoadReport::summary() const {
  std::string s = fmt::format("{} tensors loaded", loaded.size());
  if (!summed_rgb.empty()) s += fmt::format("; RGB kernels summed for 1 channel: {}", fmt::join(summed_rgb, ", "));
  if (!missing.empty()) s += fmt::format("; missing from the weights ({}): {}", missing.size(), fmt::join(missing, ", "));
  if (!unexpected.empty())
    s += fmt::format("; not in the model ({}): {}", unexpected.size(), fmt::join(unexpected, ", "));
  if (!mismatched.empty())
    s += fmt::format("; shapes differ ({}): {}", mismatched.size(), fmt::join(mismatched, ", "));
  return s;
}

LoadReport load_weights(torch::nn::Module& module, const NamedTensors& weights, bool strict,
                        const std::string& source) {
  std::map<std::string, torch::Tensor> targets;
  for (const auto& p : module.named_parameters()) targets.emplace(p.key(), p.value());
  for (const auto& b : module.named_buffers()) targets.emplace(b.key(), b.value());

  LoadReport report;
  std::map<std::string, std::pair<std::string, torch::Tensor>> matched;  // target -> (source name, tensor)
  for (const auto& [key, tensor] : weights) {
    bool found = false;
    for (const std::string& name : candidate_names(key)) {
      if (targets.count(name) == 0) continue;
      matched[name] = {key, tensor};
      found = true;
      break;
    }
    if (!found) report.unexpected.push_back(key);
  }
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;
  for (auto& [name, target] : targets) {
    auto it = matched.find(name);
    if (it == matched.end()) {
      // Checkpoints older than PyTorch 0.4.1 have no BatchNorm step counters; PyTorch itself
      // accepts them without one, and so does pneumo (the counter stays as it is).
      const std::string counter = "num_batches_tracked";
      if (name.size() < counter.size() || name.compare(name.size() - counter.size(), counter.size(), counter) != 0)
        report.missing.push_back(name);
      continue;
    }
    torch::Tensor value = it->second.second;
    if (target.dim() == 4 && value.dim() == 4 && target.size(1) == 1 && value.size(1) == 3 &&
        target.size(0) == value.size(0) && target.size(2) == value.size(2) && target.size(3) == value.size(3)) {
      value = value.sum(1, true);
      report.summed_rgb.push_back(name);
    }
    if (value.sizes() != target.sizes()) {
      report.mismatched.push_back(fmt::format("{}: model {}, {} {}", name, shape_string(target), source,
                                              shape_string(value)));
      continue;
    }
    copies.emplace_back(target, value);
    report.loaded.push_back(name);
  }
  if (strict && (!report.missing.empty() || !report.unexpected.empty() || !report.mismatched.empty()))
    throw core::CheckpointError(fmt::format("{} do not fit the model: {}", source, report.summary()));
  torch::NoGradGuard no_grad;
  for (auto& [target, value] : copies) target.copy_(value.to(target.dtype()));
  return report;
}

}  // namespace pneumo::models
