// The configuration sections core owns: `experiment` (identity, output folder, seed) and
// `runtime` (device, threads, determinism, logging).
#pragma once

#include <cstdint>
#include <string>

#include <c10/core/Device.h>

#include "pneumo/core/config_schema.h"
#include "pneumo/core/runtime.h"

namespace pneumo::core {

struct ExperimentSection {
  std::string name = "experiment";
  std::string output_dir = "runs";
  std::string run_name;  // empty: a timestamp
  int64_t seed = 42;

  template <class V>
  void visit(V& v) {
    v("name", name, "experiment name; runs go to <output_dir>/<name>/<run_name>/", non_empty());
    v("output_dir", output_dir, "folder holding all runs", non_empty());
    v("run_name", run_name, "this run's folder name; empty for a timestamp");
    v("seed", seed, "seed of every random choice (splits, sampling, augmentation, init)",
      at_least<int64_t>(0));
  }
};

struct RuntimeSection {
  std::string device = "auto";
  int threads = 0;
  bool deterministic = false;
  bool cudnn_benchmark = false;
  bool mixed_precision = false;
  std::string mixed_precision_dtype = "float16";
  std::string channels_last = "auto";
  std::string log_level = "info";

  template <class V>
  void visit(V& v) {
    v("device", device, "where to compute",
      Check<std::string>{"auto, cpu, cuda or cuda:N", [](const std::string& d) {
                           return is_device_name(d);
                         }});
    v("threads", threads,
      "LibTorch intra-op CPU threads; 0 = auto: every core on the CPU, a quarter of them with a GPU "
      "(the rest load data; see data.workers), shared among the processes of a distributed run",
      at_least(0));
    v("deterministic", deterministic,
      "use only deterministic kernels (bitwise repeatable runs, sometimes slower)");
    v("cudnn_benchmark", cudnn_benchmark,
      "CUDA: let cuDNN time its convolution algorithms and keep the fastest (fixed input sizes; "
      "not with deterministic)");
    v("mixed_precision", mixed_precision,
      "compute in a 16-bit float type where safe (autocast): float16 on CUDA with dynamic loss "
      "scaling, or bfloat16 on CUDA or the CPU (see mixed_precision_dtype)");
    v("mixed_precision_dtype", mixed_precision_dtype,
      "the autocast type: float16 (CUDA only; the CPU computes in float32) or bfloat16 (CUDA and "
      "CPU; no loss scaling, float32's range; fast on CPUs with AVX512-BF16 or AMX)",
      one_of({"float16", "bfloat16"}));
    v("channels_last", channels_last,
      "train with images and convolution weights in NHWC memory order: true, false, or auto (by "
      "measurement: on the CPU for every network where LibTorch's kernels use AVX-512, for the "
      "classifier with AVX2; NCHW on CUDA)",
      auto_or_bool());
    v("log_level", log_level, "console and run-log verbosity",
      one_of({"debug", "info", "warn", "error"}));
  }
};

// Applies a runtime section and seed: log level, thread count, determinism, cuDNN
// benchmarking, all seeds. Returns the resolved device (DeviceError if it is unavailable;
// ConfigError for contradictory settings).
c10::Device activate_runtime(const RuntimeSection& runtime, uint64_t seed);

}  // namespace pneumo::core
