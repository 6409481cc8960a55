// Benchmark (not a test): one 1024x1024 JPEG DICOM -> SIIM RLE with U-Net/ResNet34 at 512,
// and the throughput over a folder, pneumo against the Python way (tools/bench/infer_python.py:
// pydicom + OpenCV + segmentation_models_pytorch's U-Net in PyTorch eager + the same
// post-processing) on the same random weights and device, in one run; the two submissions are
// compared row by row. On the CPU the Python side also runs the network with torch.compile, ONNX
// Runtime and OpenVINO (each checked against eager within 1e-4 first, or left out with the
// reason), printed as anchors beside eager.
//
//   bench_infer [--images 16] [--size 512] [--native 1024] [--threads 2] [--repeats 5] [--batch 1] [--workers 1]
//               [--device cpu|cuda] [--cuda-graphs] [--python .venv/bin/python]
//
// On a GPU both sides copy the mask probabilities back to the host for post-processing, so each
// image's time includes the device's work; --cuda-graphs replays pneumo's network as CUDA graphs.
// On a GPU the submissions may differ in a few pixels (the two sides' kernels differ); the run
// fails only when the mean Dice between them is below 0.999 there, on any difference on the CPU.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "bench_summary.h"
#include "benchmark_model.h"
#include "pneumo/core/file_io.h"
#include "pneumo/core/runtime.h"
#include "pneumo/data/demo_set.h"
#include "pneumo/data/rle.h"
#include "pneumo/infer/evaluate.h"
#include "pneumo/infer/predictor.h"

