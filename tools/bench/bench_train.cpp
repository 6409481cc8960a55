// Benchmark (not a test): one training step (forward, BCE + soft Dice or BCE, backward, Adam)
// per model family, pneumo against PyTorch eager in Python (tools/bench/train_python.py) on
// the same network, initial weights, batch and threads, in one run; with each side's peak
// memory (the process's maximum resident set, LibTorch included on both sides).
//
//   bench_train [--size 256] [--batch 4] [--steps 5] [--threads 2] [--channels-last]
//               [--models unet,unet++,attention_unet,double_unet,classifier]
//               [--device cpu|cuda] [--amp [--amp-dtype float16|bfloat16]] [--compile]
//               [--python .venv/bin/python] [--profile PREFIX]
//
// On a GPU (--device cuda) both sides synchronise the device at each phase boundary; --amp runs
// forward passes under autocast on both sides (pneumo's runtime.mixed_precision, torch.autocast
// in Python): float16 with a loss scaler (CUDA), or bfloat16 without one (CUDA or the CPU);
// --compile adds torch.compile on the Python side.
// Memory is the processes' resident peak (host memory) on any device. The same run measures the
// machine's convolution peak (convolution_peak.h) and prints pneumo's achieved GFLOP/s per step
// (the step's FLOPs, forward and backward, counted by PyTorch's FlopCounterMode on the Python
// side's identical network) and its share of that peak.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <cstdio>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/cuda.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include "bench_summary.h"
#include "convolution_peak.h"
#include "pneumo/core/memory.h"
#include "pneumo/core/runtime.h"
#include "pneumo/core/sections.h"
#include "pneumo/models/model_section.h"
#include "pneumo/models/network.h"
#include "pneumo/models/weights.h"
#include "pneumo/train/losses.h"
#include "pneumo/train/mixed_precision.h"

using namespace pneumo;
namespace fs = std::filesystem;

