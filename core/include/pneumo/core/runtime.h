// Where and how computations run: device selection and CPU thread counts.
#pragma once

#include <string>
#include <string_view>

#include <c10/core/Device.h>

namespace pneumo::core {

// A device request as written in a config or on the command line.
struct DeviceSpec {
  enum class Type { kAuto, kCpu, kCuda };
  Type type = Type::kAuto;
  int index = -1;  // cuda:N; -1 = the current CUDA device

  std::string str() const;  // "auto", "cpu", "cuda", "cuda:1"
};

// Parses "auto", "cpu", "cuda" or "cuda:N". Throws ConfigError naming what was expected.
DeviceSpec parse_device(std::string_view text);
bool is_device_name(std::string_view text);

// The concrete device for a request: auto picks CUDA when LibTorch has it and a GPU is
// visible, else the CPU. Asking for CUDA without it throws DeviceError saying why.
c10::Device resolve_device(const DeviceSpec& spec);

// Sets LibTorch's intra-op thread count; 0 means one per hardware core. Returns the count.
int configure_threads(int requested);

// The number of hardware threads (at least 1).
int hardware_threads();

// Whether the CPU has bfloat16 arithmetic instructions (x86 AVX512-BF16). Without them LibTorch
// emulates bfloat16 and CPU autocast in that type is slower than float32. True on other
// architectures, where this is not checked.
bool cpu_has_bfloat16_instructions();

// The instruction set LibTorch's CPU kernels dispatch to, as ATen names it: "AVX512", "AVX2" or
// "DEFAULT" on x86 (ATEN_CPU_CAPABILITY lowers it), another architecture's name elsewhere.
std::string cpu_kernel_isa();

// runtime.channels_last's `auto`: whether a network trains in channels-last (NHWC) memory order
// on `device`, as measured by bench_train (README, Performance): where LibTorch's CPU kernels use
// AVX-512 every family's step is faster in NHWC (2-12%); with AVX2 the classifier's is (9-11%)
// but the segmenters' are 3-32% slower (oneDNN's backward convolutions in NHWC); on CUDA NCHW
// until the GPU issue measures it.
bool channels_last_by_default(const c10::Device& device, bool segmenter);

// runtime.channels_last resolved for one network: "true" or "false" as written, "auto" by
// channels_last_by_default.
bool resolve_channels_last(const std::string& setting, const c10::Device& device, bool segmenter);

// How one process's share of the cores is divided when the experiment leaves it to pneumo
// (runtime.threads: 0, data.workers: auto). On the CPU the network's arithmetic is nearly all
// of a step (reading from the preprocessing cache and augmenting a batch take a few percent of
// it): every core of the share runs LibTorch's intra-op threads and one loader thread prepares
// the next batches. On a GPU the CPU's work is loading and augmenting: three quarters of the
// share load, the rest run LibTorch's CPU-side operations.
struct ThreadPlan {
  int intra_op = 1;
  int loader_workers = 1;
};
ThreadPlan plan_threads(int cores, int processes_on_machine, bool cuda);


// One line: LibTorch version, CUDA/cuDNN availability and GPU count.
std::string describe_torch_runtime();

}  // namespace pneumo::core