using namespace pneumo;
namespace fs = std::filesystem;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::map<std::string, std::string> read_submission(const fs::path& file) {
  std::map<std::string, std::string> rows;
  std::istringstream in(core::read_text_file(file));
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) rows[line.substr(0, line.find(','))] = line.substr(line.find(',') + 1);
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  pneumo::core::keep_freed_memory();  // as the pneumo program runs
  CLI::App app("pneumo inference benchmark: pneumo vs pydicom + PyTorch eager, U-Net/ResNet34");
  int images = 16, size = 512, native = 1024, threads = 2, repeats = 5, batch = 1, workers = 1;
  app.add_option("--images", images, "DICOMs in the folder")->check(CLI::Range(1, 10000));
  app.add_option("--size", size, "model input size")->check(CLI::Range(64, 2048));
  app.add_option("--native", native, "DICOM rows and columns")->check(CLI::Range(64, 2048));
  app.add_option("--threads", threads, "CPU threads for both sides")->check(CLI::Range(1, 256));
  app.add_option("--repeats", repeats, "single-image runs; the median is reported")->check(CLI::Range(1, 1000));
  app.add_option("--batch", batch, "pipeline: images per forward pass")->check(CLI::Range(1, 64));
  app.add_option("--workers", workers, "pipeline: reader threads")->check(CLI::Range(0, 16));
  std::string device_name = "cpu", python_program = PNEUMO_PYTHON;
  bool cuda_graphs = false;
  app.add_option("--device", device_name, "cpu or cuda (both sides)")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_flag("--cuda-graphs", cuda_graphs, "pneumo side: replay the network as CUDA graphs (--device cuda)");
  app.add_option("--python", python_program, "the Python interpreter with torch, pydicom and OpenCV")
      ->capture_default_str();
  std::string summary_path;
  app.add_option("--summary", summary_path, "append the figures as JSON lines to this file (tools/bench.sh)");
  CLI11_PARSE(app, argc, argv);
  if (device_name == "cuda" && !torch::cuda::is_available()) {
    fmt::print(stderr, "error: --device cuda, but this LibTorch build or machine has no CUDA\n");
    return 1;
  }
  if (cuda_graphs && device_name != "cuda") {
    fmt::print(stderr, "error: --cuda-graphs needs --device cuda\n");
    return 1;
  }

  const fs::path dir = fs::temp_directory_path() / fmt::format("pneumo-bench-infer-{}", ::getpid());
  data::DemoSetOptions demo;
  demo.count = images;
  demo.size = native;
  data::write_demo_set(dir / "set", demo);

  bench::write_benchmark_unet(dir, size);

  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir / "set/dicom")) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());

  // Python.
  std::string command = fmt::format("{} {}/tools/bench/infer_python.py {} {} {} {} {} {}", python_program,
                                    PNEUMO_SOURCE_DIR, (dir / "model.pth").string(), size, threads, repeats,
                                    (dir / "python.csv").string(), device_name);
  for (const auto& f : files) command += " " + f;
  FILE* pipe = ::popen(command.c_str(), "r");
  std::string output;
  for (char buffer[4096]; pipe && std::fgets(buffer, sizeof buffer, pipe);) output += buffer;
  if (!pipe || ::pclose(pipe) != 0) {
    fmt::print(stderr, "the Python side failed:\n{}\n", output);
    return 1;
  }
  const auto python = nlohmann::json::parse(output);

  // pneumo.
  core::configure_threads(threads);
  const c10::Device device(device_name);
  infer::PostprocessSection post;  // threshold 0.5, as the Python side
  post.classifier_threshold = 0.0;
  infer::PredictorOptions predictor_options;
  predictor_options.cuda_graphs = cuda_graphs;
  const infer::Predictor predictor(infer::load_members({{dir / "model.ckpt", 1.0}}, "best", {}, device), post,
                                   predictor_options, device);
  const auto inputs = infer::collect_inputs({dir / "set/dicom"});
  const auto one = [&](const infer::InputFile& file) {
    std::vector<infer::PreparedInput> batch;
    batch.push_back(predictor.prepare(infer::read_input(file, "none")));
    return data::encode_rle(predictor.predict(std::move(batch)).front().mask);
  };
  one(inputs.front());  // warm-up
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    one(inputs.front());
    times.push_back(seconds_since(start));
  }
  std::sort(times.begin(), times.end());
  const double latency_ms = 1000 * times[times.size() / 2];
  auto start = std::chrono::steady_clock::now();
  for (const auto& f : inputs) one(f);
  const double sequential = static_cast<double>(inputs.size()) / seconds_since(start);
  std::string submission = "ImageId,EncodedPixels\n";
  infer::RunOptions run;
  run.batch_size = batch;
  run.workers = workers;
  run.progress_label = "pneumo";
  start = std::chrono::steady_clock::now();
  infer::run_predictor(
      predictor, inputs, run,
      [&](infer::Prediction& p) { submission += p.input.file.id + "," + data::encode_rle(p.mask) + "\n"; },
      [](const infer::InputFile& f, const std::string& m) { fmt::print(stderr, "{}: {}\n", f.path.string(), m); });
  const double pipelined = static_cast<double>(inputs.size()) / seconds_since(start);
  core::write_file_atomic(dir / "pneumo.csv", submission);

  const auto ours = read_submission(dir / "pneumo.csv"), theirs = read_submission(dir / "python.csv");
  int same = 0;
  double dice = 0;
  for (const auto& [id, encoded] : ours) {
    const auto it = theirs.find(id);
    if (it == theirs.end()) continue;
    same += encoded == it->second;
    dice += infer::mask_dice(data::decode_rle(encoded, native, native), data::decode_rle(it->second, native, native));
  }
  const double py_latency = python["latency_ms"].get<double>(), py_rate = python["images_per_second"].get<double>();
  const std::string variant =
      device_name == "cuda" ? fmt::format(", CUDA{}", cuda_graphs ? ", pneumo with CUDA graphs" : "") : "";
  fmt::print("\nU-Net/ResNet34 at {0}x{0}, {1}x{1} JPEG DICOMs, {2} CPU thread(s){4}, {3}\n", size, native, threads,
             core::describe_torch_runtime(), variant);
  fmt::print("{:<58} {:>12} {:>9}\n", "one image, DICOM -> RLE (median of " + std::to_string(repeats) + ")", "ms", "speed-up");
  fmt::print("{:<58} {:>12.1f} {:>8.2f}x\n", "pydicom + OpenCV-Python + PyTorch eager", py_latency, 1.0);
  fmt::print("{:<58} {:>12.1f} {:>8.2f}x\n", "pneumo", latency_ms, py_latency / latency_ms);
  fmt::print("{:<58} {:>12} {:>9}\n", fmt::format("folder of {} images", inputs.size()), "images/s", "speed-up");
  fmt::print("{:<58} {:>12.2f} {:>8.2f}x\n", "pydicom + OpenCV-Python + PyTorch eager, one by one", py_rate, 1.0);
  fmt::print("{:<58} {:>12.2f} {:>8.2f}x\n", "pneumo, one by one", sequential, sequential / py_rate);
  fmt::print("{:<58} {:>12.2f} {:>8.2f}x\n",
             fmt::format("pneumo predict pipeline (batch {}, {} reader thread(s))", batch, workers), pipelined,
             pipelined / py_rate);
  const nlohmann::json anchors = python.value("anchors", nlohmann::json::array());
  if (!anchors.empty()) {
    fmt::print("{:<58} {:>12} {:>9}\n", "anchors: the same Python pipeline, the network run by", "ms | img/s",
               "pneumo's");
    for (const auto& a : anchors) {
      const std::string name = a["name"].get<std::string>();
      if (a.contains("skipped")) {
        fmt::print("  {:<56} left out: {}\n", name, a["skipped"].get<std::string>());
        continue;
      }
      const double ms = a["latency_ms"].get<double>(), rate = a["images_per_second"].get<double>();
      fmt::print("  {:<56} {:>12.1f} {:>8.2f}x  (logits within {:.1g} of eager's, relative)\n", name + ", one image", ms,
                 ms / latency_ms, a["max_abs_diff"].get<double>());
      fmt::print("  {:<56} {:>12.2f} {:>8.2f}x\n", name + ", folder one by one", rate, sequential / rate);
    }
  }
  fmt::print("submissions: {} of {} rows identical, mean Dice between them {:.6f}\n", same, ours.size(),
             dice / static_cast<double>(ours.size()));
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  const double py_peak = python["peak_rss_mb"].get<double>(), peak = static_cast<double>(usage.ru_maxrss) / 1024.0;
  fmt::print("peak memory (maximum resident set): Python {:.0f} MiB, pneumo {:.0f} MiB\n", py_peak, peak);
  const bench::Summary summary(summary_path);
  const std::string what = fmt::format("U-Net/ResNet34 at {}, {}x{} JPEG DICOM -> RLE{}", size, native, native, variant);
  summary.add("inference", what + ", one image", "ms", py_latency, latency_ms, false);
  summary.add("inference", what + fmt::format(", folder of {}", inputs.size()), "images/s", py_rate, pipelined, true);
  summary.add("inference", what + ", peak memory", "MiB", py_peak, peak, false);
  for (const auto& a : anchors) {
    if (a.contains("skipped")) continue;
    const std::string by = ", Python side with " + a["name"].get<std::string>();
    summary.add("inference", what + ", one image" + by, "ms", a["latency_ms"].get<double>(), latency_ms, false);
    summary.add("inference", what + ", folder one by one" + by, "images/s", a["images_per_second"].get<double>(),
                sequential, true);
  }
  const double mean_dice = dice / static_cast<double>(ours.size());
  if (device_name == "cpu" ? same != static_cast<int>(ours.size()) : mean_dice < 0.999) {
    fmt::print(stderr, "the two submissions differ in {} row(s), mean Dice {:.6f}\n", ours.size() - same, mean_dice);
    return 1;
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
