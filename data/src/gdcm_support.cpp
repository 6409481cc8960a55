#include "gdcm_support.h"

#include <gdcmTrace.h>

#include <mutex>

namespace pneumo::data::detail {

void silence_gdcm_traces() {
  static std::once_flag once;
  std::call_once(once, [] {
    gdcm::Trace::SetWarning(false);
    gdcm::Trace::SetError(false);
    gdcm::Trace::SetDebug(false);
  });
}

}  // namespace pneumo::data::detail
