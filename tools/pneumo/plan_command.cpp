// `pneumo plan DATA_OR_CONFIG [--gpu-memory GB] [--out plan.yaml]`: fingerprint a dataset and
// propose an experiment for it (train/plan.h).
#include <algorithm>
#include <fstream>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.h"
#include "pneumo/core/config_schema.h"
#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"
#include "pneumo/core/log.h"
#include "pneumo/core/runtime.h"
#include "pneumo/train/plan.h"

namespace pneumo::tools {

namespace {

namespace fs = std::filesystem;

struct PlanCommandOptions {
  std::string source;
  std::vector<std::string> overrides;
  std::string out = "plan.yaml";
  double memory_gb = 0;
  int64_t max_batch = 32;
  int intensity_images = 200;
  bool overwrite = false;
};

// A top-level CSV whose header names ImageId and EncodedPixels: a SIIM label table.
std::string find_label_table(const fs::path& folder) {
  std::vector<fs::path> found;
  for (const auto& e : fs::directory_iterator(folder)) {
    if (!e.is_regular_file() || e.path().extension() != ".csv") continue;
    std::ifstream in(e.path());
    std::string header;
    std::getline(in, header);
    if (header.find("ImageId") != std::string::npos && header.find("EncodedPixels") != std::string::npos)
      found.push_back(e.path());
  }
  std::sort(found.begin(), found.end());
  if (found.size() > 1)
    throw core::UsageError(fmt::format("{} holds several SIIM label tables ({}, {}); pass an experiment file naming "
                                       "data.labels",
                                       folder.string(), found[0].string(), found[1].string()));
  return found.empty() ? "" : found.front().string();
}

// The experiment for a data folder as `pneumo make-demo` and the SIIM challenge lay it out: a
// label table (ImageId,EncodedPixels) with images under dicom/ or the folder itself, or
// masks/ with images under png/ (or the folder); patients.csv names patients when present.
train::ExperimentConfig experiment_for_folder(const fs::path& folder, const std::vector<std::string>& overrides) {
  core::ConfigNode root = core::ConfigNode::map();
  const std::string labels = find_label_table(folder);
  auto set = [&](const std::string& key, const fs::path& value) {
    core::apply_override(root, fmt::format("{}={}", key, value.string()));
  };
  if (!labels.empty()) {
    set("data.labels", labels);
    set("data.images", fs::is_directory(folder / "dicom") ? folder / "dicom" : folder);
  } else if (fs::is_directory(folder / "masks")) {
    set("data.masks", folder / "masks");
    set("data.images", fs::is_directory(folder / "png") ? folder / "png" : folder);
  } else {
    throw core::UsageError(fmt::format("{}: found no SIIM label table (a .csv with ImageId,EncodedPixels) and no masks/ "
                                       "folder; pass an experiment file whose data section names the labels and images",
                                       folder.string()));
  }
  if (fs::is_regular_file(folder / "patients.csv")) {
    set("data.patients", folder / "patients.csv");
    set("data.group_by", "patient");
  }
  core::apply_override(root, fmt::format("experiment.name={}", folder.filename().empty() ? "plan" : folder.filename().string()));
  for (const std::string& o : overrides) core::apply_override(root, o);
  return core::read_section<train::ExperimentConfig>(root);
}

void run_plan(const PlanCommandOptions& options) {
  const fs::path source(options.source);
  if (!fs::exists(source))
    throw core::UsageError(fmt::format("{}: no such file or folder; expected a data folder or an experiment file",
                                       options.source));
  const fs::path out(options.out);
  if (fs::exists(out) && !options.overwrite)
    throw core::UsageError(fmt::format("{} exists; pass --overwrite to replace it, or --out another file", options.out));
  const train::ExperimentConfig base = fs::is_directory(source) ? experiment_for_folder(source, options.overrides)
                                                                : train::load_experiment(options.source, options.overrides);
  train::PlanOptions plan_options;
  plan_options.trial.budget_bytes = static_cast<int64_t>(options.memory_gb * (1 << 30));
  plan_options.trial.max_batch = options.max_batch;
  plan_options.intensity_images = options.intensity_images;
  plan_options.threads = core::hardware_threads();
  const train::ExperimentPlan plan = train::plan_experiment(base, plan_options);
  const std::string yaml = train::plan_to_yaml(plan, options.source);
  core::write_file_atomic(out, yaml);
  train::load_experiment(out.string(), {});  // the plan must run as it stands
  for (const std::string& line : train::describe_proposals(plan)) fmt::print("{}\n", line);
  core::log::info("wrote {}; run it with: pneumo cv {}", out.string(), out.string());
}

}  // namespace

void setup_plan(CLI::App& app) {
  auto options = std::make_shared<PlanCommandOptions>();
  CLI::App* cmd = app.add_subcommand(
      "plan",
      "Fingerprint a dataset (sizes, bit depths, spacing, intensities, positive share, mask areas, patients) and "
      "propose an experiment for it: input size, normalisation, negative share, folds, and the batch size a measured "
      "training step fits in memory");
  cmd->add_option("source", options->source,
                  "a data folder (a SIIM label table with dicom/, or masks/ with png/) or an experiment file whose "
                  "data section names the data (its model and training keys are kept)")
      ->required();
  cmd->add_option("--set", options->overrides, "override a value of the experiment before planning (repeatable)");
  cmd->add_option("--out", options->out, "the proposed experiment file")->capture_default_str();
  cmd->add_option("--gpu-memory,--memory", options->memory_gb,
                  "memory budget in GB (GiB) for the batch size trial on the experiment's device (default: the "
                  "device's: a GPU's total, the CPU's available memory)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-batch", options->max_batch, "the largest batch size the trial tries")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--intensity-images", options->intensity_images,
                  "images sampled (evenly) for the intensity statistics")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  cmd->add_flag("--overwrite", options->overwrite, "replace an existing --out file");
  cmd->callback([options] { run_plan(*options); });
}

}  // namespace pneumo::tools
