#include "pneumo/core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "pneumo/core/log.h"

namespace pneumo::core {

namespace {
constexpr double kMaxSilenceSeconds = 30.0;
constexpr double kRedrawSeconds = 0.1;
constexpr int kBarWidth = 24;

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

std::string format_duration(double seconds) {
  const int64_t total = std::max<int64_t>(0, static_cast<int64_t>(seconds + 0.5));
  const int64_t h = total / 3600, m = (total / 60) % 60, s = total % 60;
  return h > 0 ? fmt::format("{}:{:02d}:{:02d}", h, m, s) : fmt::format("{}:{:02d}", m, s);
}

Progress::Progress(std::string label, int64_t total, Style style, Sink sink, Clock clock)
    : label_(std::move(label)),
      total_(std::max<int64_t>(total, 0)),
      bar_(style == Style::kBar || (style == Style::kAuto && ::isatty(STDERR_FILENO) == 1)),
      sink_(std::move(sink)),
      clock_(clock ? std::move(clock) : Clock(steady_seconds)),
      start_(clock_()),
      last_print_(start_) {
  if (!sink_) {
    sink_ = [bar = bar_](const std::string& line, bool is_final) {
      if (bar && !is_final) {
        set_status_line(line);
      } else {
        if (bar) clear_status_line();
        log_message(LogLevel::kInfo, line);
      }
    };
  }
}

Progress::~Progress() { finish(); }

std::string Progress::render(bool with_bar) const {
  const double elapsed = clock_() - start_;
  const double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  std::string line = label_;
  if (total_ > 0) {
    const double fraction = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
    if (with_bar) {
      const int filled = static_cast<int>(fraction * kBarWidth);
      line += fmt::format(" [{}{}]", std::string(filled, '#'), std::string(kBarWidth - filled, '.'));
    }
    line += fmt::format(" {}/{} {:3.0f}%", done_, total_, 100.0 * fraction);
  } else {
    line += fmt::format(" {}", done_);
  }
  line += fmt::format(" {:.1f} it/s", rate);
  if (total_ > 0 && rate > 0 && done_ < total_)
    line += " ETA " + format_duration(static_cast<double>(total_ - done_) / rate);
  if (!suffix_.empty()) line += " " + suffix_;
  return line;
}

void Progress::emit(const std::string& line, bool is_final) { sink_(line, is_final); }

void Progress::advance(int64_t n, const std::string& suffix) {
  if (finished_) return;
  done_ += n;
  if (!suffix.empty()) suffix_ = suffix;
  const double now = clock_();
  if (bar_) {
    if (now - last_print_ >= kRedrawSeconds || done_ == total_) {
      last_print_ = now;
      emit(render(true), false);
    }
    return;
  }
  bool due = now - last_print_ >= kMaxSilenceSeconds;
  if (total_ > 0) {
    const int decile = static_cast<int>(10 * done_ / total_);
    if (decile >= next_decile_ && done_ < total_) {
      next_decile_ = decile + 1;
      due = true;
    }
  }
  if (due && done_ != total_) {
    last_print_ = now;
    emit(render(false), false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  const double elapsed = clock_() - start_;
  const double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  std::string line = fmt::format("{} {} done in {} ({:.1f} it/s)", label_, done_,
                                 format_duration(elapsed), rate);
  if (!suffix_.empty()) line += " " + suffix_;
  emit(line, true);
}

}  // namespace pneumo::core
