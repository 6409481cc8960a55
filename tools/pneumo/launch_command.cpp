// `pneumo launch --nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P]
// -- train CONFIG ...` (or `-- cv CONFIG ...`, each fold data-parallel): starts this machine's processes of a data-parallel run the torchrun
// way (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT in each
// one's environment), forwards SIGINT, SIGTERM and SIGHUP to them, stops the others when one
// fails, and exits with the worst exit code of the processes that ended on their own.
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "pneumo/core/error.h"
#include "pneumo/train/launcher.h"

namespace pneumo::tools {

namespace {

struct LaunchCommandOptions {
  train::LaunchOptions launch;
  std::vector<std::string> command;
};

int run_launch(const LaunchCommandOptions& o) {
  if (o.command.empty() || (o.command.front() != "train" && o.command.front() != "cv"))
    throw core::UsageError("launch runs `train` or `cv` in several processes; expected: pneumo launch --nproc-per-node "
                           "N -- train CONFIG [options] (or -- cv CONFIG [options])");
  train::LaunchOptions launch = o.launch;
  launch.arguments = o.command;
  return train::launch_processes(launch);
}

}  // namespace

void setup_launch(CLI::App& app) {
  auto options = std::make_shared<LaunchCommandOptions>();
  CLI::App* cmd = app.add_subcommand(
      "launch",
      "Run `train` (or `cv`, each fold in turn) as a data-parallel job: start N processes on this machine (torchrun's environment variables), "
      "forward signals, stop all when one fails; exit with the worst exit code");
  cmd->add_option("--nproc-per-node", options->launch.nproc_per_node, "processes on this machine (one per GPU on CUDA)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--nnodes", options->launch.nnodes, "machines in the run")->check(CLI::Range(1, 65536));
  cmd->add_option("--node-rank", options->launch.node_rank, "this machine's index, 0..nnodes-1")->check(CLI::Range(0, 65535));
  cmd->add_option("--master-addr", options->launch.master_addr, "address of node 0, where the processes meet");
  cmd->add_option("--master-port", options->launch.master_port,
                  "port on node 0 (default: a free port with one machine, else 29500)")
      ->check(CLI::Range(1, 65535));
  cmd->add_option("--grace", options->launch.grace_s, "seconds between SIGTERM and SIGKILL when stopping the processes")
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_option("command", options->command, "after --: the pneumo command every process runs (train ... or cv ...)")
      ->required();
  cmd->callback([options] {
    const int code = run_launch(*options);
    if (code != 0) throw ExitCode{code};
  });
}

}  // namespace pneumo::tools
