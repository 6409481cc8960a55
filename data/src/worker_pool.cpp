#include "pneumo/data/worker_pool.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "pneumo/core/error.h"
#include "pneumo/core/log.h"

extern char** environ;

namespace pneumo::data {

namespace {

using Clock = std::chrono::steady_clock;

// Writes everything or returns false (the other end is gone or the deadline passed).
bool write_all(int fd, const void* data, size_t size, Clock::time_point deadline) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    if (deadline != Clock::time_point::max()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      pollfd pfd{fd, POLLOUT, 0};
      if (left <= 0 || ::poll(&pfd, 1, static_cast<int>(left)) <= 0) return false;
    }
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool read_all(int fd, void* data, size_t size, Clock::time_point deadline) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    if (deadline != Clock::time_point::max()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      pollfd pfd{fd, POLLIN, 0};
      if (left <= 0 || ::poll(&pfd, 1, static_cast<int>(left)) <= 0) return false;
    }
    const ssize_t n = ::read(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

constexpr int kSharedFd = 3;             // the worker's shared memory, as the pool hands it over
constexpr uint64_t kMaxMessage = uint64_t{1} << 30;

bool send_frame(int fd, const std::string& message, Clock::time_point deadline) {
  const uint64_t size = message.size();
  return write_all(fd, &size, sizeof size, deadline) && write_all(fd, message.data(), message.size(), deadline);
}

bool receive_frame(int fd, std::string& message, Clock::time_point deadline) {
  uint64_t size = 0;
  if (!read_all(fd, &size, sizeof size, deadline) || size > kMaxMessage) return false;
  message.resize(size);
  return read_all(fd, message.data(), size, deadline);
}

std::string signal_name(int signal) {
  const char* abbreviation = sigabbrev_np(signal);
  return abbreviation != nullptr ? fmt::format("SIG{}", abbreviation) : fmt::format("signal {}", signal);
}

}  // namespace

std::string decoder_program() {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("pneumo-decoder") : (self.parent_path() / "pneumo-decoder").string();
}

WorkerChannel::~WorkerChannel() {
  if (map_ != nullptr) ::munmap(map_, mapped_);
}

bool WorkerChannel::read(std::string& request) { return receive_frame(STDIN_FILENO, request, Clock::time_point::max()); }

bool WorkerChannel::write(const WorkerAnswer& answer) {
  const size_t bulk = answer.bulk.empty() ? 0 : answer.bulk.total() * answer.bulk.elemSize();
  if (bulk > mapped_) {  // grow the shared memory (in whole MiB) and map it again
    const size_t size = (bulk + (size_t{1} << 20) - 1) & ~((size_t{1} << 20) - 1);
    if (map_ != nullptr) ::munmap(map_, mapped_);
    map_ = nullptr;
    mapped_ = 0;
    if (::ftruncate(kSharedFd, static_cast<off_t>(size)) != 0) return false;
    void* m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, kSharedFd, 0);
    if (m == MAP_FAILED) return false;
    map_ = static_cast<char*>(m);
    mapped_ = size;
  }
  if (bulk > 0) std::memcpy(map_, answer.bulk.ptr(), bulk);
  const uint64_t sizes[2] = {answer.message.size(), bulk};
  return write_all(STDOUT_FILENO, sizes, sizeof sizes, Clock::time_point::max()) &&
         write_all(STDOUT_FILENO, answer.message.data(), answer.message.size(), Clock::time_point::max());
}

WorkerPool::WorkerPool(std::string program, std::vector<std::string> arguments, int workers, double timeout_s,
                       std::string what)
    : program_(program.empty() ? decoder_program() : std::move(program)),
      arguments_(std::move(arguments)),
      workers_(workers),
      timeout_s_(timeout_s),
      what_(std::move(what)) {
  if (workers < 1) throw core::UsageError(fmt::format("{}: at least one worker process is needed", what_));
  for (int i = 0; i < workers; ++i) {
    all_.push_back(start());
    idle_.push_back(all_.back());
  }
}

WorkerPool::~WorkerPool() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Worker& w : all_) stop(w);
}

int WorkerPool::restarts() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return restarts_;
}

