// `pneumo train CONFIG [--set key=value ...] [--overwrite]`: train an experiment into a run folder.
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.h"
#include "pneumo/train/trainer.h"

namespace pneumo::tools {

namespace {

struct TrainCommandOptions {
  std::string file;
  std::vector<std::string> overrides;
  bool overwrite = false;
};

void run_train(const TrainCommandOptions& options) {
  const train::ExperimentConfig config = train::load_experiment(options.file, options.overrides);
  train::TrainOptions train_options;
  train_options.overwrite = options.overwrite;
  const train::TrainSummary s = train::train_experiment(config, train_options);
  fmt::print("run: {}\n", s.run.string());
  fmt::print("epochs: {}{}\n", s.epochs_run, s.stopped_early ? " (stopped early)" : "");
  fmt::print("best {}: {:.4f} at epoch {} (best.ckpt)\n", s.monitor, s.best_value, s.best_epoch);
}

}  // namespace

void setup_train(CLI::App& app) {
  auto options = std::make_shared<TrainCommandOptions>();
  CLI::App* cmd = app.add_subcommand(
      "train", "Train an experiment: run folder with config, log, folds, metrics.csv/jsonl, last.ckpt, best.ckpt");
  cmd->add_option("file", options->file, "experiment YAML file")->required();
  cmd->add_option("--set", options->overrides, "override a value: key.path=value (repeatable)");
  cmd->add_flag("--overwrite", options->overwrite, "replace an existing run folder of the same name");
  cmd->callback([options] { run_train(*options); });
}

}  // namespace pneumo::tools
