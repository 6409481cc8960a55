// The models inference runs: checkpoints, or run folders expanded to the checkpoints they
// offer (best, last, SWA, EMA, the snapshot cycles of ensemble.json, the top-k), or ensembles
// exported as TorchScript by `pneumo export`, each with a weight in the ensemble average.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "pneumo/infer/calibration.h"
#include "pneumo/infer/postprocess.h"
#include "pneumo/train/experiment.h"

namespace pneumo::models {
class Network;
struct ModelOutput;
}
namespace torch::jit {
struct Module;
}

namespace pneumo::infer {

struct ModelSpec {
  std::filesystem::path path;  // a .ckpt file or a run folder
  double weight = 1.0;
};

// Which checkpoints of a run folder join: best, last, swa, ema, snapshots, top.
inline const std::vector<std::string>& run_member_choices() {
  static const std::vector<std::string> choices{"best", "last", "swa", "ema", "snapshots", "top"};
  return choices;
}

struct Member {
  std::filesystem::path checkpoint;
  std::filesystem::path model_path;  // the --model it came from (a checkpoint, run or CV run folder)
  train::ExperimentConfig config;  // from the checkpoint, with the caller's overrides
  std::shared_ptr<models::Network> network;  // eval mode, on the device
  double weight = 1.0;  // a run's members share its weight equally
  bool segmenter = true;
  // A classifier trained on an image-level class table: its logits by class (data.classes).
  // Empty for the pneumothorax-only models (1 logit, or CheXNet's 14 with Pneumothorax at 7).
  std::vector<std::string> classes;

  // A file from `pneumo export` instead of a network (then `network` is null): it takes grey
  // pixel values 0..255 resized to config.data.size and returns probabilities, its own members'
  // normalisation and average inside. Its config holds only the data section the file states.
  std::shared_ptr<torch::jit::Module> script;
  bool script_gate = false;  // its image probability comes from classifiers or auxiliary heads
  std::optional<PostprocessSection> exported_postprocess;  // the thresholds stored in the file
  std::optional<Calibration> exported_calibration;         // the calibration stored in the file, if any
};

// The member's pneumothorax logit [N] from its output: the segmenter's auxiliary head, the
// classifier's logit (models::pneumothorax_logit), or for a class-table classifier its
// `Pneumothorax` class; undefined when it has none.
at::Tensor pneumothorax_logit(const Member& member, const models::ModelOutput& out);

// The checkpoint files `spec` stands for: a file itself, a run folder's `members` checkpoints,
// or for a cross-validation run (pneumo cv) those of each of its folds. Throws UsageError for a
// missing path, an unknown `members` choice, a run folder lacking those checkpoints or a CV run
// whose folds have not all finished training.
std::vector<std::filesystem::path> expand_model(const std::filesystem::path& path, const std::string& members);

// Loads every member strictly (weights must match the network the checkpoint's config builds;
// an exported file must carry pneumo.json). Members with classes must name the same ones in the
// same order (ConfigError otherwise).
// `overrides` (`key=value`) change the checkpoints' configs, e.g. data.size for a converted
// checkpoint. Throws CheckpointError / ConfigError naming the file.
std::vector<Member> load_members(const std::vector<ModelSpec>& specs, const std::string& members,
                                 const std::vector<std::string>& overrides, const c10::Device& device);

// The run folder a checkpoint belongs to (its parent when that holds config.yaml), else empty.
std::filesystem::path run_folder_of(const std::filesystem::path& checkpoint);

// The folder whose postprocess.yaml applies to a --model path: a CV run folder itself, else the
// run folder of the checkpoint or run (empty when neither).
std::filesystem::path postprocess_folder_of(const std::filesystem::path& model_path);

}  // namespace pneumo::infer
