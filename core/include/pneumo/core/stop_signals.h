// SIGINT and SIGTERM taken synchronously, for long-running commands that stop cleanly: blocked
// in the calling thread for the object's life (and so in every thread started afterwards,
// which inherit the mask: none of them can be killed by one), and waited for with wait().
#pragma once

#include <signal.h>

namespace pneumo::core {

class StopSignals {
 public:
  StopSignals();
  ~StopSignals();  // restores the previous mask
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // Waits up to `seconds` (0: just looks) for SIGINT or SIGTERM; its number, or 0. Logs it.
  int wait(double seconds);

 private:
  sigset_t signals_{}, previous_{};
};

}  // namespace pneumo::core
