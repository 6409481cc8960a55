// Training an experiment: data, augmentation, model, optimiser and schedule from the config;
// a run folder with the resolved config, log, folds, per-epoch metrics and checkpoints.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "pneumo/train/checkpoint.h"
#include "pneumo/train/distributed.h"
#include "pneumo/train/experiment.h"

namespace pneumo::train {

struct TrainOptions {
  bool overwrite = false;  // replace an existing run folder of the same name
  // Continue the run in this folder from its last.ckpt (the config must be the run's own
  // config.yaml, as load_run_config gives). Optimiser, schedule, RNG and early-stopping state
  // are restored, so a resumed run ends as an uninterrupted one would.
  std::filesystem::path resume;
  // Create the run exactly here instead of <output_dir>/<name>/<run_name>/ (pneumo cv's
  // fold-K folders). Only rank 0's value counts in a distributed run.
  std::filesystem::path folder;
  int stop_after_epochs = 0;  // end this session after N epochs (0: run to the end); resume later
  // This process's place in a data-parallel run (placement_from_environment); the default is
  // a run of one process. Every process calls train_experiment with the same config.
  ProcessPlacement placement;
};

// The resolved config a run recorded (its config.yaml).
ExperimentConfig load_run_config(const std::filesystem::path& run);

// The checkpoint `train --resume` continues from: the run's last.ckpt, or when that is
// missing or damaged, the newest intact checkpoint with trainer state (best, top-k,
// snapshots), saying so. Throws CheckpointError when there is none.
std::pair<Checkpoint, std::filesystem::path> resume_checkpoint(const std::filesystem::path& run);

struct TrainSummary {
  std::filesystem::path run;
  int epochs_run = 0;
  std::string monitor;
  double best_value = 0.0;
  int best_epoch = 0;  // 1-based
  bool stopped_early = false;
  std::vector<EpochResult> epochs;  // every epoch of the run, resumed ones included
};

// Runs the whole training. Throws the component errors (ConfigError before anything is
// written; DataError naming a file; ModelError when the loss becomes NaN or infinite, which
// leaves the last good checkpoint in place).
TrainSummary train_experiment(const ExperimentConfig& config, const TrainOptions& options = {});

}  // namespace pneumo::train
