// Progress display for long loops. On a terminal: one redrawn line with a bar, rate and ETA.
// Otherwise (CI logs, files): a plain line at every 10% and at least every 30 seconds.
//
//   core::Progress progress("decode", files.size());
//   for (...) { ...; progress.advance(1, fmt::format("loss {:.3f}", loss)); }
//   progress.finish();
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace pneumo::core {

// "0:07", "12:03", "1:02:03".
std::string format_duration(double seconds);

class Progress {
 public:
  enum class Style { kAuto, kBar, kLines };
  using Clock = std::function<double()>;   // seconds, monotonic
  using Sink = std::function<void(const std::string& line, bool is_final)>;

  // kAuto: a bar when stderr is a terminal, lines otherwise. `sink` and `clock` replace the
  // console and the steady clock (tests).
  Progress(std::string label, int64_t total, Style style = Style::kAuto, Sink sink = {},
           Clock clock = {});
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void advance(int64_t n = 1, const std::string& suffix = "");
  // Prints the final line (count, elapsed time, rate). Idempotent; called by the destructor.
  void finish();

  int64_t done() const { return done_; }

 private:
  std::string render(bool with_bar) const;
  void emit(const std::string& line, bool is_final);

  std::string label_;
  int64_t total_;
  bool bar_;
  Sink sink_;
  Clock clock_;
  double start_;
  double last_print_;
  int64_t done_ = 0;
  int next_decile_ = 1;
  std::string suffix_;
  bool finished_ = false;
};

}  // namespace pneumo::core
