// Benchmark: the SIIM U-Net seed augmentation recipe (configs/augment/unet-baseline.yaml,
// crop sizes scaled to the image) on SIZE x SIZE 8-bit images with their masks: pneumo on 1
// and 2 threads against the same recipe done the Python way (augment_python.py: Albumentations
// 0.4.6's Compose) on one process, measured in the same run. Then the recipe's spatial ops
// (flip, shift-scale-rotate, elastic) per sample in loader threads against the same ops per batch
// on a device (augment.on_device: grid_sample on the CPU or a GPU). Last, the data path of a
// training step, each image read back from the cache of decoded, resized images and put through
// the recipe on one core (pneumo: its preprocessing cache; Python: np.load of a .npy), and the
// cores each side needs to feed one GPU at --gpu-images-per-second.
//
//   build/bin/bench_augment [--size 512] [--seconds 5] [--device cpu|cuda] [--batch 16]
//                           [--gpu-images-per-second 1000]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <thread>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <opencv2/core/utility.hpp>
#include <opencv2/imgcodecs.hpp>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "bench_summary.h"
#include "pneumo/augment/batch_pipeline.h"
#include "pneumo/augment/pipeline.h"
#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"
#include "pneumo/core/memory.h"
#include "pneumo/data/demo_set.h"
#include "pneumo/data/preprocess.h"

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

// A 2-D uint8 array as NumPy's .npy (format 1.0), for the Python side's cache.
void write_npy(const fs::path& file, const cv::Mat& image) {
  std::string header = fmt::format("{{'descr': '|u1', 'fortran_order': False, 'shape': ({}, {}), }}", image.rows,
                                   image.cols);
  header.append(63 - (10 + header.size()) % 64, ' ');  // magic, version and length: 10 bytes; 64-byte aligned
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  const auto length = static_cast<uint16_t>(header.size());
  out += static_cast<char>(length & 0xFF);
  out += static_cast<char>(length >> 8);
  out += header;
  out.append(reinterpret_cast<const char*>(image.data), image.total());
  core::write_file_atomic(file, out);
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

const char* kSpatialOps = R"(
- HorizontalFlip: {p: 0.5}
- ShiftScaleRotate: {shift_limit: 0.0625, scale_limit: 0.1, rotate_limit: 10,
                     border_mode: constant, value: 0, mask_value: 0, p: 0.5}
- ElasticTransform: {alpha: 120, sigma: 6.0, alpha_affine: 3.6, p: 0.3}
)";

