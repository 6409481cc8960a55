#include "pneumo/core/memory.h"

#include <malloc.h>

#include <cstdlib>
#include <limits>
#include <string_view>

namespace pneumo::core {

bool keep_freed_memory() {
  const char* opt_out = std::getenv("PNEUMO_RELEASE_MEMORY");
  if (opt_out != nullptr && std::string_view(opt_out) == "1") return false;
#if defined(__GLIBC__)
  // No mappings of their own for large blocks (they come from the heap), and no trimming.
  return ::mallopt(M_MMAP_MAX, 0) == 1 && ::mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max()) == 1;
#else
  return false;
#endif
}

void return_freed_memory() {
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
}

}  // namespace pneumo::core
