// `pneumo cv CONFIG [--folds 0,1,2] [--set key=value ...] [--members best] [--tta] [--overwrite]
// [--parallel-folds N]`
// and `pneumo cv --resume RUN`: k-fold cross-validation as one command. Trains every fold into
// RUN/fold-K/, predicts each fold's validation images with its own model (out-of-fold), tunes
// the post-processing on all OOF predictions together and writes the fold ensemble's manifest
// and the report (infer/include/pneumo/infer/cross_validation.h describes the folder).
#include <algorithm>
#include <memory>
#include <set>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/cuda.h>

#include "commands.h"
#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"
#include "pneumo/core/log.h"
#include "pneumo/core/run_dir.h"
#include "pneumo/infer/calibrate.h"
#include "pneumo/infer/cross_validation.h"
#include "pneumo/infer/ensemble.h"
#include "pneumo/core/runtime.h"
#include "pneumo/train/launcher.h"
#include "pneumo/train/trainer.h"

namespace pneumo::tools {

namespace {

namespace fs = std::filesystem;

void calibrate_out_of_fold(const fs::path& top);  // below

struct CvCommandOptions {
  std::string file;
  std::vector<std::string> overrides;
  std::string folds;
  std::string members = "best";
  bool tta = false;
  bool overwrite = false;
  std::string resume;
  int parallel_folds = 1;
  // A process started by --parallel-folds: these folds of --resume RUN, on this device.
  std::string worker_folds;
  std::string worker_device;
  int worker_threads = 0;
  const CLI::App* command = nullptr;  // to tell which options were given
};

std::vector<int> parse_folds(const std::string& text, int folds) {
  std::vector<int> out;
  if (text.empty()) {
    for (int k = 0; k < folds; ++k) out.push_back(k);
    return out;
  }
  std::set<int> seen;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, ',')) {
    int k = -1;
    size_t used = 0;
    try {
      k = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || k < 0 || k >= folds)
      throw core::UsageError(fmt::format("--folds {}: '{}' is not a fold of 0..{} (data.folds is {})", text, item,
                                         folds - 1, folds));
    if (!seen.insert(k).second) throw core::UsageError(fmt::format("--folds {}: fold {} given twice", text, k));
    out.push_back(k);
  }
  if (out.empty()) throw core::UsageError("--folds: expected a comma-separated list such as 0,1,2");
  return out;
}

// The experiment and manifest of a new CV run, its folder created and both recorded in it.
fs::path start_cv_run(const CvCommandOptions& o, const train::ExperimentConfig& config, infer::CvManifest& manifest) {
  const core::ExperimentSection& e = config.experiment;
  const core::RunDirectory top = core::RunDirectory::create(e.output_dir, e.name, e.run_name, o.overwrite);
  core::write_file_atomic(top.file("experiment.yaml"), train::experiment_to_yaml(config));
  infer::write_cv_manifest(top.path(), manifest);
  return top.path();
}

// Trains fold K (or continues it), unless it finished before.
void train_fold(const fs::path& top, int fold, const train::ExperimentConfig& experiment,
                const train::ProcessPlacement& placement) {
  const bool known = !top.empty();  // false on the other processes of a new distributed run: nothing to find yet
  if (const auto done = known ? infer::read_fold_finished(top, fold) : std::nullopt) {
    core::log::info("fold {}: finished before ({} epochs, best {} {:.4f} at epoch {}); kept as it is", fold, done->epochs,
                    done->monitor, done->best_value, done->best_epoch);
    return;
  }
  const fs::path folder = infer::fold_folder(top, fold);
  train::TrainOptions options;
  options.placement = placement;
  train::ExperimentConfig config = experiment;
  config.data.fold = fold;
  bool resumable = false;
  if (known && fs::exists(folder / "config.yaml")) {
    try {
      train::resume_checkpoint(folder);
      resumable = true;
    } catch (const core::CheckpointError&) {
      core::log::info("fold {}: interrupted before its first checkpoint; training it from the start", fold);
    }
  }
  if (resumable) {
    options.resume = folder;
    config = train::load_run_config(folder);
  } else {
    options.folder = folder;
    options.overwrite = true;  // a fold folder without a checkpoint holds nothing to keep
  }
  core::log::info("fold {}: {}", fold, resumable ? "continuing the interrupted training" : "training");
  const train::TrainSummary s = train::train_experiment(config, options);
  if (placement.rank != 0) return;
  infer::write_fold_finished(top, fold, {s.epochs_run, s.monitor, s.best_value, s.best_epoch, s.stopped_early});
  core::open_log_file(top / "log.txt");  // the fold's run wrote to its own log
}

