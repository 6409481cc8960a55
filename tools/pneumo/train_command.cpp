// `pneumo train CONFIG [--set key=value ...] [--overwrite] [--stop-after N]` and
// `pneumo train --resume RUN_DIR`: train an experiment into a run folder, or continue one.
#include <cmath>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.h"
#include "pneumo/core/error.h"
#include "pneumo/train/trainer.h"

namespace pneumo::tools {

namespace {

struct TrainCommandOptions {
  std::string file;
  std::vector<std::string> overrides;
  bool overwrite = false;
  std::string resume;
  int stop_after = 0;
};

void run_train(const TrainCommandOptions& options) {
  if (options.file.empty() == options.resume.empty())
    throw core::UsageError("give either an experiment file or --resume RUN_DIR");
  if (!options.resume.empty() && !options.overrides.empty())
    throw core::UsageError("--set cannot change a run being resumed; it continues with its own config.yaml");
  const train::ExperimentConfig config = options.resume.empty()
                                             ? train::load_experiment(options.file, options.overrides)
                                             : train::load_run_config(options.resume);
  train::TrainOptions train_options;
  train_options.overwrite = options.overwrite;
  train_options.resume = options.resume;
  train_options.stop_after_epochs = options.stop_after;
  train_options.placement = train::placement_from_environment();
  const train::TrainSummary s = train::train_experiment(config, train_options);
  if (train_options.placement.rank != 0) return;  // rank 0 reports
  if (!s.epochs.empty()) {
    const auto cell = [](double v) { return std::isnan(v) ? std::string("-") : fmt::format("{:.4f}", v); };
    fmt::print("{:>6} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}\n", "epoch", "train_loss", "val_loss", "val_dice",
               "val_iou", "val_auc", "lr", "time");
    for (const train::EpochResult& e : s.epochs)
      fmt::print("{:>5}{} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9.2e} {:>6.0f}s\n", e.epoch, e.epoch == s.best_epoch ? "*" : " ",
                 cell(e.train_loss), cell(e.val_loss), cell(e.val_dice), cell(e.val_iou), cell(e.val_auc), e.lr,
                 e.seconds);
  }
  fmt::print("run: {}\n", s.run.string());
  fmt::print("epochs: {}{}\n", s.epochs_run, s.stopped_early ? " (stopped early)" : "");
  fmt::print("best {}: {:.4f} at epoch {} (best.ckpt)\n", s.monitor, s.best_value, s.best_epoch);
}

}  // namespace

void setup_train(CLI::App& app) {
  auto options = std::make_shared<TrainCommandOptions>();
  CLI::App* cmd = app.add_subcommand(
      "train", "Train an experiment: run folder with config, log, folds, metrics.csv/jsonl, last.ckpt, best.ckpt");
  cmd->add_option("file", options->file, "experiment YAML file");
  cmd->add_option("--resume", options->resume, "continue the run in this folder from its last.ckpt");
  cmd->add_option("--stop-after", options->stop_after, "end this session after N epochs (resume later)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--set", options->overrides, "override a value: key.path=value (repeatable)");
  cmd->add_flag("--overwrite", options->overwrite, "replace an existing run folder of the same name");
  cmd->callback([options] { run_train(*options); });
}

}  // namespace pneumo::tools
