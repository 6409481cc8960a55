#include "pneumo/train/launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>

#include <fmt/format.h>

#include "pneumo/core/error.h"
#include "pneumo/core/log.h"

extern char** environ;

namespace pneumo::train {

namespace {

using Clock = std::chrono::steady_clock;

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

Clock::time_point deadline(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
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

// The launcher's environment without the variables it sets per process.
std::vector<std::string> inherited_environment() {
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const std::string name = entry.substr(0, entry.find('='));
    if (name != "RANK" && name != "WORLD_SIZE" && name != "LOCAL_RANK" && name != "LOCAL_WORLD_SIZE" &&
        name != "MASTER_ADDR" && name != "MASTER_PORT")
      out.push_back(entry);
  }
  return out;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// The processes of this machine, and what happens to them: started, signalled, reaped.
class ProcessGroupOnThisMachine {
 public:
  explicit ProcessGroupOnThisMachine(const LaunchOptions& o) : o_(o) {
    // Signals are taken synchronously (sigtimedwait) so none is lost between checks.
    sigemptyset(&handled_);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaddset(&handled_, s);
    if (::sigprocmask(SIG_BLOCK, &handled_, &previous_) != 0)
      throw core::IoError(fmt::format("launch: cannot block signals: {}", std::strerror(errno)));
  }
  ~ProcessGroupOnThisMachine() { ::sigprocmask(SIG_SETMASK, &previous_, nullptr); }
  ProcessGroupOnThisMachine(const ProcessGroupOnThisMachine&) = delete;
  ProcessGroupOnThisMachine& operator=(const ProcessGroupOnThisMachine&) = delete;

  void start_all(int port) {
    const std::vector<std::string> inherited = inherited_environment();
    std::vector<std::string> arguments{"pneumo"};
    arguments.insert(arguments.end(), o_.arguments.begin(), o_.arguments.end());
    const int world = o_.nproc_per_node * o_.nnodes;
    for (int local = 0; local < o_.nproc_per_node; ++local) {
      const int rank = o_.node_rank * o_.nproc_per_node + local;
      std::vector<std::string> environment = inherited;
      for (const std::string& variable :
           {fmt::format("RANK={}", rank), fmt::format("WORLD_SIZE={}", world), fmt::format("LOCAL_RANK={}", local),
            fmt::format("LOCAL_WORLD_SIZE={}", o_.nproc_per_node), fmt::format("MASTER_ADDR={}", o_.master_addr),
            fmt::format("MASTER_PORT={}", port)})
        environment.push_back(variable);
      start(rank, arguments, environment);
    }
  }

  // Until every process has ended; returns the worst exit code.
  int supervise() {
    while (!running_.empty()) {
      timespec tick{0, 200 * 1000 * 1000};
      const int signal = ::sigtimedwait(&handled_, nullptr, &tick);
      if (signal == SIGINT || signal == SIGTERM || signal == SIGHUP) pass_on(signal);
      reap();
      if (stopping_ && !running_.empty() && Clock::now() >= kill_at_) {
        core::log::warn("launch: {} process(es) still running {:.0f} s after SIGTERM; killing them", running_.size(),
                        o_.grace_s);
        signal_all(SIGKILL);
        kill_at_ = Clock::time_point::max();
      }
    }
    return received_ != 0 ? std::max(worst_, 128 + received_) : worst_;
  }

 private:
  void start(int rank, std::vector<std::string>& arguments, std::vector<std::string>& environment) {
    std::vector<char*> argv = pointers(arguments), envp = pointers(environment);
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
    const int error = ::posix_spawn(&pid, o_.program.c_str(), nullptr, &attributes, argv.data(), envp.data());
    posix_spawnattr_destroy(&attributes);
    if (error != 0) {
      signal_all(SIGTERM);
      throw core::IoError(fmt::format("launch: cannot start process {}: {}", rank, std::strerror(error)));
    }
    running_[pid] = rank;
  }

  void signal_all(int signal) {
    for (const auto& [pid, rank] : running_) ::kill(pid, signal);
  }

  void stop_others() {
    if (!stopping_) kill_at_ = deadline(o_.grace_s);
    stopping_ = true;
  }

  void pass_on(int signal) {
    received_ = signal;
    core::log::warn("launch: got signal {} ({}); passing it on to the {} process(es)", signal, ::strsignal(signal),
                    running_.size());
    signal_all(signal);
    stop_others();
  }

  void reap() {
    int status = 0;
    pid_t pid = 0;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      const auto found = running_.find(pid);
      if (found == running_.end()) continue;
      const int rank = found->second;
      running_.erase(found);
      const int code = exit_code_of(status);
      if ((stopping_ && received_ == 0) || code == 0) continue;  // stopped by the launcher after another failed
      core::log::error("launch: rank {} (pid {}) {}", rank, pid, describe(status));
      worst_ = std::max(worst_, code);
      if (!stopping_ && !running_.empty()) {
        core::log::error("launch: stopping the other {} process(es)", running_.size());
        signal_all(SIGTERM);
        stop_others();
      }
    }
  }

  const LaunchOptions& o_;
  sigset_t handled_{}, previous_{};
  std::map<pid_t, int> running_;  // pid -> global rank
  int worst_ = core::kExitOk;
  int received_ = 0;  // a signal the launcher was sent and passed on
  bool stopping_ = false;
  Clock::time_point kill_at_{};
};

}  // namespace

int launch_processes(const LaunchOptions& o) {
  if (o.node_rank >= o.nnodes)
    throw core::UsageError(fmt::format("--node-rank {} must be below --nnodes {}", o.node_rank, o.nnodes));
  if (o.nnodes > 1 && o.master_addr == "127.0.0.1")
    throw core::UsageError("with several machines, --master-addr must be the address of node 0 that the others reach");
  const int port = o.master_port != 0 ? o.master_port : o.nnodes == 1 ? free_local_port() : 29500;
  ProcessGroupOnThisMachine processes(o);
  processes.start_all(port);
  core::log::info("launch: {} process(es) on this machine (ranks {}..{} of {}), meeting at {}:{}", o.nproc_per_node,
                  o.node_rank * o.nproc_per_node, (o.node_rank + 1) * o.nproc_per_node - 1, o.nproc_per_node * o.nnodes,
                  o.master_addr, port);
  return processes.supervise();
}

}  // namespace pneumo::train
