#include "pneumo/core/sections.h"

#include <ATen/Context.h>

#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/core/random.h"

namespace pneumo::core {

c10::Device activate_runtime(const RuntimeSection& runtime, uint64_t seed) {
  if (runtime.deterministic && runtime.cudnn_benchmark)
    throw ConfigError("runtime.cudnn_benchmark picks convolution algorithms by timing, which contradicts "
                      "runtime.deterministic; set one of them to false");
  if (auto level = parse_log_level(runtime.log_level)) set_log_level(*level);
  const c10::Device device = resolve_device(parse_device(runtime.device));
  const int threads = configure_threads(
      runtime.threads == 0 ? plan_threads(hardware_threads(), 1, device.is_cuda()).intra_op : runtime.threads);
  at::globalContext().setDeterministicAlgorithms(runtime.deterministic, /*warn_only=*/false);
  at::globalContext().setDeterministicCuDNN(runtime.deterministic);
  at::globalContext().setBenchmarkCuDNN(runtime.cudnn_benchmark);
  seed_everything(seed);
  log::debug("device {}, {} CPU threads, deterministic {}, cuDNN benchmark {}, seed {}", device.str(), threads,
             runtime.deterministic, runtime.cudnn_benchmark, seed);
  if (runtime.mixed_precision && !device.is_cuda()) {
    if (runtime.mixed_precision_dtype == "float16")
      log::info("runtime.mixed_precision in float16 applies to CUDA only; computing in float32 on the {} "
                "(runtime.mixed_precision_dtype=bfloat16 runs CPU autocast)",
                device.str());
    else if (!cpu_has_bfloat16_instructions())
      log::warn("runtime.mixed_precision in bfloat16: this CPU has no bfloat16 instructions (AVX512-BF16), so "
                "LibTorch emulates them and training is likely slower than in float32");
  }
  return device;
}

}  // namespace pneumo::core
