// Levelled logging to the console (stderr) and, once a run has started, to its log file.
// stdout stays free for command output (YAML, CSV, RLE strings) so it can be piped.
//
//   core::log::info("epoch {} done in {:.1f} s", epoch, seconds);
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace pneumo::core {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// "debug", "info", "warn", "error"; nullopt for anything else.
std::optional<LogLevel> parse_log_level(std::string_view name);
void set_log_level(LogLevel level);
LogLevel log_level();

// Appends every message at or above the level to `file` (with timestamps) until closed.
void open_log_file(const std::filesystem::path& file);
void close_log_file();

void log_message(LogLevel level, std::string_view message);

// Text put before every console message (e.g. "rank 1: " in a data-parallel run); empty: none.
void set_log_prefix(std::string_view prefix);

// A one-line status (a progress bar) that stays at the bottom of a terminal: log lines are
// printed above it. Only used when stderr is a terminal.
void set_status_line(std::string_view line);
void clear_status_line();

namespace log {
template <class... Args>
void debug(fmt::format_string<Args...> format, Args&&... args) {
  if (log_level() <= LogLevel::kDebug)
    log_message(LogLevel::kDebug, fmt::format(format, std::forward<Args>(args)...));
}
template <class... Args>
void info(fmt::format_string<Args...> format, Args&&... args) {
  if (log_level() <= LogLevel::kInfo)
    log_message(LogLevel::kInfo, fmt::format(format, std::forward<Args>(args)...));
}
template <class... Args>
void warn(fmt::format_string<Args...> format, Args&&... args) {
  if (log_level() <= LogLevel::kWarn)
    log_message(LogLevel::kWarn, fmt::format(format, std::forward<Args>(args)...));
}
template <class... Args>
void error(fmt::format_string<Args...> format, Args&&... args) {
  log_message(LogLevel::kError, fmt::format(format, std::forward<Args>(args)...));
}
}  // namespace log

}  // namespace pneumo::core
