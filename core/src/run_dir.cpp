#include "pneumo/core/run_dir.h"

#include <ctime>

#include <fmt/format.h>

#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"
#include "pneumo/core/log.h"

namespace pneumo::core {

namespace fs = std::filesystem;

namespace {

void check_folder_name(const std::string& what, const std::string& name) {
  const bool bad = name.empty() || name == "." || name == ".." ||
                   name.find_first_of("/\\") != std::string::npos || name.front() == '-';
  if (bad)
    throw ConfigError(fmt::format("invalid {} '{}'; expected a plain folder name (no '/', not "
                                  "empty, not starting with '-')", what, name));
}

std::string timestamp_name() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char text[32];
  std::strftime(text, sizeof text, "%Y%m%d-%H%M%S", &local);
  return text;
}

}  // namespace

RunDirectory RunDirectory::create(const fs::path& root, const std::string& experiment,
                                  const std::string& run_name, bool overwrite) {
  check_folder_name("experiment name", experiment);
  fs::path path;
  if (run_name.empty()) {
    const std::string base = timestamp_name();
    path = root / experiment / base;
    for (int n = 2; fs::exists(path); ++n) path = root / experiment / fmt::format("{}-{}", base, n);
  } else {
    check_folder_name("run name", run_name);
    path = root / experiment / run_name;
  }
  return create_at(path, overwrite);
}

RunDirectory RunDirectory::create_at(const fs::path& path, bool overwrite) {
  if (fs::exists(path)) {
    if (!overwrite)
      throw UsageError(fmt::format("run folder '{}' already exists; choose another run name "
                                   "or pass --overwrite to replace it", path.string()));
    std::error_code ec;
    fs::remove_all(path, ec);
    if (ec)
      throw IoError(fmt::format("{}: cannot remove old run: {}", path.string(), ec.message()));
  }
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw IoError(fmt::format("{}: cannot create run folder: {}", path.string(), ec.message()));
  return RunDirectory(path);
}

RunDirectory RunDirectory::open(const fs::path& path) {
  if (!fs::is_regular_file(path / "config.yaml"))
    throw UsageError(fmt::format("'{}' is not a pneumo run folder (no config.yaml in it)",
                                 path.string()));
  return RunDirectory(path);
}

int RunDirectory::remove_interrupted_writes() const {
  int removed = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(path_, ec))
    if (entry.is_regular_file(ec) && is_atomic_write_temp(entry.path()) && fs::remove(entry.path(), ec)) ++removed;
  return removed;
}

void RunDirectory::start(const std::string& resolved_config_yaml) const {
  write_file_atomic(config_file(), resolved_config_yaml);
  open_log_file(log_file());
  log::info("run folder: {}", path_.string());
}

}  // namespace pneumo::core
