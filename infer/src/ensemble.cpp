#include "pneumo/infer/ensemble.h"

#include <algorithm>
#include <fstream>
#include <optional>
#include <string_view>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <caffe2/serialize/inline_container.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "pneumo/core/config_node.h"
#include "pneumo/core/config_schema.h"
#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"
#include "pneumo/core/log.h"
#include "pneumo/core/ordered_workers.h"
#include "pneumo/infer/cross_validation.h"
#include "pneumo/models/inference_graph.h"
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

// A TorchScript archive (constants.pkl beside the code), as opposed to a checkpoint, which is a
// torch.save archive.
bool is_torchscript(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  if (in.gcount() != 4 || std::string_view(magic, 4) != std::string_view("PK\x03\x04", 4)) return false;
  try {
    return caffe2::serialize::PyTorchStreamReader(file.string()).hasRecord("constants.pkl");
  } catch (const c10::Error&) {
    return false;  // not a readable archive: reading it as a checkpoint says why
  }
}

// A TorchScript file written by `pneumo export`, with the data settings its pneumo.json states.
Member load_exported(const fs::path& file, const c10::Device& device) {
  torch::jit::ExtraFilesMap extra{{"pneumo.json", ""}};
  Member m;
  m.checkpoint = file;
  try {
    m.script = std::make_shared<torch::jit::Module>(torch::jit::load(file.string(), device, extra));
  } catch (const c10::Error& e) {
    throw core::CheckpointError(fmt::format("{}: not a readable TorchScript file: {}", file.string(),
                                            std::string(e.what_without_backtrace()).substr(0, 300)));
  }
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(extra["pneumo.json"]);
  } catch (const nlohmann::json::exception&) {
    throw core::CheckpointError(fmt::format("{}: a TorchScript file without pneumo.json; expected a file from "
                                            "pneumo export (a torch.save file needs pneumo weights convert)",
                                            file.string()));
  }
  try {
    if (meta.at("format") != "pneumo-torchscript") throw core::CheckpointError("format is not pneumo-torchscript");
    const auto& input = meta.at("input");
    m.config.data.size = input.at("size").get<int>();
    m.config.data.interpolation = input.at("interpolation").get<std::string>();
    m.config.data.window = input.at("dicom_window").get<std::string>();
    m.config.data.channels = 1;
    m.segmenter = false;
    bool classifier = false;
    for (const auto& member : meta.at("members")) {
      const bool segments = member.at("segmenter").get<bool>();
      m.segmenter = m.segmenter || segments;
      classifier = classifier || !segments;
    }
    // Files written before "image_probability" was stored: a classifier makes it a gate for sure.
    m.script_gate = meta.contains("image_probability") ? meta["image_probability"] != "most confident pixel" : classifier;
    const auto& post = meta.at("postprocess");
    PostprocessSection p;
    p.threshold = post.at("threshold").get<double>();
    p.top_threshold = post.at("top_threshold").get<double>();
    p.min_area = post.at("min_area").get<int64_t>();
    p.min_component_area = post.at("min_component_area").get<int64_t>();
    p.classifier_threshold = post.at("classifier_threshold").get<double>();
    m.exported_postprocess = p;
    if (meta.contains("gate")) {  // files written before the gate have none: its defaults apply
      try {
        m.config.gate = core::read_section<data::GateSection>(
            core::parse_yaml(meta["gate"].get<std::string>(), file.string() + " (pneumo.json gate)"), "gate");
      } catch (const core::ConfigError& e) {
        throw core::CheckpointError(fmt::format("pneumo.json: {}", e.what()));
      }
    }
    if (meta.contains("calibration") && !meta["calibration"].is_null()) {
      try {
        m.exported_calibration = calibration_from_json(meta["calibration"].dump());
      } catch (const core::DataError& e) {
        throw core::CheckpointError(fmt::format("pneumo.json: {}", e.what()));
      }
    }
  } catch (const nlohmann::json::exception& e) {
    throw core::CheckpointError(fmt::format("{}: pneumo.json lacks what pneumo export writes: {}", file.string(), e.what()));
  } catch (const core::CheckpointError& e) {
    throw core::CheckpointError(fmt::format("{}: {}", file.string(), e.what()));
  }
  m.script->eval();
  return m;
}