namespace {

models::ModelSection section_of(const std::string& name) {
  models::ModelSection s;
  s.encoder.in_channels = 3;
  if (name == "classifier") {
    s.name = "classifier";
    s.encoder.name = "densenet121";
  } else if (name == "double_unet") {
    s.name = name;
    s.encoder.name = "vgg19";
  } else {  // unet, unet++, attention_unet
    s.name = name;
    s.encoder.name = "resnet34";
  }
  return s;
}

// Medians over the timed steps: the whole step and its phases (the network's forward pass, the
// loss, the backward pass, the optimiser's step and zero_grad), and the peak resident memory.
struct Timing {
  double step_ms = 0, forward_ms = 0, loss_ms = 0, backward_ms = 0, optimizer_ms = 0, peak_rss_mb = 0;
  double gflop_per_step = 0;  // the Python side's count (forward and backward), the same network
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

struct Setup {
  int size = 256, batch = 4, steps = 5, threads = 2;
  bool amp = false, compile = false;
  std::string channels_last = "auto";  // as runtime.channels_last: auto, true or false
  std::string device = "cpu";
  std::string amp_dtype = "float16";
  std::string python = PNEUMO_PYTHON;
  std::string profile;  // pneumo's last timed step as a Chrome trace (LibTorch's profiler), per model
};

// Runs in a child process, so that its peak memory is its own (and CUDA starts there, after the fork).
Timing pneumo_steps(const std::string& name, const Setup& setup, const fs::path& weights) {
  const int size = setup.size, batch = setup.batch;
  const c10::Device device(setup.device);
  const bool cuda = device.is_cuda();
  // Phase boundaries wait for the device, as the Python side's do.
  const auto since = [&](std::chrono::steady_clock::time_point start) {
    if (cuda) torch::cuda::synchronize();
    return ms_since(start);
  };
  torch::manual_seed(0);
  auto net = models::build_model(section_of(name));
  models::load_weights(*net, models::read_weights(weights), true, weights.string());
  net->to(device);
  const bool channels_last = setup.channels_last == "true";  // resolved for this network in main()
  if (channels_last) models::use_channels_last(*net);  // as pneumo's runtime.channels_last does
  net->train();
  torch::optim::Adam optimizer(net->parameters(), torch::optim::AdamOptions(1e-4));
  core::RuntimeSection runtime;  // as a run's runtime section would ask
  runtime.mixed_precision = setup.amp;
  runtime.mixed_precision_dtype = setup.amp_dtype;
  const train::MixedPrecision precision = train::mixed_precision_for(runtime, device);
  train::GradScaler scaler(precision.needs_loss_scaling());
  torch::Tensor x = torch::rand({batch, 3, size, size}).to(device);
  if (channels_last) x = models::to_channels_last(x);
  const torch::Tensor masks = (torch::rand({batch, 1, size, size}) > 0.7).to(torch::kFloat32).to(device);
  const torch::Tensor labels = (torch::rand({batch, 1}) > 0.5).to(torch::kFloat32).to(device);
  train::ComboLossOptions combo;  // BCE + soft Dice (smooth 1), as the Python side
  std::vector<double> step, forward, loss_ms, backward, optimise;
  for (int i = 0; i < setup.steps + 2; ++i) {
    std::unique_ptr<torch::autograd::profiler::RecordProfile> profile;
    if (!setup.profile.empty() && i == setup.steps + 1)
      profile = std::make_unique<torch::autograd::profiler::RecordProfile>(setup.profile + "." + name + ".json");
    const auto start = std::chrono::steady_clock::now();
    models::ModelOutput out;
    {
      train::AutocastScope autocast(precision);
      out = net->forward(x);
    }
    const double after_network = since(start);
    const torch::Tensor loss = name == "classifier" ? train::bce_loss(out.logits.to(torch::kFloat32), labels)
                                                     : train::combo_loss(out.masks.to(torch::kFloat32), masks, combo);
    const double after_loss = since(start);
    scaler.scale(loss).backward();
    const double after_backward = since(start);
    const bool finite = scaler.unscale(net->parameters());
    if (finite) optimizer.step();
    scaler.update(finite);
    optimizer.zero_grad();
    const double after_optimiser = since(start);
    if (i < 2) continue;  // warm-up
    step.push_back(after_optimiser);
    forward.push_back(after_network);
    loss_ms.push_back(after_loss - after_network);
    backward.push_back(after_backward - after_loss);
    optimise.push_back(after_optimiser - after_backward);
  }
  return {median(step), median(forward), median(loss_ms), median(backward), median(optimise), 0};
}

Timing pneumo_timing(const std::string& name, const Setup& setup, const fs::path& weights) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(pipe_fds[0]);
    Timing t;
    try {
      t = pneumo_steps(name, setup, weights);
    } catch (const std::exception& e) {
      fmt::print(stderr, "pneumo side: {}\n", e.what());
      ::_exit(1);
    }
    const std::string text =
        fmt::format("{} {} {} {} {}", t.step_ms, t.forward_ms, t.loss_ms, t.backward_ms, t.optimizer_ms);
    if (::write(pipe_fds[1], text.data(), text.size()) < 0) ::_exit(2);
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  char buffer[256] = {};
  const ssize_t n = ::read(pipe_fds[0], buffer, sizeof buffer - 1);
  ::close(pipe_fds[0]);
  int status = 0;
  struct rusage usage {};
  ::wait4(child, &status, 0, &usage);
  if (n <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("the pneumo side failed");
  Timing t;
  std::istringstream(std::string(buffer, static_cast<size_t>(n))) >> t.step_ms >> t.forward_ms >> t.loss_ms >>
      t.backward_ms >> t.optimizer_ms;
  t.peak_rss_mb = static_cast<double>(usage.ru_maxrss) / 1024.0;
  return t;
}

Timing python_timing(const std::string& name, const Setup& setup, const fs::path& weights) {
  const std::string command =
      fmt::format("{} {}/tools/bench/train_python.py {} {} {} {} {} {} {} {} {}", setup.python, PNEUMO_SOURCE_DIR, name,
                  weights.string(), setup.size, setup.batch, setup.steps, setup.threads, setup.device,
                  setup.amp ? setup.amp_dtype : "0", setup.compile ? 1 : 0);
  FILE* pipe = ::popen(command.c_str(), "r");
  std::string output;
  for (char buffer[4096]; pipe && std::fgets(buffer, sizeof buffer, pipe);) output += buffer;
  if (!pipe || ::pclose(pipe) != 0) throw std::runtime_error("the Python side failed: " + output);
  const auto j = nlohmann::json::parse(output);
  return {j["ms_per_step"].get<double>(), j["forward_ms"].get<double>(), j["loss_ms"].get<double>(),
          j["backward_ms"].get<double>(), j["optimizer_ms"].get<double>(), j["peak_rss_mb"].get<double>(),
          j.value("gflop_per_step", 0.0)};
}

}  // namespace

int main(int argc, char** argv) {
  pneumo::core::keep_freed_memory();  // as the pneumo program runs
  CLI::App app("pneumo training-step benchmark: pneumo vs PyTorch eager in Python, same networks and weights");
  Setup setup;
  int& size = setup.size;
  int& batch = setup.batch;
  int& steps = setup.steps;
  int& threads = setup.threads;
  const std::vector<std::string> families{"unet", "unet++", "attention_unet", "double_unet", "classifier"};
  std::vector<std::string> names = families;
  app.add_option("--size", size, "image size")->check(CLI::Range(32, 1024));
  app.add_option("--batch", batch, "images per step")->check(CLI::Range(1, 64));
  app.add_option("--steps", steps, "timed steps (after 2 warm-up steps); the median is reported")->check(CLI::Range(1, 100));
  app.add_option("--threads", threads, "CPU threads for both sides")->check(CLI::Range(1, 256));
  app.add_option("--models", names, "any of unet, unet++, attention_unet, double_unet, classifier")
      ->delimiter(',')
      ->check(CLI::IsMember(families));
  app.add_flag_callback("--channels-last", [&setup] { setup.channels_last = "true"; },
                        "pneumo side: NHWC weights and inputs for every model (runtime.channels_last: true)");
  app.add_flag_callback("--nchw", [&setup] { setup.channels_last = "false"; },
                        "pneumo side: NCHW for every model (runtime.channels_last: false); without either flag the "
                        "memory order is pneumo's default (auto), printed per model");
  app.add_option("--device", setup.device, "cpu or cuda (both sides)")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_flag("--amp", setup.amp, "autocast on both sides (a loss scaler with float16)");
  app.add_option("--amp-dtype", setup.amp_dtype, "--amp's type: float16 (CUDA) or bfloat16 (CUDA or CPU)")
      ->check(CLI::IsMember({"float16", "bfloat16"}))
      ->capture_default_str();
  app.add_flag("--compile", setup.compile, "Python side: torch.compile the network (PyTorch 2.x)");
  app.add_option("--profile", setup.profile,
                 "write pneumo's last timed step per model as a Chrome trace to PREFIX.<model>.json");
  app.add_option("--python", setup.python, "the Python interpreter with torch and torchvision")->capture_default_str();
  std::string summary_path;
  app.add_option("--summary", summary_path, "append the figures as JSON lines to this file (tools/bench.sh)");
  CLI11_PARSE(app, argc, argv);
  if (setup.device == "cuda" && !torch::cuda::is_available()) {
    fmt::print(stderr, "error: --device cuda, but this LibTorch build or machine has no CUDA\n");
    return 1;
  }
  if (setup.amp && setup.device != "cuda" && setup.amp_dtype != "bfloat16") {
    fmt::print(stderr, "error: --amp in float16 needs --device cuda; on the CPU use --amp-dtype bfloat16\n");
    return 1;
  }
  const bench::Summary summary(summary_path);
  core::configure_threads(threads);
  const fs::path dir = fs::temp_directory_path() / fmt::format("pneumo-bench-train-{}", ::getpid());
  fs::create_directories(dir);
  const std::string variant = fmt::format("{}{}{}", setup.device == "cuda" ? ", CUDA" : "",
                                          setup.amp ? ", " + setup.amp_dtype + " autocast" : "",
                                          setup.compile ? ", Python torch.compile" : "");
  fmt::print("training step at {0}x{0}, batch {1}, {2} CPU thread(s), median of {3} steps{5}; {4}; CPU kernels {6}; "
             "pneumo's memory order: runtime.channels_last {7} (Python: NCHW)\n",
             size, batch, threads, steps, core::describe_torch_runtime(), variant, core::cpu_kernel_isa(),
             setup.channels_last);
  fmt::print("{:<32} {:>12} {:>12} {:>8} {:>12} {:>12}\n", "model", "Python ms", "pneumo ms", "ratio", "Python MiB",
             "pneumo MiB");
  std::vector<std::pair<std::string, double>> achieved;  // pneumo's GFLOP/s per model
  for (const std::string& name : names) {
    torch::manual_seed(0);
    const fs::path weights = dir / (name + ".pth");
    const auto initial = models::build_model(section_of(name));
    models::save_weights(*initial, weights);
    // The memory order pneumo's default picks for this network, decided once for the row and the run.
    const bool nhwc = core::resolve_channels_last(setup.channels_last, c10::Device(setup.device), initial->is_segmenter());
    Setup this_model = setup;
    this_model.channels_last = nhwc ? "true" : "false";
    const Timing python = python_timing(name, this_model, weights);
    const Timing ours = pneumo_timing(name, this_model, weights);
    const std::map<std::string, std::string> labels{{"unet", "U-Net/ResNet34"},
                                                    {"unet++", "UNet++/ResNet34"},
                                                    {"attention_unet", "Attention U-Net/ResNet34"},
                                                    {"double_unet", "Double U-Net/VGG19"},
                                                    {"classifier", "DenseNet121 classifier"}};
    const std::string label = labels.at(name) + (nhwc ? " NHWC" : " NCHW");
    fmt::print("{:<32} {:>12.1f} {:>12.1f} {:>7.2f}x {:>12.0f} {:>12.0f}\n", label, python.step_ms, ours.step_ms,
               python.step_ms / ours.step_ms, python.peak_rss_mb, ours.peak_rss_mb);
    achieved.emplace_back(label, python.gflop_per_step / (ours.step_ms / 1000.0));
    const auto phases = [](const Timing& t) {
      return fmt::format("{:.0f}/{:.0f}/{:.0f}/{:.0f}", t.forward_ms, t.loss_ms, t.backward_ms, t.optimizer_ms);
    };
    fmt::print("{:<32} {:>12} {:>12}\n", "  forward/loss/backward/optim.", phases(python), phases(ours));
    std::fflush(stdout);
    const std::string what = fmt::format("{} step, {}x{}, batch {}{}{}", labels.at(name), size, size, batch, variant,
                                         nhwc ? ", channels-last" : "");
    summary.add("training", what, "ms/step", python.step_ms, ours.step_ms, false);
    summary.add("training", what + ", peak memory", "MiB", python.peak_rss_mb, ours.peak_rss_mb, false);
  }
  // The peak last: LibTorch's thread pool must not exist yet when pneumo_timing forks its child
  // (GNU OpenMP hangs in a child forked after its pool started).
  const bool bfloat16 = setup.amp && setup.amp_dtype == "bfloat16";
  const double peak =
      bench::convolution_peak_gflops(c10::Device(setup.device), bfloat16 ? torch::kBFloat16 : torch::kFloat32);
  fmt::print("convolution peak of this machine (3x3, 256 -> 256, 128x128, batch 4, {}): {:.0f} GFLOP/s\n",
             bfloat16 ? "bfloat16" : "float32", peak);
  for (const auto& [label, gflops] : achieved)
    fmt::print("  {:<30} pneumo {:>6.0f} GFLOP/s per step, {:>3.0f}% of the peak\n", label, gflops, 100.0 * gflops / peak);
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
