// `pneumo launch --nproc-per-node N [--nnodes M --node-rank R --master-addr A --master-port P]
// -- train CONFIG ...`: starts this machine's processes of a data-parallel run the torchrun
// way (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT in each
// one's environment), forwards SIGINT, SIGTERM and SIGHUP to them, stops the others when one
// fails, and exits with the worst exit code of the processes that ended on their own.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.h"
#include "pneumo/core/error.h"
#include "pneumo/core/log.h"

extern char** environ;

namespace pneumo::tools {

namespace {

struct LaunchOptions {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: a free port on this machine (one node), else 29500
  double grace_s = 10.0;
  std::vector<std::string> command;
};

// A port nobody listens on now (the kernel's choice), for a run on this machine alone.
int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw core::IoError(fmt::format("launch: cannot open a socket: {}", std::strerror(errno)));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof(address);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0;
  ::close(fd);
  if (!ok) throw core::IoError(fmt::format("launch: cannot find a free port: {}", std::strerror(errno)));
  return ntohs(address.sin_port);
}

std::chrono::steady_clock::time_point deadline(double seconds) {
  return std::chrono::steady_clock::now() +
         std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(seconds));
}

// The exit code a shell reports for a wait() status.
int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return core::kExitFailure;
}

std::string describe(int status) {
  if (WIFSIGNALED(status)) return fmt::format("was killed by signal {} ({})", WTERMSIG(status), ::strsignal(WTERMSIG(status)));
  return fmt::format("exited with code {}", exit_code_of(status));
}

