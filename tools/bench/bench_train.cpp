// Benchmark (not a test): one training step (forward, BCE + soft Dice or BCE, backward, Adam)
// per model family, pneumo against PyTorch eager in Python (tools/bench/train_python.py) on
// the same network, initial weights, batch and threads, in one run; with each side's peak
// memory (the process's maximum resident set, LibTorch included on both sides).
//
//   bench_train [--size 256] [--batch 4] [--steps 5] [--threads 2] [--channels-last]
//               [--models unet,unet++,attention_unet,double_unet,classifier]
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <cstdio>
#include <sstream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "bench_summary.h"
#include "pneumo/core/runtime.h"
#include "pneumo/models/model_section.h"
#include "pneumo/models/network.h"
#include "pneumo/models/weights.h"
#include "pneumo/train/losses.h"

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
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// Runs in a child process, so that its peak memory is its own.
Timing pneumo_steps(const std::string& name, int size, int batch, int steps, const fs::path& weights,
                    bool channels_last) {
  torch::manual_seed(0);
  auto net = models::build_model(section_of(name));
  models::load_weights(*net, models::read_weights(weights), true, weights.string());
  if (channels_last) models::use_channels_last(*net);  // as pneumo's runtime.channels_last does
  net->train();
  torch::optim::Adam optimizer(net->parameters(), torch::optim::AdamOptions(1e-4));
  torch::Tensor x = torch::rand({batch, 3, size, size});
  if (channels_last) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
  const torch::Tensor masks = (torch::rand({batch, 1, size, size}) > 0.7).to(torch::kFloat32);
  const torch::Tensor labels = (torch::rand({batch, 1}) > 0.5).to(torch::kFloat32);
  train::ComboLossOptions combo;  // BCE + soft Dice (smooth 1), as the Python side
  std::vector<double> step, forward, loss_ms, backward, optimise;
  for (int i = 0; i < steps + 2; ++i) {
    const auto start = std::chrono::steady_clock::now();
    const models::ModelOutput out = net->forward(x);
    const double after_network = ms_since(start);
    const torch::Tensor loss = name == "classifier" ? train::bce_loss(out.logits, labels)
                                                     : train::combo_loss(out.masks, masks, combo);
    const double after_loss = ms_since(start);
    loss.backward();
    const double after_backward = ms_since(start);
    optimizer.step();
    optimizer.zero_grad();
    const double after_optimiser = ms_since(start);
    if (i < 2) continue;  // warm-up
    step.push_back(after_optimiser);
    forward.push_back(after_network);
    loss_ms.push_back(after_loss - after_network);
    backward.push_back(after_backward - after_loss);
    optimise.push_back(after_optimiser - after_backward);
  }
  return {median(step), median(forward), median(loss_ms), median(backward), median(optimise), 0};
}

Timing pneumo_timing(const std::string& name, int size, int batch, int steps, const fs::path& weights,
                     bool channels_last) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(pipe_fds[0]);
    const Timing t = pneumo_steps(name, size, batch, steps, weights, channels_last);
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

Timing python_timing(const std::string& name, int size, int batch, int steps, int threads, const fs::path& weights) {
  const std::string command = fmt::format("/usr/bin/python3 {}/tools/bench/train_python.py {} {} {} {} {} {}",
                                          PNEUMO_SOURCE_DIR, name, weights.string(), size, batch, steps, threads);
  FILE* pipe = ::popen(command.c_str(), "r");
  std::string output;
  for (char buffer[4096]; pipe && std::fgets(buffer, sizeof buffer, pipe);) output += buffer;
  if (!pipe || ::pclose(pipe) != 0) throw std::runtime_error("the Python side failed: " + output);
  const auto j = nlohmann::json::parse(output);
  return {j["ms_per_step"].get<double>(), j["forward_ms"].get<double>(), j["loss_ms"].get<double>(),
          j["backward_ms"].get<double>(), j["optimizer_ms"].get<double>(), j["peak_rss_mb"].get<double>()};
}

}  // namespace

