#include <catch2/catch.hpp>

#include <malloc.h>

#include <cstdlib>
#include <cstring>

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "pneumo/core/error.h"
#include "pneumo/core/memory.h"
#include "pneumo/core/runtime.h"
#include "pneumo/core/sections.h"

using namespace pneumo::core;
using Catch::Matchers::Contains;

TEST_CASE("device names parse to device specs") {
  CHECK(parse_device("auto").type == DeviceSpec::Type::kAuto);
  CHECK(parse_device("cpu").type == DeviceSpec::Type::kCpu);
  CHECK(parse_device("cuda").index == -1);
  CHECK(parse_device("cuda:3").index == 3);
  CHECK(parse_device("cuda:3").str() == "cuda:3");
  for (const char* bad : {"gpu", "cuda:", "cuda:-1", "cuda:x", "CPU", ""}) {
    INFO(bad);
    CHECK_FALSE(is_device_name(bad));
    CHECK_THROWS_AS(parse_device(bad), ConfigError);
  }
  CHECK_THROWS_WITH(parse_device("gpu"), Contains("unknown device 'gpu'; expected auto, cpu"));
}

TEST_CASE("devices resolve to what is available, and CUDA without a GPU is a clear error") {
  CHECK(resolve_device(parse_device("cpu")).is_cpu());
  const c10::Device automatic = resolve_device(parse_device("auto"));
  if (!at::hasCUDA()) {
    CHECK(automatic.is_cpu());
    CHECK_THROWS_AS(resolve_device(parse_device("cuda")), DeviceError);
    CHECK_THROWS_WITH(resolve_device(parse_device("cuda:1")),
                      Contains("'cuda:1' requested") && Contains("without CUDA"));
  } else {
    CHECK_THROWS_WITH(resolve_device(parse_device("cuda:64")), Contains("GPU(s) are visible"));
  }
}

TEST_CASE("thread settings apply to LibTorch and 0 means one per core") {
  const int before = at::get_num_threads();
  CHECK(configure_threads(1) == 1);
  CHECK(at::get_num_threads() == 1);
  CHECK(configure_threads(0) == hardware_threads());
  CHECK(at::get_num_threads() == hardware_threads());
  CHECK_THROWS_AS(configure_threads(-2), ConfigError);
  configure_threads(before);
}

TEST_CASE("automatic threads: every core computes on the CPU, most cores load with a GPU") {
  // CPU: the network's arithmetic is nearly all of a step; one loader thread reads ahead.
  CHECK(plan_threads(2, 1, false).intra_op == 2);
  CHECK(plan_threads(2, 1, false).loader_workers == 1);
  CHECK(plan_threads(16, 1, false).intra_op == 16);
  // Processes on one machine share its cores.
  CHECK(plan_threads(16, 4, false).intra_op == 4);
  CHECK(plan_threads(2, 4, false).intra_op == 1);
  // GPU: three quarters of the share load and augment.
  CHECK(plan_threads(16, 1, true).loader_workers == 12);
  CHECK(plan_threads(16, 1, true).intra_op == 4);
  CHECK(plan_threads(2, 1, true).loader_workers == 1);
  CHECK(plan_threads(2, 1, true).intra_op == 1);
  CHECK(plan_threads(1, 1, true).intra_op == 1);
  CHECK(plan_threads(64, 8, true).loader_workers == 6);

  RuntimeSection runtime;  // threads: 0, on the CPU
  runtime.device = "cpu";
  const int before = at::get_num_threads();
  activate_runtime(runtime, 1);
  CHECK(at::get_num_threads() == hardware_threads());
  configure_threads(before);
}

TEST_CASE("freed memory stays in the process: large blocks come from the heap, which is not trimmed") {
#if defined(__SANITIZE_ADDRESS__)
  WARN("AddressSanitizer replaces glibc's allocator; skipping");
  return;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  WARN("AddressSanitizer replaces glibc's allocator; skipping");
  return;
#endif
#endif
  REQUIRE(keep_freed_memory());
  constexpr size_t kBlock = size_t{64} << 20;  // above glibc's largest mmap threshold (32 MiB)
  const size_t mapped_before = mallinfo2().hblkhd;
  void* block = std::malloc(kBlock);
  REQUIRE(block != nullptr);
  std::memset(block, 1, kBlock);
  CHECK(mallinfo2().hblkhd == mapped_before);  // not a mapping of its own
  std::free(block);
  CHECK(mallinfo2().fordblks >= kBlock);  // kept, free for the next allocation
  void* again = std::malloc(kBlock);
  CHECK(mallinfo2().hblkhd == mapped_before);
  std::free(again);
}

TEST_CASE("activate_runtime seeds LibTorch so random tensors repeat") {
  RuntimeSection runtime;
  runtime.device = "cpu";
  runtime.threads = 1;
  CHECK(activate_runtime(runtime, 123).is_cpu());
  const at::Tensor first = at::rand({4});
  activate_runtime(runtime, 123);
  CHECK(at::equal(first, at::rand({4})));
  activate_runtime(runtime, 124);
  CHECK_FALSE(at::equal(first, at::rand({4})));
  runtime.device = "cuda:7";
  if (!at::hasCUDA()) CHECK_THROWS_AS(activate_runtime(runtime, 1), DeviceError);
}

TEST_CASE("runtime.channels_last: auto picks the memory order by device and network and true or false are taken as written") {
  const c10::Device cpu(c10::kCPU), cuda(c10::kCUDA, 0);
  CHECK(resolve_channels_last("true", cuda, true));
  CHECK_FALSE(resolve_channels_last("false", cpu, false));
  CHECK(resolve_channels_last("True", cpu, true));
  CHECK_FALSE(resolve_channels_last("auto", cuda, true));  // NCHW on CUDA until measured
  CHECK_FALSE(resolve_channels_last("auto", cuda, false));
  CHECK(resolve_channels_last("auto", cpu, false));  // the classifier: NHWC on every x86 CPU measured
  const std::string isa = cpu_kernel_isa();
  INFO(isa);
  CHECK(resolve_channels_last("auto", cpu, true) == (isa == "AVX512"));
  CHECK_THROWS_WITH(resolve_channels_last("yes", cpu, true), Contains("'yes'") && Contains("auto, true or false"));

  // The key reads old configs (a boolean) and refuses anything else, naming the choices.
  const auto read = [](const std::string& yaml) { return read_section<RuntimeSection>(parse_yaml(yaml, "r.yaml")); };
  CHECK(RuntimeSection{}.channels_last == "auto");
  CHECK(read("channels_last: false").channels_last == "false");
  CHECK(read("channels_last: true").channels_last == "true");
  CHECK(read("channels_last: auto").channels_last == "auto");
  CHECK_THROWS_WITH(read("channels_last: nhwc"), Contains("channels_last") && Contains("auto, true or false"));
}