int run_launch(const LaunchOptions& o) {
  if (o.command.empty() || o.command.front() != "train")
    throw core::UsageError("launch runs `train` in several processes; expected: pneumo launch --nproc-per-node N -- "
                           "train CONFIG [options]");
  if (o.node_rank >= o.nnodes)
    throw core::UsageError(fmt::format("--node-rank {} must be below --nnodes {}", o.node_rank, o.nnodes));
  if (o.nnodes > 1 && o.master_addr == "127.0.0.1")
    throw core::UsageError("with several machines, --master-addr must be the address of node 0 that the others reach");
  const int world = o.nproc_per_node * o.nnodes;
  const int port = o.master_port != 0 ? o.master_port : o.nnodes == 1 ? free_local_port() : 29500;

  // Signals are taken synchronously (sigtimedwait) so none is lost between checks.
  sigset_t handled;
  sigemptyset(&handled);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaddset(&handled, s);
  sigset_t previous;
  if (::sigprocmask(SIG_BLOCK, &handled, &previous) != 0)
    throw core::IoError(fmt::format("launch: cannot block signals: {}", std::strerror(errno)));

  std::vector<std::string> base_environment;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    if (name != "RANK" && name != "WORLD_SIZE" && name != "LOCAL_RANK" && name != "LOCAL_WORLD_SIZE" &&
        name != "MASTER_ADDR" && name != "MASTER_PORT")
      base_environment.push_back(entry);
  }
  std::vector<std::string> arguments{"pneumo"};
  arguments.insert(arguments.end(), o.command.begin(), o.command.end());
  std::vector<char*> argv;
  for (auto& a : arguments) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::map<pid_t, int> running;  // pid -> global rank
  const auto stop_all = [&](int signal) {
    for (const auto& [pid, rank] : running) ::kill(pid, signal);
  };
  for (int local = 0; local < o.nproc_per_node; ++local) {
    const int rank = o.node_rank * o.nproc_per_node + local;
    std::vector<std::string> environment = base_environment;
    environment.push_back(fmt::format("RANK={}", rank));
    environment.push_back(fmt::format("WORLD_SIZE={}", world));
    environment.push_back(fmt::format("LOCAL_RANK={}", local));
    environment.push_back(fmt::format("LOCAL_WORLD_SIZE={}", o.nproc_per_node));
    environment.push_back(fmt::format("MASTER_ADDR={}", o.master_addr));
    environment.push_back(fmt::format("MASTER_PORT={}", port));
    std::vector<char*> envp;
    for (auto& e : environment) envp.push_back(e.data());
    envp.push_back(nullptr);

    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaddset(&defaults, s);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setsigdefault(&attributes, &defaults);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = 0;
    const int error = ::posix_spawn(&pid, "/proc/self/exe", nullptr, &attributes, argv.data(), envp.data());
    posix_spawnattr_destroy(&attributes);
    if (error != 0) {
      stop_all(SIGTERM);
      ::sigprocmask(SIG_SETMASK, &previous, nullptr);
      throw core::IoError(fmt::format("launch: cannot start process {}: {}", rank, std::strerror(error)));
    }
    running[pid] = rank;
  }
  core::log::info("launch: {} process(es) on this machine (ranks {}..{} of {}), meeting at {}:{}", o.nproc_per_node,
                  o.node_rank * o.nproc_per_node, (o.node_rank + 1) * o.nproc_per_node - 1, world, o.master_addr,
                  port);

  int worst = core::kExitOk;
  int received = 0;  // a signal the launcher was sent and passed on
  bool stopping = false;
  std::chrono::steady_clock::time_point kill_at{};
  while (!running.empty()) {
    timespec tick{0, 200 * 1000 * 1000};
    const int signal = ::sigtimedwait(&handled, nullptr, &tick);
    if (signal == SIGINT || signal == SIGTERM || signal == SIGHUP) {
      received = signal;
      core::log::warn("launch: got signal {} ({}); passing it on to the {} process(es)", signal, ::strsignal(signal),
                      running.size());
      stop_all(signal);
      if (!stopping) kill_at = deadline(o.grace_s);
      stopping = true;
    }
    int status = 0;
    pid_t pid = 0;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      const auto found = running.find(pid);
      if (found == running.end()) continue;
      const int rank = found->second;
      running.erase(found);
      const int code = exit_code_of(status);
      if (stopping && received == 0) continue;  // stopped by the launcher after another failed
      if (code != 0) {
        core::log::error("launch: rank {} (pid {}) {}", rank, pid, describe(status));
        worst = std::max(worst, code);
        if (!stopping && !running.empty()) {
          core::log::error("launch: stopping the other {} process(es)", running.size());
          stop_all(SIGTERM);
          stopping = true;
          kill_at = deadline(o.grace_s);
        }
      }
    }
    if (stopping && !running.empty() && std::chrono::steady_clock::now() >= kill_at) {
      core::log::warn("launch: {} process(es) still running {:.0f} s after SIGTERM; killing them", running.size(),
                      o.grace_s);
      stop_all(SIGKILL);
      kill_at = std::chrono::steady_clock::time_point::max();
    }
  }
  ::sigprocmask(SIG_SETMASK, &previous, nullptr);
  if (received != 0) return std::max(worst, 128 + received);
  return worst;
}

}  // namespace

void setup_launch(CLI::App& app) {
  auto options = std::make_shared<LaunchOptions>();
  CLI::App* cmd = app.add_subcommand(
      "launch",
      "Run `train` as a data-parallel job: start N processes on this machine (torchrun's environment variables), "
      "forward signals, stop all when one fails; exit with the worst exit code");
  cmd->add_option("--nproc-per-node", options->nproc_per_node, "processes on this machine (one per GPU on CUDA)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--nnodes", options->nnodes, "machines in the run")->check(CLI::Range(1, 65536));
  cmd->add_option("--node-rank", options->node_rank, "this machine's index, 0..nnodes-1")->check(CLI::Range(0, 65535));
  cmd->add_option("--master-addr", options->master_addr, "address of node 0, where the processes meet");
  cmd->add_option("--master-port", options->master_port,
                  "port on node 0 (default: a free port with one machine, else 29500)")
      ->check(CLI::Range(1, 65535));
  cmd->add_option("--grace", options->grace_s, "seconds between SIGTERM and SIGKILL when stopping the processes")
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_option("command", options->command, "after --: the pneumo command every process runs (train ...)")
      ->required();
  cmd->callback([options] {
    const int code = run_launch(*options);
    if (code != 0) throw ExitCode{code};
  });
}

}  // namespace pneumo::tools
