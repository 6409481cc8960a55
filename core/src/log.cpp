#include "pneumo/core/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

#include "pneumo/core/error.h"

namespace pneumo::core {

namespace {

struct LogState {
  std::mutex mutex;
  std::atomic<LogLevel> level{LogLevel::kInfo};
  std::FILE* file = nullptr;
  std::string status_line;  // currently drawn at the bottom of the terminal, if any
  std::string prefix;       // put before every console message, e.g. "rank 1: "
};

LogState& state() {
  static LogState s;
  return s;
}

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warning";
    case LogLevel::kError: return "error";
  }
  return "?";
}

std::string timestamp() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm local{};
  localtime_r(&seconds, &local);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S", &local);
  return fmt::format("{}.{:03d}", text, millis);
}

constexpr const char* kClearLine = "\r\033[K";

}  // namespace

std::optional<LogLevel> parse_log_level(std::string_view name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "info") return LogLevel::kInfo;
  if (name == "warn") return LogLevel::kWarn;
  if (name == "error") return LogLevel::kError;
  return std::nullopt;
}

void set_log_level(LogLevel level) { state().level = level; }
LogLevel log_level() { return state().level; }

void open_log_file(const std::filesystem::path& file) {
  LogState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  std::FILE* f = std::fopen(file.c_str(), "a");
  if (f == nullptr) throw IoError(fmt::format("{}: cannot open log file", file.string()));
  if (s.file != nullptr) std::fclose(s.file);
  s.file = f;
}

void close_log_file() {
  LogState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.file != nullptr) std::fclose(s.file);
  s.file = nullptr;
}

void log_message(LogLevel level, std::string_view message) {
  LogState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.status_line.empty()) std::fputs(kClearLine, stderr);
  if (level == LogLevel::kInfo) {
    fmt::print(stderr, "{}{}\n", s.prefix, message);
  } else {
    fmt::print(stderr, "{}{}: {}\n", s.prefix, level_name(level), message);
  }
  if (!s.status_line.empty()) std::fputs(s.status_line.c_str(), stderr);
  std::fflush(stderr);
  if (s.file != nullptr) {
    fmt::print(s.file, "{} {:<7} {}\n", timestamp(), level_name(level), message);
    std::fflush(s.file);
  }
}

void set_log_prefix(std::string_view prefix) {
  LogState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.prefix = prefix;
}

void set_status_line(std::string_view line) {
  LogState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.status_line = line;
  fmt::print(stderr, "{}{}", kClearLine, line);
  std::fflush(stderr);
}

void clear_status_line() {
  LogState& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.status_line.empty()) return;
  s.status_line.clear();
  std::fputs(kClearLine, stderr);
  std::fflush(stderr);
}

}  // namespace pneumo::core