// Every fold must have trained on the same split (the folds are drawn from the data and the
// seed; a data set changed between sessions would break the OOF guarantee).
void check_same_folds(const fs::path& top, const std::vector<int>& folds) {
  const fs::path first = infer::fold_folder(top, folds.front()) / "folds.csv";
  const std::string expected = core::read_text_file(first);
  for (const int fold : folds) {
    const fs::path file = infer::fold_folder(top, fold) / "folds.csv";
    if (core::read_text_file(file) != expected)
      throw core::DataError(fmt::format("{} differs from {}: the folds trained on different splits (did the data "
                                        "change between sessions?); out-of-fold predictions need one split",
                                        file.string(), first.string()));
  }
}

// --parallel-folds N: the unfinished folds dealt to N processes (fold i to process i mod N), each
// a `pneumo cv` fold worker on its own device (a GPU each; on the CPU an equal share of the
// cores), run side by side; each worker's output goes to RUN/workers/worker-I.log.
void train_folds_side_by_side(const fs::path& top, const std::vector<int>& folds, const train::ExperimentConfig& config,
                              int parallel) {
  std::vector<int> pending;
  for (const int fold : folds)
    if (!infer::read_fold_finished(top, fold)) pending.push_back(fold);
  if (pending.empty()) return;
  const c10::Device device = core::resolve_device(core::parse_device(config.runtime.device));
  const int lanes = std::min<int>(parallel, static_cast<int>(pending.size()));
  int threads = config.runtime.threads;
  if (device.is_cuda()) {
    const int gpus = static_cast<int>(torch::cuda::device_count());
    if (parallel > gpus)
      throw core::UsageError(fmt::format("--parallel-folds {}: one GPU per fold, and {} GPU(s) are visible", parallel, gpus));
  } else if (threads == 0) {
    threads = std::max(1, core::hardware_threads() / lanes);
  }
  fs::create_directories(top / "workers");
  std::vector<train::ProcessJob> jobs;
  for (int lane = 0; lane < lanes; ++lane) {
    std::vector<std::string> mine;
    for (size_t i = static_cast<size_t>(lane); i < pending.size(); i += static_cast<size_t>(lanes))
      mine.push_back(std::to_string(pending[i]));
    const std::string where = device.is_cuda() ? fmt::format("cuda:{}", lane) : std::string("cpu");
    const fs::path log = top / "workers" / fmt::format("worker-{}.log", lane);
    core::log::info("fold worker {}: fold(s) {} on {}{}; output in {}", lane, fmt::join(mine, ","), where,
                    device.is_cuda() ? "" : fmt::format(" ({} thread(s))", threads), log.string());
    jobs.push_back({fmt::format("fold worker {} (folds {}; output in {})", lane, fmt::join(mine, ","), log.string()),
                    {"cv", "--resume", top.string(), "--fold-worker", fmt::format("{}", fmt::join(mine, ",")),
                     "--worker-device", where, "--worker-threads", std::to_string(threads)},
                    {},
                    log.string()});
  }
  const train::ProcessJobsResult result = train::run_process_jobs(jobs, lanes, 30.0);
  if (result.worst_exit_code != 0) {
    core::log::error("cross-validation stopped: {}; the finished folds are kept, and pneumo cv --resume {} continues",
                     result.failed.empty() ? std::string("interrupted") : fmt::format("{} failed", result.failed.front()),
                     top.string());
    throw ExitCode{result.worst_exit_code};
  }
}

// The fold worker's part: its folds of the run, trained in turn on its device.
void run_fold_worker(const CvCommandOptions& o) {
  const fs::path top = o.resume;
  infer::read_cv_manifest(top);  // a cross-validation folder
  train::ExperimentConfig config = train::load_experiment((top / "experiment.yaml").string(), {});
  config.runtime.device = o.worker_device;
  config.runtime.threads = o.worker_threads;
  core::open_log_file(top / "log.txt");
  for (const int fold : parse_folds(o.worker_folds, config.data.folds)) train_fold(top, fold, config, {});
}

