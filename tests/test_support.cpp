#include "test_support.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "pneumo_test_paths.h"

extern char** environ;

namespace pneumo::testing {

namespace fs = std::filesystem;

TempDir::TempDir() {
  std::string pattern = (fs::temp_directory_path() / "pneumo-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

fs::path write_file(const fs::path& file, const std::string& text) {
  if (file.has_parent_path()) fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + file.string());
  return file;
}

std::string read_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + file.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

CommandResult run_command(const std::vector<std::string>& argv) {
  TempDir capture;
  const fs::path out_file = capture / "stdout";
  const fs::path err_file = capture / "stderr";

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, out_file.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, err_file.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);

  CommandResult result;
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  result.out = read_file(out_file);
  result.err = read_file(err_file);
  return result;
}

CommandResult run_pneumo(const std::vector<std::string>& args) {
  std::vector<std::string> argv{PNEUMO_CLI_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv);
}

std::filesystem::path edited_dicom_copy(const std::filesystem::path& source, const std::filesystem::path& out,
                                        const std::vector<std::string>& assignments) {
  std::vector<std::string> argv{PNEUMO_REFERENCE_PYTHON, PNEUMO_SOURCE_DIR "/tests/tools/edit_dicom.py", source.string(),
                                out.string()};
  argv.insert(argv.end(), assignments.begin(), assignments.end());
  std::filesystem::create_directories(out.parent_path());
  const CommandResult r = run_command(argv);
  if (r.exit_code != 0) FAIL("edit_dicom.py failed on " << source << ": " << r.err);
  return out;
}

int spawn_quiet(const std::vector<std::string>& argv) {
  std::vector<std::string> copy = argv;
  const pid_t child = ::fork();
  if (child == 0) {
    std::vector<char*> args;
    for (auto& arg : copy) args.push_back(arg.data());
    args.push_back(nullptr);
    if (!::freopen("/dev/null", "w", stdout) || !::freopen("/dev/null", "w", stderr)) ::_exit(126);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return child;
}

int spawn_logged(const std::vector<std::string>& argv, const std::vector<std::string>& environment,
                 const fs::path& log) {
  std::vector<std::string> copy = argv;
  std::vector<std::string> variables = environment;
  const std::string log_path = log.string();
  const pid_t child = ::fork();
  if (child == 0) {
    for (auto& v : variables) ::putenv(v.data());
    const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0 || ::dup2(fd, STDOUT_FILENO) < 0 || ::dup2(fd, STDERR_FILENO) < 0) ::_exit(126);
    std::vector<char*> args;
    for (auto& arg : copy) args.push_back(arg.data());
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return child;
}

namespace {

// The lowest port the kernel hands out by itself (bind to port 0, outgoing connections).
int lowest_ephemeral_port() {
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 32768;
  if (!(range >> low) || low < 12000) low = 32768;
  return low;
}

bool nobody_listens(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket() failed");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

// A port the kernel's own choice (port 0) returns is free only until the next process asks:
// tests running side by side, and the Gloo and HTTP sockets they open, can be handed the same
// port before its user binds it. So ports come from below the kernel's ephemeral range, and
// each is claimed for the life of this process by a lock on a file named after it, which the
// other test processes respect.
int free_tcp_port() {
  static std::mutex mutex;
  static std::vector<int> claims;  // lock file descriptors, held until the process exits
  const std::lock_guard<std::mutex> lock(mutex);
  const fs::path folder = fs::temp_directory_path() / "pneumo-test-ports";
  std::error_code ignored;
  fs::create_directories(folder, ignored);
  const int high = lowest_ephemeral_port(), low = high - 10000;
  std::mt19937 random(std::random_device{}());
  std::uniform_int_distribution<int> pick(low, high - 1);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int port = pick(random);
    const std::string claim = (folder / std::to_string(port)).string();
    const int fd = ::open(claim.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0666);
    if (fd < 0) continue;  // a claim file of another user's: try another port
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0 && nobody_listens(port)) {
      claims.push_back(fd);
      return port;
    }
    ::close(fd);
  }
  throw std::runtime_error("no free port on 127.0.0.1 below " + std::to_string(high) + " (port claims in " +
                           folder.string() + ")");
}

int wait_for_exit(int pid, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  while (true) {
    int status = 0;
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (done < 0 || std::chrono::steady_clock::now() >= end) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace pneumo::testing