// Each fold's `members` checkpoints, every fold finished.
std::vector<fs::path> cv_checkpoints(const fs::path& top, const std::string& members) {
  const CvManifest manifest = read_cv_manifest(top);
  std::vector<fs::path> out;
  for (const int fold : manifest.folds) {
    if (!read_fold_finished(top, fold))
      throw core::UsageError(fmt::format("{}: fold {} has not finished training; continue it with pneumo cv --resume {}",
                                         top.string(), fold, top.string()));
    for (fs::path& file : expand_model(fold_folder(top, fold), members)) out.push_back(std::move(file));
  }
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
  if (is_cv_folder(path)) return cv_checkpoints(path, members);
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

fs::path postprocess_folder_of(const fs::path& model_path) {
  if (model_path.empty()) return {};
  return is_cv_folder(model_path) ? model_path : run_folder_of(model_path);
}

std::vector<Member> load_members(const std::vector<ModelSpec>& specs, const std::string& members,
                                 const std::vector<std::string>& overrides, const c10::Device& device) {
  if (specs.empty()) throw core::UsageError("no model given; expected --model CHECKPOINT_OR_RUN_FOLDER");
  struct File {
    fs::path model_path;  // as given (--model): a checkpoint, run or cv folder, or export
    fs::path path;        // one member's file
    double weight;
  };
  std::vector<File> files;
  for (const ModelSpec& spec : specs) {
    if (!(spec.weight > 0))
      throw core::UsageError(fmt::format("{}: ensemble weight {} must be > 0", spec.path.string(), spec.weight));
    const std::vector<fs::path> paths = expand_model(spec.path, members);
    for (const fs::path& path : paths) files.push_back({spec.path, path, spec.weight / static_cast<double>(paths.size())});
  }
  // The next checkpoint is read (file, checksum, tensors) on a worker thread while this one
  // builds and folds the member before it: they take about as long as each other.
  core::OrderedWorkers<std::optional<train::Checkpoint>> checkpoints(
      static_cast<int64_t>(files.size()), /*workers=*/1, /*prefetch=*/1,
      [&files](int64_t k) -> std::optional<train::Checkpoint> {
        const fs::path& path = files[static_cast<size_t>(k)].path;
        if (is_torchscript(path)) return std::nullopt;
        return train::read_checkpoint(path);
      });
  std::vector<Member> out;
  for (const File& file_entry : files) {
    const fs::path& file = file_entry.path;
    std::optional<train::Checkpoint> checkpoint = *checkpoints.next();
    if (!checkpoint) {
      Member m = load_exported(file, device);
      m.model_path = file_entry.model_path;
      m.weight = file_entry.weight;
      out.push_back(std::move(m));
      continue;
    }
    Member m;
    m.checkpoint = file;
    m.model_path = file_entry.model_path;
    m.weight = file_entry.weight;
    core::ConfigNode root = core::parse_yaml(checkpoint->config_yaml, file.string() + " (its config)");
    for (const std::string& o : overrides) core::apply_override(root, o);
    m.config = core::read_section<train::ExperimentConfig>(root);
    m.network = models::build_model(m.config.model);
    models::load_weights(*m.network, checkpoint->model, true, file.string());
    checkpoint.reset();  // the weights now live in the network
    m.network->to(device);
    m.network->eval();
    m.segmenter = m.network->is_segmenter();
    if (!m.segmenter) m.classes = m.config.data.classes;
    if (m.config.model.encoder.in_channels != m.config.data.channels)
      throw core::ConfigError(fmt::format("{}: model.encoder.in_channels ({}) differs from data.channels ({}); "
                                          "set data.channels with --set",
                                          file.string(), m.config.model.encoder.in_channels, m.config.data.channels));
    // Inference runs the folded graph (models/inference_graph.h), checked against the network
    // as it was on a probe, after the checks above (a refused member costs no probe); export
    // traces it.
    const models::BatchNormFolding folding = models::fold_batch_norms(*m.network, m.config.model.encoder.in_channels);
    if (folding.applied)
      core::log::debug("{}: BatchNorm folded into {} convolutions ({} kept; probe difference {:.1g})",
                       file.string(), folding.folded, folding.kept, folding.max_difference);
    else
      core::log::debug("{}: BatchNorm not folded: {}", file.string(), folding.why_not);
    out.push_back(std::move(m));
  }
  const Member* with_classes = nullptr;
  for (const Member& m : out) {
    if (m.classes.empty()) continue;
    if (with_classes && with_classes->classes != m.classes)
      throw core::ConfigError(fmt::format("{} predicts the classes ({}) but {} ({}); an ensemble averages one list of "
                                          "classes", with_classes->checkpoint.string(),
                                          fmt::join(with_classes->classes, ", "), m.checkpoint.string(),
                                          fmt::join(m.classes, ", ")));
    with_classes = &m;
  }
  const std::string window = out.front().config.data.window;
  for (const Member& m : out)
    if (m.config.data.window != window)
      throw core::ConfigError(fmt::format("{} reads DICOMs with data.window {} but {} with {}; an ensemble needs one "
                                          "grey mapping",
                                          out.front().checkpoint.string(), window, m.checkpoint.string(), m.config.data.window));
  return out;
}

at::Tensor pneumothorax_logit(const Member& m, const models::ModelOutput& out) {
  if (m.classes.empty()) return models::pneumothorax_logit(out, m.segmenter);
  const auto it = std::find(m.classes.begin(), m.classes.end(), "Pneumothorax");
  if (it == m.classes.end()) return {};
  return out.logits.select(1, it - m.classes.begin());
}

}  // namespace pneumo::infer
