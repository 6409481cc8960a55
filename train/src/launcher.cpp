#include "pneumo/train/launcher.h"

#include <arpa/inet.h>
#include <fcntl.h>
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

// The supervisor's environment with `added` (NAME=VALUE) put in, replacing variables of the
// same names; torchrun's variables are never inherited (each job says its own).
std::vector<std::string> environment_with(const std::vector<std::string>& added) {
  auto name_of = [](const std::string& entry) { return entry.substr(0, entry.find('=')); };
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    const std::string name = name_of(entry);
    const bool replaced = std::any_of(added.begin(), added.end(), [&](const std::string& a) { return name_of(a) == name; });
    if (!replaced && name != "RANK" && name != "WORLD_SIZE" && name != "LOCAL_RANK" && name != "LOCAL_WORLD_SIZE" &&
        name != "MASTER_ADDR" && name != "MASTER_PORT")
      out.push_back(entry);
  }
  out.insert(out.end(), added.begin(), added.end());
  return out;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// A set of processes of this machine, and what happens to them: started (at most `parallel`
// at a time), signalled, reaped.
class SupervisedProcesses {
 public:
  SupervisedProcesses(const std::vector<ProcessJob>& jobs, int parallel, double grace_s, std::string program)
      : jobs_(jobs), parallel_(std::max(parallel, 1)), grace_s_(grace_s), program_(std::move(program)) {
    // Signals are taken synchronously (sigtimedwait) so none is lost between checks.
    sigemptyset(&handled_);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaddset(&handled_, s);
    if (::sigprocmask(SIG_BLOCK, &handled_, &previous_) != 0)
      throw core::IoError(fmt::format("cannot block signals: {}", std::strerror(errno)));
  }
  ~SupervisedProcesses() { ::sigprocmask(SIG_SETMASK, &previous_, nullptr); }
  SupervisedProcesses(const SupervisedProcesses&) = delete;
  SupervisedProcesses& operator=(const SupervisedProcesses&) = delete;

  // Until every job has ended or the set was stopped.
  ProcessJobsResult run() {
    start_more();
    while (!running_.empty()) {
      timespec tick{0, 200 * 1000 * 1000};
      const int signal = ::sigtimedwait(&handled_, nullptr, &tick);
      if (signal == SIGINT || signal == SIGTERM || signal == SIGHUP) pass_on(signal);
      reap();
      start_more();
      if (stopping_ && !running_.empty() && Clock::now() >= kill_at_) {
        core::log::warn("{} process(es) still running {:.0f} s after SIGTERM; killing them", running_.size(), grace_s_);
        signal_all(SIGKILL);
        kill_at_ = Clock::time_point::max();
      }
    }
    if (received_ != 0) result_.worst_exit_code = std::max(result_.worst_exit_code, 128 + received_);
    return result_;
  }

 private:
  void start_more() {
    while (!stopping_ && next_ < jobs_.size() && static_cast<int>(running_.size()) < parallel_) start(next_++);
  }

  void start(size_t index) {
    const ProcessJob& job = jobs_[index];
    std::vector<std::string> arguments{"pneumo"};
    arguments.insert(arguments.end(), job.arguments.begin(), job.arguments.end());
    std::vector<std::string> environment = environment_with(job.environment);
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
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    if (!job.log_file.empty()) {
      posix_spawn_file_actions_addopen(&files, 1, job.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      posix_spawn_file_actions_adddup2(&files, 1, 2);
    }
    pid_t pid = 0;
    const int error = ::posix_spawn(&pid, program_.c_str(), &files, &attributes, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&files);
    posix_spawnattr_destroy(&attributes);
    if (error != 0) {
      signal_all(SIGTERM);
      throw core::IoError(fmt::format("cannot start {}: {}", job.name, std::strerror(error)));
    }
    running_[pid] = index;
    ++result_.started;
  }

  void signal_all(int signal) {
    for (const auto& [pid, index] : running_) ::kill(pid, signal);
  }

  void stop_others() {
    if (!stopping_) kill_at_ = deadline(grace_s_);
    stopping_ = true;
  }

  void pass_on(int signal) {
    received_ = signal;
    core::log::warn("got signal {} ({}); passing it on to the {} process(es)", signal, ::strsignal(signal),
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
      const ProcessJob& job = jobs_[found->second];
      running_.erase(found);
      const int code = exit_code_of(status);
      if ((stopping_ && received_ == 0) || code == 0) continue;  // stopped by the supervisor after another failed
      core::log::error("{} (pid {}) {}", job.name, pid, describe(status));
      result_.worst_exit_code = std::max(result_.worst_exit_code, code);
      result_.failed.push_back(job.name);
      if (!stopping_ && !running_.empty()) {
        core::log::error("stopping the other {} process(es)", running_.size());
        signal_all(SIGTERM);
      }
      stop_others();
    }
  }

  const std::vector<ProcessJob>& jobs_;
  const int parallel_;
  const double grace_s_;
  const std::string program_;
  sigset_t handled_{}, previous_{};
  std::map<pid_t, size_t> running_;  // pid -> job
  size_t next_ = 0;
  ProcessJobsResult result_;
  int received_ = 0;  // a signal the supervisor was sent and passed on
  bool stopping_ = false;
  Clock::time_point kill_at_{};
};

}  // namespace

ProcessJobsResult run_process_jobs(const std::vector<ProcessJob>& jobs, int parallel, double grace_s,
                                   const std::string& program) {
  SupervisedProcesses processes(jobs, parallel, grace_s, program);
  return processes.run();
}

int launch_processes(const LaunchOptions& o) {
  if (o.node_rank >= o.nnodes)
    throw core::UsageError(fmt::format("--node-rank {} must be below --nnodes {}", o.node_rank, o.nnodes));
  if (o.nnodes > 1 && o.master_addr == "127.0.0.1")
    throw core::UsageError("with several machines, --master-addr must be the address of node 0 that the others reach");
  const int port = o.master_port != 0 ? o.master_port : o.nnodes == 1 ? free_local_port() : 29500;
  const int world = o.nproc_per_node * o.nnodes;
  std::vector<ProcessJob> jobs;
  for (int local = 0; local < o.nproc_per_node; ++local) {
    const int rank = o.node_rank * o.nproc_per_node + local;
    jobs.push_back({fmt::format("launch: rank {}", rank), o.arguments,
                    {fmt::format("RANK={}", rank), fmt::format("WORLD_SIZE={}", world), fmt::format("LOCAL_RANK={}", local),
                     fmt::format("LOCAL_WORLD_SIZE={}", o.nproc_per_node), fmt::format("MASTER_ADDR={}", o.master_addr),
                     fmt::format("MASTER_PORT={}", port)},
                    ""});
  }
  core::log::info("launch: {} process(es) on this machine (ranks {}..{} of {}), meeting at {}:{}", o.nproc_per_node,
                  o.node_rank * o.nproc_per_node, (o.node_rank + 1) * o.nproc_per_node - 1, world, o.master_addr, port);
  return run_process_jobs(jobs, o.nproc_per_node, o.grace_s, o.program).worst_exit_code;
}

}  // namespace pneumo::train
