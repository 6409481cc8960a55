// Benchmark: the SIIM U-Net seed augmentation recipe (configs/augment/unet-baseline.yaml,
// crop sizes scaled to the image) on SIZE x SIZE 8-bit images with their masks: pneumo on 1
// and 2 threads against the same recipe done the Python way (augment_python.py: numpy,
// OpenCV-Python, scipy) on one process, measured in the same run.
//
//   build/bin/bench_augment [--size 512] [--seconds 5]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <opencv2/core/utility.hpp>
#include <opencv2/imgcodecs.hpp>

#include "bench_summary.h"
#include "pneumo/core/runtime.h"
#include "pneumo/augment/pipeline.h"
#include "pneumo/core/error.h"
#include "pneumo/data/demo_set.h"

namespace fs = std::filesystem;
using namespace pneumo;

namespace {

std::string recipe_yaml(int size) {
  return fmt::format(R"(
- HorizontalFlip: {{p: 0.5}}
- ShiftScaleRotate: {{shift_limit: 0.0625, scale_limit: 0.1, rotate_limit: 10,
                     border_mode: constant, value: 0, mask_value: 0, p: 0.5}}
- ElasticTransform: {{alpha: 120, sigma: 6.0, alpha_affine: 3.6, p: 0.3}}
- OneOf:
    p: 0.3
    transforms: [RandomContrast, RandomGamma, RandomBrightness]
- OneOf:
    p: 0.3
    transforms:
      - RandomSizedCrop: {{min_max_height: [{0}, {1}], height: {1}, width: {1}, p: 0.5}}
      - CLAHE: {{clip_limit: 2, p: 0.5}}
- ToFloat: {{max_value: 255}}
)",
                     size * 11 / 16, size);
}

double pneumo_rate(const augment::Pipeline& pipeline, const cv::Mat& image, const cv::Mat& mask,
                   int threads, double seconds) {
  std::atomic<long> done{0};
  std::atomic<bool> stop{false};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      for (uint64_t i = 0; !stop; ++i) {
        augment::Target target{image, mask};
        core::Rng rng = core::Rng::for_sample(0, static_cast<uint64_t>(t), i);
        pipeline.apply(target, rng);
        ++done;
      }
    });
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  stop = true;
  for (auto& w : workers) w.join();
  return done / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double python_rate(int size, double seconds, const fs::path& image, const fs::path& mask) {
  const std::string command =
      fmt::format("/usr/bin/python3 {}/tools/bench/augment_python.py {} {} '{}' '{}'",
                  PNEUMO_SOURCE_DIR, size, seconds, image.string(), mask.string());
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) throw core::Error("cannot start the Python reference");
  char line[64] = {};
  const bool got = std::fgets(line, sizeof line, pipe) != nullptr;
  if (::pclose(pipe) != 0 || !got) throw core::Error("the Python reference failed: " + command);
  return std::stod(line);
}

}  // namespace

int main(int argc, char** argv) {
  pneumo::core::keep_freed_memory();  // as the pneumo program runs
  CLI::App app{"Seed augmentation recipe: pneumo against the Python way"};
  int size = 512;
  double seconds = 5;
  app.add_option("--size", size, "image size")->capture_default_str()->check(CLI::Range(64, 4096));
  app.add_option("--seconds", seconds, "measuring time per row")->capture_default_str();
  std::string summary_path;
  app.add_option("--summary", summary_path, "append the figures as JSON lines to this file (tools/bench.sh)");
  CLI11_PARSE(app, argc, argv);
  cv::setNumThreads(1);  // each worker is one core, as loader threads are
  try {
    data::DemoSetOptions demo;
    demo.size = size;
    demo.positive_fraction = 1.0;
    const data::DemoRadiograph radiograph = data::render_demo_radiograph(demo, 0);
    const fs::path dir = fs::temp_directory_path() / fmt::format("pneumo-bench-augment-{}", ::getpid());
    fs::create_directories(dir);
    cv::imwrite((dir / "image.png").string(), radiograph.image);
    cv::imwrite((dir / "mask.png").string(), radiograph.mask);
    const augment::Pipeline pipeline = augment::Pipeline::from_config(
        core::parse_yaml(recipe_yaml(size), "recipe"), "recipe");

    fmt::print("seed recipe (unet-baseline) on {0}x{0} 8-bit image + mask, {1} s per row, {2} hardware threads\n",
               size, seconds, std::thread::hardware_concurrency());
    const double python = python_rate(size, seconds, dir / "image.png", dir / "mask.png");
    const double one = pneumo_rate(pipeline, radiograph.image, radiograph.mask, 1, seconds);
    const double two = pneumo_rate(pipeline, radiograph.image, radiograph.mask, 2, seconds);
    fs::remove_all(dir);
    fmt::print("{:<44} {:>10} {:>10}\n", "", "images/s", "vs Python");
    fmt::print("{:<44} {:>10.1f} {:>9.2f}x\n", "numpy + OpenCV-Python + scipy (1 process)", python, 1.0);
    fmt::print("{:<44} {:>10.1f} {:>9.2f}x\n", "pneumo, 1 thread", one, one / python);
    fmt::print("{:<44} {:>10.1f} {:>9.2f}x\n", "pneumo, 2 threads", two, two / python);
    fmt::print("thread scaling 1 -> 2: {:.2f}x\n", two / one);
    const bench::Summary summary(summary_path);
    const std::string what = fmt::format("augmentation, seed recipe at {}", size);
    summary.add("data", what + ", 1 thread", "images/s", python, one, true);
    summary.add("data", what + ", 2 threads", "images/s", python, two, true);
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
