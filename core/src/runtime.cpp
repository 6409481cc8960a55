#include "pneumo/core/runtime.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <string_view>
#include <thread>

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <fmt/format.h>

#include "pneumo/core/config_schema.h"
#include "pneumo/core/error.h"

namespace pneumo::core {

namespace {
constexpr const char* kDeviceChoices = "auto, cpu, cuda or cuda:N (N = GPU index)";

bool parse_cuda_index(std::string_view digits, int& index) {
  if (digits.empty()) return false;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
  return ec == std::errc() && end == digits.data() + digits.size() && index >= 0;
}
}  // namespace

std::string DeviceSpec::str() const {
  switch (type) {
    case Type::kAuto: return "auto";
    case Type::kCpu: return "cpu";
    case Type::kCuda: return index < 0 ? "cuda" : fmt::format("cuda:{}", index);
  }
  return "?";
}

bool is_device_name(std::string_view text) {
  int index = 0;
  return text == "auto" || text == "cpu" || text == "cuda" ||
         (text.substr(0, 5) == "cuda:" && parse_cuda_index(text.substr(5), index));
}

DeviceSpec parse_device(std::string_view text) {
  if (!is_device_name(text))
    throw ConfigError(fmt::format("unknown device '{}'; expected {}", text, kDeviceChoices));
  DeviceSpec spec;
  if (text == "cpu") {
    spec.type = DeviceSpec::Type::kCpu;
  } else if (text != "auto") {
    spec.type = DeviceSpec::Type::kCuda;
    if (text.size() > 5) parse_cuda_index(text.substr(5), spec.index);
  }
  return spec;
}

c10::Device resolve_device(const DeviceSpec& spec) {
  const bool built_with_cuda = at::hasCUDA();
  const int gpus = built_with_cuda ? static_cast<int>(torch::cuda::device_count()) : 0;
  switch (spec.type) {
    case DeviceSpec::Type::kCpu: return c10::Device(c10::kCPU);
    case DeviceSpec::Type::kAuto:
      return gpus > 0 ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
    case DeviceSpec::Type::kCuda:
      if (!built_with_cuda)
        throw DeviceError(fmt::format(
            "device '{}' requested, but this LibTorch ({}) was built without CUDA; use device "
            "'cpu' or 'auto', or rebuild pneumo against a CUDA LibTorch (see README)",
            spec.str(), TORCH_VERSION));
      if (gpus == 0)
        throw DeviceError(fmt::format(
            "device '{}' requested, but no CUDA GPU is visible (check the driver and "
            "CUDA_VISIBLE_DEVICES)", spec.str()));
      if (spec.index >= gpus)
        throw DeviceError(fmt::format("device '{}' requested, but only {} GPU(s) are visible "
                                      "(cuda:0..cuda:{})", spec.str(), gpus, gpus - 1));
      return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(std::max(spec.index, 0)));
  }
  return c10::Device(c10::kCPU);
}

bool cpu_has_bfloat16_instructions() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16");
#else
  return true;
#endif
}

std::string cpu_kernel_isa() {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  return at::get_cpu_capability();
#elif defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  // LibTorch 2.0 does not say; ATen's rule without its ATEN_CPU_CAPABILITY override.
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq"))
    return "AVX512";
  return __builtin_cpu_supports("avx2") ? "AVX2" : "DEFAULT";
#else
  return "DEFAULT";
#endif
}

bool channels_last_by_default(const c10::Device& device, bool segmenter) {
  if (!device.is_cpu()) return false;
  return cpu_kernel_isa() == "AVX512" || !segmenter;
}

bool resolve_channels_last(const std::string& setting, const c10::Device& device, bool segmenter) {
  if (setting == "auto") return channels_last_by_default(device, segmenter);
  bool on = false;
  if (!config_detail::parse_scalar(setting, on))
    throw ConfigError(fmt::format("runtime.channels_last: invalid value '{}'; expected auto, true or false", setting));
  return on;
}

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

ThreadPlan plan_threads(int cores, int processes_on_machine, bool cuda) {
  const int share = std::max(1, cores / std::max(1, processes_on_machine));
  ThreadPlan plan;
  if (cuda) {
    plan.loader_workers = std::max(1, share * 3 / 4);
    plan.intra_op = std::max(1, share - plan.loader_workers);
  } else {
    plan.intra_op = share;
    plan.loader_workers = 1;
  }
  return plan;
}

int configure_threads(int requested) {
  if (requested < 0)
    throw ConfigError(fmt::format("thread count must be >= 0 (0 = one per core); got {}",
                                  requested));
  const int threads = requested == 0 ? hardware_threads() : requested;
  at::set_num_threads(threads);
  return threads;
}

std::string describe_torch_runtime() {
  const bool cuda = at::hasCUDA();
  const int gpus = cuda ? static_cast<int>(torch::cuda::device_count()) : 0;
  return fmt::format("LibTorch {} (CUDA {}, cuDNN {}, {} GPU(s) visible, {} CPU threads)",
                     TORCH_VERSION, cuda ? "built in" : "not built in",
                     at::Context::hasCuDNN() ? "built in" : "not built in", gpus, at::get_num_threads());
}

}  // namespace pneumo::core
