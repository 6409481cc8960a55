#include "pneumo/infer/ensemble.h"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "pneumo/core/config_node.h"
#include "pneumo/core/config_schema.h"
#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"
#include "pneumo/models/network.h"
#include "pneumo/models/weights.h"
#include "pneumo/train/checkpoint.h"

namespace pneumo::infer {

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> snapshot_checkpoints(const fs::path& run) {
  const fs::path manifest = run / "ensemble.json";
  if (!fs::exists(manifest))
    throw core::UsageError(fmt::format("{}: no ensemble.json; this run has no snapshot cycles "
                                       "(train.schedule.name: cosine_restarts makes them)", run.string()));
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(core::read_text_file(manifest));
  } catch (const nlohmann::json::exception& e) {
    throw core::DataError(fmt::format("{}: not valid JSON: {}", manifest.string(), e.what()));
  }
  std::vector<fs::path> out;
  if (json.contains("snapshots") && json["snapshots"].is_array())
    for (const auto& s : json["snapshots"])
      if (s.contains("checkpoint") && s["checkpoint"].is_string())
        out.push_back(run / s["checkpoint"].get<std::string>());
  if (out.empty()) throw core::DataError(fmt::format("{}: lists no snapshot checkpoints", manifest.string()));
  return out;
}

}  // namespace

std::vector<fs::path> expand_model(const fs::path& path, const std::string& members) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return {path};
  if (!fs::is_directory(path, ec))
    throw core::UsageError(fmt::format("{}: no such checkpoint or run folder", path.string()));
  const auto& choices = run_member_choices();
  if (std::find(choices.begin(), choices.end(), members) == choices.end())
    throw core::UsageError(fmt::format("--members {}: expected one of {}", members, fmt::join(choices, ", ")));
  std::vector<fs::path> out;
  if (members == "snapshots") {
    out = snapshot_checkpoints(path);
  } else if (members == "top") {
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("top-", 0) == 0 && entry.path().extension() == ".ckpt") out.push_back(entry.path());
    }
    std::sort(out.begin(), out.end());
    if (out.empty())
      throw core::UsageError(fmt::format("{}: no top-NNN.ckpt files (train.keep_top makes them)", path.string()));
  } else {
    out.push_back(path / (members + ".ckpt"));
  }
  for (const fs::path& f : out)
    if (!fs::exists(f)) throw core::UsageError(fmt::format("{}: missing (asked for the run's {} checkpoint)", f.string(), members));
  return out;
}

fs::path run_folder_of(const fs::path& checkpoint) {
  const fs::path folder = fs::is_directory(checkpoint) ? checkpoint : checkpoint.parent_path();
  return fs::exists(folder / "config.yaml") ? folder : fs::path();
}

std::vector<Member> load_members(const std::vector<ModelSpec>& specs, const std::string& members,
                                 const std::vector<std::string>& overrides, const c10::Device& device) {
  if (specs.empty()) throw core::UsageError("no model given; expected --model CHECKPOINT_OR_RUN_FOLDER");
  std::vector<Member> out;
  for (const ModelSpec& spec : specs) {
    if (!(spec.weight > 0))
      throw core::UsageError(fmt::format("{}: ensemble weight {} must be > 0", spec.path.string(), spec.weight));
    const std::vector<fs::path> files = expand_model(spec.path, members);
    for (const fs::path& file : files) {
      const train::Checkpoint checkpoint = train::read_checkpoint(file);
      Member m;
      m.checkpoint = file;
      m.weight = spec.weight / static_cast<double>(files.size());
      core::ConfigNode root = core::parse_yaml(checkpoint.config_yaml, file.string() + " (its config)");
      for (const std::string& o : overrides) core::apply_override(root, o);
      m.config = core::read_section<train::ExperimentConfig>(root);
      m.network = models::build_model(m.config.model);
      models::load_weights(*m.network, checkpoint.model, true, file.string());
      m.network->to(device);
      m.network->eval();
      m.segmenter = m.network->is_segmenter();
      if (m.config.model.encoder.in_channels != m.config.data.channels)
        throw core::ConfigError(fmt::format("{}: model.encoder.in_channels ({}) differs from data.channels ({}); "
                                            "set data.channels with --set",
                                            file.string(), m.config.model.encoder.in_channels, m.config.data.channels));
      out.push_back(std::move(m));
    }
  }
  const std::string window = out.front().config.data.window;
  for (const Member& m : out)
    if (m.config.data.window != window)
      throw core::ConfigError(fmt::format("{} reads DICOMs with data.window {} but {} with {}; an ensemble needs one "
                                          "grey mapping",
                                          out.front().checkpoint.string(), window, m.checkpoint.string(), m.config.data.window));
  return out;
}

}  // namespace pneumo::infer