WorkerPool::Worker WorkerPool::start() const {
  int to[2], from[2];
  if (::pipe2(to, O_CLOEXEC) != 0 || ::pipe2(from, O_CLOEXEC) != 0)
    throw core::IoError(fmt::format("cannot make pipes for {}: {}", what_, std::strerror(errno)));
  const int shared = ::memfd_create("pneumo-worker", MFD_CLOEXEC);
  if (shared < 0) {
    for (int fd : {to[0], to[1], from[0], from[1]}) ::close(fd);
    throw core::IoError(fmt::format("cannot make shared memory for {}: {}", what_, std::strerror(errno)));
  }
  // Requests carry whole files when they come as bytes (uploads): a pipe of the largest size the
  // kernel allows unprivileged (1 MiB by default) takes them in fewer writes.
  ::fcntl(to[0], F_SETPIPE_SZ, 1 << 20);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, to[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, from[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, shared, kSharedFd);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  // Its own process group: a Ctrl-C in the terminal reaches the parent, which stops its workers.
  posix_spawnattr_setpgroup(&attributes, 0);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  std::vector<std::string> args{std::filesystem::path(program_).filename().string()};
  args.insert(args.end(), arguments_.begin(), arguments_.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int error = ::posix_spawn(&pid, program_.c_str(), &actions, &attributes, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  ::close(to[0]);
  ::close(from[1]);
  if (error != 0) {
    ::close(to[1]);
    ::close(from[0]);
    ::close(shared);
    throw core::IoError(fmt::format("cannot start {} ({}): {}{}", what_, program_, std::strerror(error),
                                    error == ENOENT ? "; it is built beside pneumo (tools/build.sh builds both)" : ""));
  }
  return {pid, to[1], from[0], shared};
}

const char* WorkerPool::bulk_of(Worker& w, size_t size) {
  // The worker says how much it put there; the memory must hold it (reading past its end would
  // be SIGBUS for us, not a message for the user).
  struct stat st {};
  if (::fstat(w.shared, &st) != 0 || static_cast<uint64_t>(st.st_size) < size) return nullptr;
  if (size > w.mapped) {
    if (w.map != nullptr) ::munmap(w.map, w.mapped);
    w.map = nullptr;
    w.mapped = 0;
    void* m = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_SHARED, w.shared, 0);
    if (m == MAP_FAILED) return nullptr;
    w.map = static_cast<char*>(m);
    w.mapped = static_cast<size_t>(st.st_size);
  }
  return w.map;
}

std::string WorkerPool::stop(Worker& w) {
  if (w.pid <= 0) return "";
  ::close(w.to);
  ::close(w.from);
  if (w.map != nullptr) ::munmap(w.map, w.mapped);
  ::close(w.shared);
  w.map = nullptr;
  w.mapped = 0;
  // A worker that ended by itself (it aborted) is reaped as it is; one still running is killed.
  int status = 0;
  pid_t done = 0;
  for (int i = 0; i < 50 && (done = ::waitpid(w.pid, &status, WNOHANG)) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  std::string how;
  if (done == 0) {
    ::kill(w.pid, SIGKILL);
    ::waitpid(w.pid, &status, 0);
    how = "was stopped";
  } else if (done > 0 && WIFSIGNALED(status)) {
    how = "stopped: " + signal_name(WTERMSIG(status));
  } else if (done > 0 && WIFEXITED(status)) {
    how = fmt::format("exited with code {}", WEXITSTATUS(status));
  }
  w.pid = -1;
  return how;
}

std::string WorkerPool::call(const std::string& request, const std::string& name, const BulkReceiver& on_bulk) {
  Worker w;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    available_.wait(lock, [this] { return !idle_.empty() || all_.empty(); });
    if (idle_.empty()) throw core::IoError(fmt::format("no process of {} is left (they could not be restarted)", what_));
    w = idle_.back();
    idle_.pop_back();
  }
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s_));
  std::string answer;
  uint64_t sizes[2] = {0, 0};  // the answer's, the bulk part's
  bool ok = send_frame(w.to, request, deadline) && read_all(w.from, sizes, sizeof sizes, deadline) &&
            sizes[0] <= kMaxMessage;
  if (ok) {
    answer.resize(sizes[0]);
    ok = read_all(w.from, answer.data(), answer.size(), deadline);
  }
  const auto give_back = [&] {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      idle_.push_back(w);
    }
    available_.notify_one();
  };
  if (ok && sizes[1] > 0) {
    const char* bulk = on_bulk ? bulk_of(w, sizes[1]) : nullptr;
    ok = bulk != nullptr;
    if (ok) {
      try {
        on_bulk(answer, bulk, sizes[1]);
      } catch (...) {
        give_back();
        throw;
      }
    }
  }
  if (!ok) {  // it crashed, hung or spoke nonsense: replace it, fail this request
    const bool timed_out = Clock::now() >= deadline;
    const std::string how = stop(w);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      all_.erase(std::remove_if(all_.begin(), all_.end(), [&](const Worker& x) { return x.to == w.to; }), all_.end());
      try {
        all_.push_back(start());
        idle_.push_back(all_.back());
        ++restarts_;
      } catch (const core::IoError& e) {
        core::log::error("{}", e.what());
      }
    }
    available_.notify_all();
    throw core::DataError(fmt::format("{}: {} {}", name, what_,
                                      timed_out ? fmt::format("timed out after {} s", timeout_s_)
                                                : how.empty() ? std::string("answered nonsense") : how));
  }
  give_back();
  return answer;
}

}  // namespace pneumo::data
