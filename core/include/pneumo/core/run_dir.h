// A run's folder: runs/<experiment>/<run-name>/ holding the resolved config, the log and,
// later, metrics and checkpoints. An existing run is never overwritten unless asked.
#pragma once

#include <filesystem>
#include <string>

namespace pneumo::core {

class RunDirectory {
 public:
  // Creates `<root>/<experiment>/<run_name>/`. An empty run name becomes a timestamp
  // (YYYYmmdd-HHMMSS, with -2, -3... if taken). Throws UsageError when the folder exists and
  // `overwrite` is false, and ConfigError for names that are not plain folder names.
  static RunDirectory create(const std::filesystem::path& root, const std::string& experiment,
                             const std::string& run_name = "", bool overwrite = false);
  // Creates exactly `path` (a fold of `pneumo cv`), with create's rules for an existing folder.
  static RunDirectory create_at(const std::filesystem::path& path, bool overwrite = false);
  // Opens an existing run (for resume, evaluate); throws UsageError if it is not one.
  static RunDirectory open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path config_file() const { return path_ / "config.yaml"; }
  std::filesystem::path log_file() const { return path_ / "log.txt"; }
  std::filesystem::path file(const std::string& name) const { return path_ / name; }

  // Deletes the temporary files of writes a killed process left unfinished (the files they
  // were replacing are whole). Returns how many.
  int remove_interrupted_writes() const;

  // Writes the resolved config (atomically) and starts appending the log to log.txt.
  void start(const std::string& resolved_config_yaml) const;

 private:
  explicit RunDirectory(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path path_;
};

}  // namespace pneumo::core
