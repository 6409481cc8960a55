// `pneumo average CKPT CKPT... --out averaged.ckpt`: the equal average of checkpoints of one
// network, BatchNorm statistics recomputed over its training folds.
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.h"
#include "pneumo/train/average.h"

namespace pneumo::tools {

namespace {

struct AverageCommandOptions {
  std::vector<std::string> checkpoints;
  std::string out;
  bool keep_batchnorm = false;
  std::string device = "auto";
};

void run_average(const AverageCommandOptions& o) {
  train::AverageOptions options;
  for (const auto& c : o.checkpoints) options.checkpoints.emplace_back(c);
  options.out = o.out;
  options.recompute_batchnorm = !o.keep_batchnorm;
  options.device = o.device;
  const train::AverageSummary s = train::average_checkpoints(options);
  fmt::print("wrote {}: the average of {} checkpoints", o.out, s.checkpoints);
  if (options.recompute_batchnorm)
    fmt::print(", BatchNorm statistics of {} layers recomputed over {} training images\n", s.batchnorm_layers,
               s.batchnorm_images);
  else
    fmt::print(", BatchNorm statistics averaged\n");
}

}  // namespace

void setup_average(CLI::App& app) {
  auto options = std::make_shared<AverageCommandOptions>();
  CLI::App* cmd = app.add_subcommand(
      "average", "Average the weights of checkpoints of one network (and recompute its BatchNorm statistics)");
  cmd->add_option("checkpoints", options->checkpoints, "two or more checkpoints of the same network")->required();
  cmd->add_option("--out", options->out, "checkpoint to write")->required();
  cmd->add_flag("--no-batchnorm", options->keep_batchnorm,
                "keep the averaged BatchNorm statistics instead of recomputing them over the training data");
  cmd->add_option("--device", options->device, "auto, cpu, cuda or cuda:N");
  cmd->callback([options] { run_average(*options); });
}

}  // namespace pneumo::tools