void run_cv(const CvCommandOptions& o) {
  if (!o.worker_folds.empty()) return run_fold_worker(o);
  if (o.file.empty() == o.resume.empty()) throw core::UsageError("give either an experiment file or --resume RUN_DIR");
  if (!o.resume.empty())
    for (const char* fixed : {"--set", "--folds", "--members", "--tta", "--overwrite"})
      if (o.command->count(fixed) > 0)
        throw core::UsageError(fmt::format("{} cannot change a cross-validation run being resumed; it continues as "
                                           "its ensemble.json and experiment.yaml say", fixed));
  const train::ProcessPlacement placement = train::placement_from_environment();
  fs::path top;
  train::ExperimentConfig config;
  infer::CvManifest manifest;
  if (o.resume.empty()) {
    config = train::load_experiment(o.file, o.overrides);
    manifest.folds = parse_folds(o.folds, config.data.folds);
    manifest.members = o.members;
    manifest.hflip = o.tta;
  } else {
    top = o.resume;
    manifest = infer::read_cv_manifest(top);
    config = train::load_experiment((top / "experiment.yaml").string(), {});
  }
  if (!config.data.table.empty())
    throw core::UsageError("pneumo cv needs mask labels (data.labels or data.masks) for its out-of-fold Dice; an "
                           "image-level class table trains fold by fold with pneumo train --set data.fold=K");
  const auto& choices = infer::run_member_choices();
  if (std::find(choices.begin(), choices.end(), manifest.members) == choices.end())
    throw core::UsageError(fmt::format("--members {}: expected one of {}", manifest.members, fmt::join(choices, ", ")));
  if (placement.rank == 0) {
    if (top.empty()) top = start_cv_run(o, config, manifest);
    core::open_log_file(top / "log.txt");
    core::log::info("cross-validation run {}: folds {}", top.string(), fmt::join(manifest.folds, ","));
  }
  if (o.parallel_folds > 1) {
    if (placement.distributed())
      throw core::UsageError("--parallel-folds runs each fold in a process of its own; under pneumo launch every fold "
                             "already trains data-parallel (use one or the other)");
    train_folds_side_by_side(top, manifest.folds, config, o.parallel_folds);
  }
  for (const int fold : manifest.folds) train_fold(top, fold, config, placement);
  if (placement.rank != 0) return;  // rank 0 predicts, tunes and reports

  check_same_folds(top, manifest.folds);
  infer::OofOptions oof;
  oof.device = config.runtime.device;
  for (const int fold : manifest.folds) {
    if (infer::has_out_of_fold(top, fold)) continue;
    const int64_t images = infer::predict_out_of_fold(top, fold, manifest, oof);
    core::log::info("fold {}: {} out-of-fold predictions", fold, images);
  }
  infer::PostprocessSection start;
  start.threshold = start.top_threshold = start.classifier_threshold = config.train.threshold;
  const infer::CvReport report = infer::tune_out_of_fold(top, manifest, start);
  fmt::print("{}", infer::write_cv_report(top, report));
  calibrate_out_of_fold(top);
  fmt::print("\nrun: {}\n", top.string());
}

// Temperature scaling fitted on the out-of-fold scores (each image scored by the fold that did
// not train on it), stored as the folder's calibration.yaml; skipped with the reason when the
// out-of-fold images lack a positive or a negative.
void calibrate_out_of_fold(const fs::path& top) {
  infer::CalibrateOptions options;
  options.run.models = {{top, 1.0}};
  try {
    const infer::CalibrateResult r = infer::calibrate(options);
    fmt::print("\ncalibration ({} out-of-fold images): {}; ECE {:.4f} -> {:.4f}, Brier {:.4f} -> {:.4f}; wrote {}\n",
               r.calibration.images, r.calibration.describe(), r.before.ece, r.after.ece, r.before.brier, r.after.brier,
               r.written.string());
    if (const std::string caveat = infer::calibration_caveat(r); !caveat.empty()) fmt::print("({})\n", caveat);
  } catch (const core::DataError& e) {
    core::log::warn("no calibration.yaml: {}", e.what());
  }
}

}  // namespace

void setup_cv(CLI::App& app) {
  auto options = std::make_shared<CvCommandOptions>();
  CLI::App* cmd = app.add_subcommand(
      "cv", "Cross-validate an experiment: train every fold into RUN/fold-K, predict each fold's held-out images with "
            "its own model, tune the post-processing on them, write ensemble.json, postprocess.yaml, cv.md, cv.json");
  options->command = cmd;
  cmd->add_option("file", options->file, "experiment YAML file");
  cmd->add_option("--resume", options->resume,
                  "continue this CV run: finished folds are kept, the interrupted one resumes, the rest train");
  cmd->add_option("--folds", options->folds, "the folds to train, e.g. 0,1,2 (default: all of data.folds)");
  cmd->add_option("--members", options->members, "which checkpoints of each fold join the ensemble and predict its "
                                                 "out-of-fold images: best, last, swa, ema, snapshots, top");
  cmd->add_flag("--tta", options->tta, "out-of-fold predictions averaged with the mirrored image");
  cmd->add_option("--set", options->overrides, "override a value: key.path=value (repeatable)");
  cmd->add_flag("--overwrite", options->overwrite, "replace an existing run folder of the same name");
  cmd->add_option("--parallel-folds", options->parallel_folds,
                  "train N folds side by side, each in a process of its own: one GPU each (cuda:0..N-1), or on the "
                  "CPU an equal share of the cores; output in RUN/workers/")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--fold-worker", options->worker_folds)->group("");  // started by --parallel-folds
  cmd->add_option("--worker-device", options->worker_device)->group("");
  cmd->add_option("--worker-threads", options->worker_threads)->group("");
  cmd->callback([options] { run_cv(*options); });
}

}  // namespace pneumo::tools
