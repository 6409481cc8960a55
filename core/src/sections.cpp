#include "pneumo/core/sections.h"

#include <ATen/Context.h>

#include "pneumo/core/log.h"
#include "pneumo/core/random.h"

namespace pneumo::core {

c10::Device activate_runtime(const RuntimeSection& runtime, uint64_t seed) {
  if (auto level = parse_log_level(runtime.log_level)) set_log_level(*level);
  const c10::Device device = resolve_device(parse_device(runtime.device));
  const int threads = configure_threads(runtime.threads);
  at::globalContext().setDeterministicAlgorithms(runtime.deterministic, /*warn_only=*/false);
  at::globalContext().setDeterministicCuDNN(runtime.deterministic);
  at::globalContext().setBenchmarkCuDNN(false);
  seed_everything(seed);
  log::debug("device {}, {} CPU threads, deterministic {}, seed {}", device.str(), threads,
             runtime.deterministic, seed);
  return device;
}

}  // namespace pneumo::core
