// Helpers shared by the test suites: temporary folders, files, and running the CLI.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace pneumo::testing {

// A fresh folder under the system temp dir, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Writes `text` to `file` (creating parent folders) and returns the path.
std::filesystem::path write_file(const std::filesystem::path& file, const std::string& text);
std::string read_file(const std::filesystem::path& file);

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs a program with arguments (no shell), capturing stdout and stderr separately.
CommandResult run_command(const std::vector<std::string>& argv);

// Runs build/bin/pneumo with the given arguments.
CommandResult run_pneumo(const std::vector<std::string>& args);

// Writes a copy of the DICOM `source` to `out` with header attributes changed ("Keyword=Value",
// by pydicom: tests/tools/edit_dicom.py) under a new SOP Instance UID: a lateral view, a child...
// made from a real file. FAILs the test when the script fails.
std::filesystem::path edited_dicom_copy(const std::filesystem::path& source, const std::filesystem::path& out,
                                        const std::vector<std::string>& assignments);

// Starts a program (argv[0] is its path) with stdout and stderr discarded and returns its pid
// without waiting (for tests that kill it).
int spawn_quiet(const std::vector<std::string>& argv);

// Starts a program with NAME=VALUE entries added to its environment and stdout and stderr
// appended to `log`; returns its pid without waiting.
int spawn_logged(const std::vector<std::string>& argv, const std::vector<std::string>& environment,
                 const std::filesystem::path& log);

// A TCP port on 127.0.0.1 that nobody listens on now, claimed for this process: no other test
// process is given it, and the kernel does not hand it out by itself (it lies below the
// ephemeral range).
int free_tcp_port();

// Waits up to `seconds` for the child `pid` to end: its exit code (128 + signal when killed),
// or -1 if it is still running then (the caller decides what to do with it).
int wait_for_exit(int pid, double seconds);

}  // namespace pneumo::testing
