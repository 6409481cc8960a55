#include "pneumo/core/stop_signals.h"

#include <pthread.h>

#include <cmath>
#include <cstring>
#include <ctime>

#include "pneumo/core/log.h"

namespace pneumo::core {

StopSignals::StopSignals() {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGINT);
  sigaddset(&signals_, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals_, &previous_);
}

StopSignals::~StopSignals() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }

int StopSignals::wait(double seconds) {
  const double whole = std::floor(seconds);
  const timespec timeout{static_cast<time_t>(whole), static_cast<long>((seconds - whole) * 1e9)};
  const int signal = sigtimedwait(&signals_, nullptr, &timeout);
  if (signal != SIGINT && signal != SIGTERM) return 0;
  log::info("got signal {} ({}); stopping", signal, strsignal(signal));
  return signal;
}

}  // namespace pneumo::core
