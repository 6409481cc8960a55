// `pneumo version`: what this binary is and what it runs on.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.h"
#include "pneumo/core/build_info.h"
#include "pneumo/core/runtime.h"
#include "pneumo/data/library_versions.h"

namespace pneumo::tools {

namespace {

void run_version() {
  fmt::print("pneumo {} ({} build)\n", PNEUMO_VERSION, PNEUMO_BUILD_TYPE);
  fmt::print("{}; compiled against LibTorch {}, CUDA {}\n", core::describe_torch_runtime(),
             PNEUMO_BUILT_TORCH_VERSION, PNEUMO_BUILT_CUDA);
  fmt::print("GDCM {}, OpenCV {}\n", data::gdcm_version(), data::opencv_version());
  fmt::print("yaml-cpp {}, fmt {}.{}.{}, CLI11 {}\n", PNEUMO_BUILT_YAML_CPP_VERSION,
             FMT_VERSION / 10000, FMT_VERSION / 100 % 100, FMT_VERSION % 100,
             PNEUMO_BUILT_CLI11_VERSION);
}

}  // namespace

void setup_version(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand(
      "version", "Print pneumo's version and the LibTorch/CUDA/cuDNN/GDCM/OpenCV it runs on");
  cmd->callback(run_version);
}

}  // namespace pneumo::tools