int main(int argc, char** argv) {
  pneumo::core::keep_freed_memory();  // as the pneumo program runs
  CLI::App app("pneumo training-step benchmark: pneumo vs PyTorch eager in Python, same networks and weights");
  int size = 256, batch = 4, steps = 5, threads = 2;
  const std::vector<std::string> families{"unet", "unet++", "attention_unet", "double_unet", "classifier"};
  std::vector<std::string> names = families;
  bool channels_last = false;
  app.add_option("--size", size, "image size")->check(CLI::Range(32, 1024));
  app.add_option("--batch", batch, "images per step")->check(CLI::Range(1, 64));
  app.add_option("--steps", steps, "timed steps (after 2 warm-up steps); the median is reported")->check(CLI::Range(1, 100));
  app.add_option("--threads", threads, "CPU threads for both sides")->check(CLI::Range(1, 256));
  app.add_option("--models", names, "any of unet, unet++, attention_unet, double_unet, classifier")
      ->delimiter(',')
      ->check(CLI::IsMember(families));
  app.add_flag("--channels-last", channels_last, "pneumo side: NHWC weights and inputs (runtime.channels_last)");
  std::string summary_path;
  app.add_option("--summary", summary_path, "append the figures as JSON lines to this file (tools/bench.sh)");
  CLI11_PARSE(app, argc, argv);
  const bench::Summary summary(summary_path);
  core::configure_threads(threads);
  const fs::path dir = fs::temp_directory_path() / fmt::format("pneumo-bench-train-{}", ::getpid());
  fs::create_directories(dir);
  fmt::print("training step at {0}x{0}, batch {1}, {2} CPU thread(s), median of {3} steps{5}; {4}\n", size, batch,
             threads, steps, core::describe_torch_runtime(), channels_last ? ", pneumo channels-last" : "");
  fmt::print("{:<32} {:>12} {:>12} {:>8} {:>12} {:>12}\n", "model", "Python ms", "pneumo ms", "ratio", "Python MiB",
             "pneumo MiB");
  for (const std::string& name : names) {
    torch::manual_seed(0);
    const fs::path weights = dir / (name + ".pth");
    models::save_weights(*models::build_model(section_of(name)), weights);
    const Timing python = python_timing(name, size, batch, steps, threads, weights);
    const Timing ours = pneumo_timing(name, size, batch, steps, weights, channels_last);
    const std::map<std::string, std::string> labels{{"unet", "U-Net/ResNet34"},
                                                    {"unet++", "UNet++/ResNet34"},
                                                    {"attention_unet", "Attention U-Net/ResNet34"},
                                                    {"double_unet", "Double U-Net/VGG19"},
                                                    {"classifier", "DenseNet121 classifier"}};
    const std::string& label = labels.at(name);
    fmt::print("{:<32} {:>12.1f} {:>12.1f} {:>7.2f}x {:>12.0f} {:>12.0f}\n", label, python.step_ms, ours.step_ms,
               python.step_ms / ours.step_ms, python.peak_rss_mb, ours.peak_rss_mb);
    const auto phases = [](const Timing& t) {
      return fmt::format("{:.0f}/{:.0f}/{:.0f}/{:.0f}", t.forward_ms, t.loss_ms, t.backward_ms, t.optimizer_ms);
    };
    fmt::print("{:<32} {:>12} {:>12}\n", "  forward/loss/backward/optim.", phases(python), phases(ours));
    std::fflush(stdout);
    const std::string what = fmt::format("{} step, {}x{}, batch {}{}", label, size, size, batch,
                                         channels_last ? ", channels-last" : "");
    summary.add("training", what, "ms/step", python.step_ms, ours.step_ms, false);
    summary.add("training", what + ", peak memory", "MiB", python.peak_rss_mb, ours.peak_rss_mb, false);
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return 0;
}
