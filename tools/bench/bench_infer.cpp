// Benchmark (not a test): one 1024x1024 JPEG DICOM -> SIIM RLE with U-Net/ResNet34 at 512,
// and the throughput over a folder, pneumo against the Python way (tools/bench/infer_python.py:
// pydicom + OpenCV + segmentation_models_pytorch's U-Net in PyTorch eager + the same
// post-processing) on the same random weights and device, in one run; the two submissions are
// compared row by row. On the CPU the Python side also runs the network with torch.compile, ONNX
// Runtime and OpenVINO (each checked against eager within 1e-4 first, or left out with the
// reason), printed as anchors beside eager.
//
//   bench_infer [--images 16] [--size 512] [--native 1024] [--threads 2] [--repeats 5] [--batch 0] [--workers 2]
//               [--device cpu|cuda] [--cuda-graphs] [--python .venv/bin/python]
//
// The pipeline row runs `pneumo predict`'s defaults (batch 0: the CLI's default batch for the
// model and device; 2 reader threads). The same run measures the machine's convolution peak (a
// 3x3 convolution 256 -> 256 channels at 128x128, batch 4, float32: the figure the network's
// convolutions can reach) and prints each pneumo row's achieved GFLOP/s (the network's FLOPs
// counted by PyTorch's FlopCounterMode) and its share of that peak. Where the CPU has bfloat16
// instructions (or on CUDA), the pipeline also runs with `--precision bfloat16`, with its Dice
// against the float32 submission.
//
// On a GPU both sides copy the mask probabilities back to the host for post-processing, so each
// image's time includes the device's work; --cuda-graphs replays pneumo's network as CUDA graphs.
// The submissions may differ in a few pixels (on a GPU the two sides' kernels differ; pneumo runs
// the network with its BatchNorms folded into the convolutions, models/inference_graph.h, which
// rounds differently); the run fails when the mean Dice between them is below 0.999.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "bench_summary.h"
#include "convolution_peak.h"
#include "benchmark_model.h"
#include "pneumo/core/file_io.h"
#include "pneumo/core/memory.h"
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
  int images = 16, size = 512, native = 1024, threads = 2, repeats = 5, batch = 0, workers = 2;
  app.add_option("--images", images, "DICOMs in the folder")->check(CLI::Range(1, 10000));
  app.add_option("--size", size, "model input size")->check(CLI::Range(64, 2048));
  app.add_option("--native", native, "DICOM rows and columns")->check(CLI::Range(64, 2048));
  app.add_option("--threads", threads, "CPU threads for both sides")->check(CLI::Range(1, 256));
  app.add_option("--repeats", repeats, "single-image runs; the median is reported")->check(CLI::Range(1, 1000));
  app.add_option("--batch", batch, "pipeline: images per forward pass (0: pneumo predict's default)")
      ->check(CLI::Range(0, 64));
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
  const int pipeline_batch = batch > 0 ? batch : static_cast<int>(infer::default_batch_size(predictor));
  // The folder through predict's pipeline; the submission's rows by image, and the rate.
  const auto pipeline = [&](const infer::Predictor& p, std::map<std::string, std::string>& rows) {
    infer::RunOptions run;
    run.batch_size = pipeline_batch;
    run.workers = workers;
    run.progress_label = "pneumo";
    const auto begin = std::chrono::steady_clock::now();
    infer::run_predictor(
        p, inputs, run, [&](infer::Prediction& r) { rows[r.input.file.id] = data::encode_rle(r.mask); },
        [](const infer::InputFile& f, const std::string& m) { fmt::print(stderr, "{}: {}\n", f.path.string(), m); });
    return static_cast<double>(inputs.size()) / seconds_since(begin);
  };
  std::map<std::string, std::string> ours;
  const double pipelined = pipeline(predictor, ours);
  // bfloat16 where the CPU has the instructions for it (or on CUDA): rate and agreement.
  double bf16_rate = 0, bf16_dice = 0;
  // (Not when oneDNN is limited to an ISA without bfloat16: tools/bench.sh --isa avx2.)
  const char* max_isa = std::getenv("ONEDNN_MAX_CPU_ISA");
  const bool isa_limited = max_isa != nullptr && std::string(max_isa).rfind("AVX2", 0) == 0;
  const bool bf16 = device.is_cuda() || (core::cpu_has_bfloat16_instructions() && !isa_limited);
  if (bf16) {
    infer::PredictorOptions reduced = predictor_options;
    reduced.precision = "bfloat16";
    const infer::Predictor bf16_predictor(infer::load_members({{dir / "model.ckpt", 1.0}}, "best", {}, device), post,
                                          reduced, device);
    std::map<std::string, std::string> rows;
    bf16_rate = pipeline(bf16_predictor, rows);
    for (const auto& [id, encoded] : ours)
      bf16_dice += infer::mask_dice(data::decode_rle(encoded, native, native), data::decode_rle(rows[id], native, native));
    bf16_dice /= static_cast<double>(ours.size());
  }
  const double peak = bench::convolution_peak_gflops(device, torch::kFloat32);
  const double bf16_peak = bf16 ? bench::convolution_peak_gflops(device, torch::kBFloat16) : 0;

  const auto theirs = read_submission(dir / "python.csv");
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
             fmt::format("pneumo predict pipeline (batch {}{}, {} reader thread(s))", pipeline_batch,
                         batch > 0 ? "" : ": the default", workers),
             pipelined, pipelined / py_rate);
  if (bf16)
    fmt::print("{:<58} {:>12.2f} {:>8.2f}x  ({:.2f}x pneumo float32; Dice to float32 {:.4f})\n",
               "pneumo predict pipeline, --precision bfloat16", bf16_rate, bf16_rate / py_rate, bf16_rate / pipelined,
               bf16_dice);
  const double gflop = python.value("gflop_per_image", 0.0);
  fmt::print("convolution peak of this machine (3x3, 256 -> 256, 128x128, batch 4): {:.0f} GFLOP/s float32{}\n", peak,
             bf16 ? fmt::format(", {:.0f} GFLOP/s bfloat16", bf16_peak) : "");
  if (gflop > 0) {
    const auto share = [&](const char* what, double images_per_second, double of_peak) {
      const double achieved = gflop * images_per_second;
      fmt::print("  {:<56} {:>8.0f} GFLOP/s {:>5.0f}% of peak\n", what, achieved, 100.0 * achieved / of_peak);
    };
    fmt::print("network: {:.1f} GFLOP per image (PyTorch's FlopCounterMode)\n", gflop);
    share("PyTorch eager, one image", 1000.0 / py_latency, peak);
    share("pneumo, one image", 1000.0 / latency_ms, peak);
    share("pneumo predict pipeline (image decoding included)", pipelined, peak);
    if (bf16) share("pneumo predict pipeline, bfloat16 (of the bfloat16 peak)", bf16_rate, bf16_peak);
  }
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
  const double py_peak = python["peak_rss_mb"].get<double>(), peak_rss = static_cast<double>(usage.ru_maxrss) / 1024.0;
  fmt::print("peak memory (maximum resident set): Python {:.0f} MiB, pneumo {:.0f} MiB\n", py_peak, peak_rss);
  const bench::Summary summary(summary_path);
  const std::string what = fmt::format("U-Net/ResNet34 at {}, {}x{} JPEG DICOM -> RLE{}", size, native, native, variant);
  summary.add("inference", what + ", one image", "ms", py_latency, latency_ms, false);
  summary.add("inference", what + fmt::format(", folder of {}", inputs.size()), "images/s", py_rate, pipelined, true);
  summary.add("inference", what + ", peak memory", "MiB", py_peak, peak_rss, false);
  if (bf16)
    summary.add("inference", what + fmt::format(", folder of {}, pneumo bfloat16", inputs.size()), "images/s", py_rate,
                bf16_rate, true);
  for (const auto& a : anchors) {
    if (a.contains("skipped")) continue;
    const std::string by = ", Python side with " + a["name"].get<std::string>();
    summary.add("inference", what + ", one image" + by, "ms", a["latency_ms"].get<double>(), latency_ms, false);
    summary.add("inference", what + ", folder one by one" + by, "images/s", a["images_per_second"].get<double>(),
                sequential, true);
  }
  const double mean_dice = dice / static_cast<double>(ours.size());
  if (mean_dice < 0.999) {
    fmt::print(stderr, "the two submissions differ in {} row(s), mean Dice {:.6f}\n", ours.size() - same, mean_dice);
    return 1;
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
