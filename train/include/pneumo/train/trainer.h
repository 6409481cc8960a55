// Training an experiment: data, augmentation, model, optimiser and schedule from the config;
// a run folder with the resolved config, log, folds, per-epoch metrics and checkpoints.
#pragma once

#include <filesystem>
#include <string>

#include "pneumo/train/experiment.h"

namespace pneumo::train {

struct TrainOptions {
  bool overwrite = false;  // replace an existing run folder of the same name
};

struct TrainSummary {
  std::filesystem::path run;
  int epochs_run = 0;
  std::string monitor;
  double best_value = 0.0;
  int best_epoch = 0;  // 1-based
  bool stopped_early = false;
};

// Runs the whole training. Throws the component errors (ConfigError before anything is
// written; DataError naming a file; ModelError when the loss becomes NaN or infinite, which
// leaves the last good checkpoint in place).
TrainSummary train_experiment(const ExperimentConfig& config, const TrainOptions& options = {});

}  // namespace pneumo::train