// Batches of `batch` copies of the image (one grey channel, as the loader augments it) through
// the device pipeline, images/s including the wait for the device.
double device_rate(const augment::BatchPipeline& ops, const cv::Mat& image, const cv::Mat& mask, int batch,
                   const c10::Device& device, double seconds) {
  cv::Mat image_f, mask_f;
  image.convertTo(image_f, CV_32F, 1.0 / 255.0);
  mask.convertTo(mask_f, CV_32F, 1.0 / 255.0);
  const at::Tensor images = torch::from_blob(image_f.data, {1, 1, image.rows, image.cols}, torch::kFloat32)
                                .repeat({batch, 1, 1, 1}).to(device);
  const at::Tensor masks = torch::from_blob(mask_f.data, {1, 1, mask.rows, mask.cols}, torch::kFloat32)
                               .repeat({batch, 1, 1, 1}).to(device);
  std::vector<int64_t> ids(static_cast<size_t>(batch));
  long done = 0;
  auto run = [&](int64_t epoch) {
    at::Tensor x = images, m = masks;
    std::iota(ids.begin(), ids.end(), 0);
    ops.apply(x, m, ids, 0, epoch, {0.0}, {1.0});
    x.sum().item<double>();  // waits for the device
  };
  run(-1);  // warm-up
  const auto start = std::chrono::steady_clock::now();
  for (int64_t epoch = 0; std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds;
       ++epoch) {
    run(epoch);
    done += batch;
  }
  return done / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The data path on one core: the image read back from pneumo's preprocessing cache (files
// written as make-demo writes them, the cache filled first), then the recipe.
double cached_path_rate(const augment::Pipeline& pipeline, const cv::Mat& mask, int size, double seconds,
                        const fs::path& dir) {
  data::DemoSetOptions demo;
  demo.size = size;
  demo.count = 4;
  const data::DemoSetSummary set = data::write_demo_set(dir / "demo", demo);
  data::PreprocessOptions options;
  options.size = size;
  options.cache_dir = dir / "cache";
  const data::Preprocessor preprocessor(options);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(set.dicom_dir)) files.push_back(e.path());
  for (const fs::path& f : files) preprocessor.prepare(f);  // fills the cache
  long done = 0;
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t i = 0; std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds; ++i) {
    augment::Target target{preprocessor.prepare(files[i % files.size()]).pixels, mask};
    core::Rng rng = core::Rng::for_sample(0, 0, i);
    pipeline.apply(target, rng);
    ++done;
  }
  if (preprocessor.counts().hits < done) throw core::Error("the data path row read past the preprocessing cache");
  return done / std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double python_rate(int size, double seconds, const fs::path& image, const fs::path& mask,
                   const fs::path& cached = {}) {
  const std::string command =
      fmt::format("{} {}/tools/bench/augment_python.py {} {} '{}' '{}' {}", PNEUMO_PYTHON, PNEUMO_SOURCE_DIR, size,
                  seconds, image.string(), mask.string(), cached.empty() ? "" : "'" + cached.string() + "'");
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
  std::string device_name = "cpu";
  app.add_option("--device", device_name, "device of the batch augmentation rows (cpu, cuda)")->capture_default_str();
  int batch = 16;
  app.add_option("--batch", batch, "batch size of the device rows")->capture_default_str()->check(CLI::Range(1, 1024));
  // The assumption until the GPU issue measures it: U-Net/ResNet34 at 512 is 62.5 GFLOP per
  // forward (PyTorch's count), about 190 GFLOP per training image (forward and backward); 1,000
  // images/s is about 20% of an H200's dense bfloat16 peak (989 TFLOP/s).
  double gpu_rate = 1000;
  app.add_option("--gpu-images-per-second", gpu_rate,
                 "training images/s of the GPU to feed (U-Net/ResNet34 at 512; the default is an assumption)")
      ->capture_default_str()->check(CLI::PositiveNumber);
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
    fmt::print("{:<44} {:>10.1f} {:>9.2f}x\n", "Albumentations 0.4.6 (1 process)", python, 1.0);
    fmt::print("{:<44} {:>10.1f} {:>9.2f}x\n", "pneumo, 1 thread", one, one / python);
    fmt::print("{:<44} {:>10.1f} {:>9.2f}x\n", "pneumo, 2 threads", two, two / python);
    fmt::print("thread scaling 1 -> 2: {:.2f}x\n", two / one);

    // The spatial ops alone: in the loader (OpenCV, per sample) or on the device (per batch).
    const c10::Device device(device_name);
    if (device.is_cuda() && !torch::cuda::is_available()) throw core::Error("--device cuda: LibTorch sees no GPU");
    const augment::Pipeline spatial = augment::Pipeline::from_config(core::parse_yaml(kSpatialOps, "spatial"), "spatial");
    const augment::BatchPipeline on_device =
        augment::BatchPipeline::from_config(core::parse_yaml(kSpatialOps, "spatial"), "spatial");
    const double loader_one = pneumo_rate(spatial, radiograph.image, radiograph.mask, 1, seconds);
    const double loader_two = pneumo_rate(spatial, radiograph.image, radiograph.mask, 2, seconds);
    const double batched = device_rate(on_device, radiograph.image, radiograph.mask, batch, device, seconds);
    fmt::print("\nspatial ops only (flip, shift-scale-rotate, elastic) at {0}x{0}:\n", size);
    fmt::print("{:<44} {:>10}\n", "", "images/s");
    fmt::print("{:<44} {:>10.1f}\n", "pneumo loader (OpenCV), 1 thread", loader_one);
    fmt::print("{:<44} {:>10.1f}\n", "pneumo loader (OpenCV), 2 threads", loader_two);
    fmt::print("{:<44} {:>10.1f}\n", fmt::format("pneumo on_device ({}, batch {}, {} threads)", device.str(), batch,
                                                   at::get_num_threads()),
               batched);

    // The data path of training on one core, and the cores one GPU needs.
    const fs::path path_dir = fs::temp_directory_path() / fmt::format("pneumo-bench-path-{}", ::getpid());
    fs::create_directories(path_dir);
    cv::Mat npy_image;
    radiograph.image.copyTo(npy_image);
    const fs::path npy = path_dir / "image.npy";
    write_npy(npy, npy_image);
    cv::imwrite((path_dir / "image.png").string(), radiograph.image);
    cv::imwrite((path_dir / "mask.png").string(), radiograph.mask);
    const double python_path = python_rate(size, seconds, path_dir / "image.png", path_dir / "mask.png", npy);
    const double pneumo_path = cached_path_rate(pipeline, radiograph.mask, size, seconds, path_dir);
    fs::remove_all(path_dir);
    fmt::print("\ndata path on one core (image read back from the cache + seed recipe) at {0}x{0}:\n", size);
    fmt::print("{:<44} {:>10} {:>10}\n", "", "images/s", "vs Python");
    fmt::print("{:<44} {:>10.1f} {:>9.2f}x\n", "np.load + Albumentations recipe", python_path, 1.0);
    fmt::print("{:<44} {:>10.1f} {:>9.2f}x\n", "pneumo preprocessing cache + recipe", pneumo_path,
               pneumo_path / python_path);
    fmt::print("cores to feed one GPU training U-Net/ResNet34 at 512 at {:.0f} images/s{}: Python {:.1f}, pneumo {:.1f}\n",
               gpu_rate, gpu_rate == 1000 ? " (assumed: ~20% of an H200's bf16 peak at ~190 GFLOP/image)" : "",
               gpu_rate / python_path, gpu_rate / pneumo_path);

    const bench::Summary summary(summary_path);
    const std::string what = fmt::format("augmentation, seed recipe at {}", size);
    summary.add("data", what + ", 1 thread", "images/s", python, one, true);
    summary.add("data", what + ", 2 threads", "images/s", python, two, true);
    summary.add("data", fmt::format("data path (cache read + seed recipe) at {}, 1 core", size), "images/s",
                python_path, pneumo_path, true);
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
