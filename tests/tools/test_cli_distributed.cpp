// Data-parallel training as a user runs it: `pneumo launch` with two processes on loopback
// (Gloo), compared with one process; a killed or frozen process; resuming with another number
// of processes; the launcher's own errors.
#include <catch2/catch.hpp>

#include <signal.h>

#include <chrono>
#include <thread>

#include <fmt/format.h>
#include <torch/torch.h>

#include "pneumo/data/demo_set.h"
#include "pneumo/train/checkpoint.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

using pneumo::testing::run_pneumo;
using pneumo::testing::TempDir;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

// A demo set at 64x64 (24 images: 18 for training) and a small U-Net experiment on it. Plain
// SGD without momentum and a small learning rate. Tiny batches make BatchNorm ill-conditioned (float rounding, which
// differs between one process and two as between 1 and 2 CPU threads, grows quickly there),
// so each process keeps at least 2 images per batch.
// NCHW: these tests compare weights reached with different numbers of processes to 1e-3, and
// the NHWC kernels' rounding depends more on the batch per process (1.8e-3 seen after a resume).
fs::path experiment(const TempDir& dir, int epochs = 1, int images = 24) {
  const std::string set = fmt::format("set{}", images);
  if (!fs::exists(dir / set)) {
    pneumo::data::DemoSetOptions demo;
    demo.count = images;
    demo.size = 64;
    pneumo::data::write_demo_set(dir / set, demo);
  }
  return pneumo::testing::write_file(dir / fmt::format("ddp{}.yaml", images), fmt::format(R"(
experiment: {{name: ddp, output_dir: {0}/runs, seed: 3}}
runtime: {{device: cpu, threads: 1, channels_last: false}}
data: {{labels: {0}/{2}/train-rle.csv, images: {0}/{2}/dicom, size: 64, folds: 4, cache: none, workers: 1}}
augment: {{train: [HorizontalFlip]}}
model: {{name: unet, encoder: {{name: resnet18, in_channels: 1}}, decoder_channels: [32, 16, 16, 8, 8], aux_head: true}}
train: {{epochs: {1}, batch_size: 6, optimizer: {{name: sgd, lr: 0.002, momentum: 0}}, schedule: {{name: constant}},
        loss: {{dice_per_image: true}}, distributed: {{timeout_s: 20}}}}
)",
                                                                  dir.path().string(), epochs, set));
}

// The largest difference between two checkpoints' tensors, relative to each tensor's scale;
// optionally only the weights (BatchNorm running statistics sum up every step's rounding).
double largest_difference(const fs::path& a, const fs::path& b, bool weights_only = false) {
  const pneumo::train::Checkpoint x = pneumo::train::read_checkpoint(a), y = pneumo::train::read_checkpoint(b);
  REQUIRE(x.model.size() == y.model.size());
  double worst = 0.0;
  for (size_t i = 0; i < x.model.size(); ++i) {
    REQUIRE(x.model[i].first == y.model[i].first);
    const torch::Tensor p = x.model[i].second.to(torch::kFloat64), q = y.model[i].second.to(torch::kFloat64);
    const std::string& name = x.model[i].first;
    if (p.numel() == 0 || (weights_only && (name.find("running_") != std::string::npos ||
                                             name.find("num_batches") != std::string::npos)))
      continue;
    worst = std::max(worst, ((p - q).abs().max() / (p.abs().max() + 1e-2)).item<double>());
  }
  return worst;
}

std::vector<std::string> launch(const fs::path& config, const std::vector<std::string>& extra) {
  std::vector<std::string> args{"-q", "launch", "--nproc-per-node", "2", "--", "train", config.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// Polls for a file for up to a minute.
bool appears(const fs::path& file) {
  for (int i = 0; i < 1200 && !fs::exists(file); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  return fs::exists(file);
}

}  // namespace

TEST_CASE("two processes train to the weights one process reaches with the same global batch") {
  TempDir dir;
  const auto runs = dir / "runs/ddp";
  // 18 training images in full steps of 6 (3 per process); then 21 in batches of 8, 8 and 5
  // (the last split 2 + 3, weighted), two accumulated per optimiser step.
  const std::vector<std::pair<fs::path, std::vector<std::string>>> variants{
      {experiment(dir), {}},
      {experiment(dir, 1, 28),
       {"--set", "train.batch_size=8", "--set", "train.drop_last=false", "--set", "train.accumulate=2"}}};
  for (const auto& [config, variant] : variants) {
    std::vector<std::string> one{"-q", "train", config.string(), "--set", "experiment.run_name=one", "--overwrite"};
    one.insert(one.end(), variant.begin(), variant.end());
    REQUIRE(run_pneumo(one).exit_code == 0);
    std::vector<std::string> two{"--set", "experiment.run_name=two", "--overwrite"};
    two.insert(two.end(), variant.begin(), variant.end());
    const auto result = run_pneumo(launch(config, two));
    INFO(result.err);
    REQUIRE(result.exit_code == 0);
    CHECK(largest_difference(runs / "one/last.ckpt", runs / "two/last.ckpt") < 1e-3);
    CHECK(pneumo::train::read_checkpoint(runs / "two/last.ckpt").metrics.size() > 0);
    CHECK(fs::exists(runs / "two/metrics.csv"));
  }
  // Per-process BatchNorm statistics normalise each half batch on its own: a different run,
  // which the comparison above tells apart.
  const fs::path config = experiment(dir);
  REQUIRE(run_pneumo({"-q", "train", config.string(), "--set", "experiment.run_name=one", "--overwrite"}).exit_code == 0);
  const auto result = run_pneumo(launch(config, {"--set", "experiment.run_name=own", "--set",
                                                 "train.distributed.sync_batchnorm=false"}));
  REQUIRE(result.exit_code == 0);
  CHECK(largest_difference(runs / "one/last.ckpt", runs / "own/last.ckpt") > 1e-2);
}

TEST_CASE("pneumo launch runs cv: each fold data-parallel on two processes, one report") {
  TempDir dir;
  const fs::path config = experiment(dir), top = dir / "runs/ddp/cv";
  const auto result = run_pneumo({"launch", "--nproc-per-node", "2", "--", "cv", config.string(), "--folds", "0,1",
                                  "--set", "experiment.run_name=cv"});
  INFO(result.err);
  REQUIRE(result.exit_code == 0);
  for (const char* fold : {"fold-0", "fold-1"}) {
    CHECK_THAT(pneumo::testing::read_file(top / fold / "log.txt"), Contains("data-parallel: 2 processes"));
    CHECK(fs::exists(top / fold / "finished.json"));
  }
  CHECK_FALSE(fs::exists(top / "fold-2"));
  CHECK(fs::exists(top / "oof/fold-0.csv"));
  CHECK(fs::exists(top / "oof/fold-1.csv"));
  // The report is printed once, by rank 0.
  const std::string out = result.out;
  CHECK(out.find("# Cross-validation") != std::string::npos);
  CHECK(out.find("# Cross-validation") == out.rfind("# Cross-validation"));
}

TEST_CASE("a data-parallel run resumes from its checkpoint with another number of processes") {
  TempDir dir;
  const fs::path config = experiment(dir, 2);
  const auto runs = dir / "runs/ddp";
  REQUIRE(run_pneumo({"-q", "train", config.string(), "--set", "experiment.run_name=straight"}).exit_code == 0);
  // Epoch 1 on two processes, epoch 2 on one; and the other way round.
  REQUIRE(run_pneumo(launch(config, {"--set", "experiment.run_name=two-one", "--stop-after", "1"})).exit_code == 0);
  REQUIRE(run_pneumo({"-q", "train", "--resume", (runs / "two-one").string()}).exit_code == 0);
  REQUIRE(run_pneumo({"-q", "train", config.string(), "--set", "experiment.run_name=one-two", "--stop-after", "1"})
              .exit_code == 0);
  const auto resumed = run_pneumo({"-q", "launch", "--nproc-per-node", "2", "--", "train", "--resume",
                                   (runs / "one-two").string()});
  INFO(resumed.err);
  REQUIRE(resumed.exit_code == 0);
  CHECK(largest_difference(runs / "straight/last.ckpt", runs / "two-one/last.ckpt", true) < 1e-3);
  CHECK(largest_difference(runs / "straight/last.ckpt", runs / "one-two/last.ckpt", true) < 1e-3);
  CHECK(pneumo::train::read_checkpoint(runs / "one-two/last.ckpt").epoch == 2);
}

TEST_CASE("when one process is killed or freezes, the other stops with an error within the timeout") {
  TempDir dir;
  const fs::path config = experiment(dir, 1000);
  const auto runs = dir / "runs/ddp";
  for (const int signal : {SIGKILL, SIGSTOP}) {
    const std::string name = signal == SIGKILL ? "killed" : "frozen";
    const int port = pneumo::testing::free_tcp_port();
    const auto start = [&](int rank) {
      return pneumo::testing::spawn_logged(
          {PNEUMO_CLI_PATH, "train", config.string(), "--set", "experiment.run_name=" + name, "--set",
           "train.distributed.timeout_s=5"},
          {fmt::format("RANK={}", rank), "WORLD_SIZE=2", fmt::format("LOCAL_RANK={}", rank), "LOCAL_WORLD_SIZE=2",
           "MASTER_ADDR=127.0.0.1", fmt::format("MASTER_PORT={}", port)},
          dir / fmt::format("{}-{}.log", name, rank));
    };
    const int first = start(0), second = start(1);
    const bool trained = appears(runs / name / "last.ckpt");  // one epoch done on both
    ::kill(second, signal);
    const int code = pneumo::testing::wait_for_exit(first, 60.0);
    if (code < 0) ::kill(first, SIGKILL);
    ::kill(second, SIGKILL);
    pneumo::testing::wait_for_exit(second, 10.0);
    if (code < 0) pneumo::testing::wait_for_exit(first, 10.0);
    const std::string log = pneumo::testing::read_file(dir / fmt::format("{}-0.log", name));
    INFO(name << ": " << log);
    CHECK(trained);
    CHECK(code == 1);
    CHECK_THAT(log, Contains("rank 0 of 2") && Contains("failed") && Contains("--resume"));
    if (signal == SIGSTOP) CHECK_THAT(log, Contains("did not answer within 5 s"));
    // The run resumes from the last checkpoint (here on one process, for one more epoch).
    CHECK(run_pneumo({"-q", "train", "--resume", (runs / name).string(), "--stop-after", "1"}).exit_code == 0);
  }
}

TEST_CASE("pneumo launch refuses what it cannot run and passes on exit codes and signals") {
  TempDir dir;
  const fs::path config = experiment(dir, 1000);
  auto r = run_pneumo({"launch", "--nproc-per-node", "2", "--", "version"});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("launch runs `train`"));
  r = run_pneumo({"launch", "--nnodes", "2", "--node-rank", "2", "--", "train", config.string()});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("--node-rank 2 must be below --nnodes 2"));
  r = run_pneumo({"launch", "--nproc-per-node", "2", "--", "train", (dir / "missing.yaml").string()});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("missing.yaml"));
  // A global batch of 6 does not split over 4 processes; lr scaling belongs to per-process batches.
  r = run_pneumo({"launch", "--nproc-per-node", "4", "--", "train", config.string()});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("cannot be split evenly over 4 processes"));
  r = run_pneumo({"train", config.string(), "--set", "train.distributed.lr_scaling=linear"});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("lr_scaling"));
  // SIGTERM to the launcher reaches both processes; it returns once they are gone.
  const int launcher = pneumo::testing::spawn_logged(
      {PNEUMO_CLI_PATH, "launch", "--nproc-per-node", "2", "--", "train", config.string(), "--set",
       "experiment.run_name=signalled"},
      {}, dir / "launch.log");
  const bool started = appears(dir / "runs/ddp/signalled/folds.csv");
  ::kill(launcher, SIGTERM);
  const int code = pneumo::testing::wait_for_exit(launcher, 60.0);
  if (code < 0) ::kill(launcher, SIGKILL);
  INFO(pneumo::testing::read_file(dir / "launch.log"));
  CHECK(started);
  CHECK(code == 128 + SIGTERM);
}

TEST_CASE("two processes train a class-table classifier and validate every class over both shares") {
  TempDir dir;
  pneumo::data::DemoSetOptions demo;
  demo.count = 16;
  demo.size = 64;
  demo.png = true;
  demo.images_per_patient = 2;
  pneumo::data::write_demo_set(dir / "set", demo);
  const fs::path config = pneumo::testing::write_file(dir / "classes.yaml", fmt::format(R"(
base: {1}/configs/demo-classes.yaml
experiment: {{output_dir: {0}/runs, seed: 3}}
runtime: {{device: cpu, threads: 1}}
data: {{table: {0}/set/classes.csv, images: {0}/set/png, size: 32, folds: 2, cache: none, workers: 1}}
train: {{epochs: 1, batch_size: 4, distributed: {{timeout_s: 30}}}}
)",
                                                                                    dir.path().string(), PNEUMO_SOURCE_DIR));
  REQUIRE(run_pneumo({"-q", "train", config.string(), "--set", "experiment.run_name=one"}).exit_code == 0);
  const auto result = run_pneumo(launch(config, {"--set", "experiment.run_name=two"}));
  INFO(result.err);
  REQUIRE(result.exit_code == 0);
  const auto state = [&](const char* run) {
    const fs::path file = dir / "runs/demo-classes" / run / "last.ckpt";
    return pneumo::train::TrainingState::from_checkpoint(pneumo::train::read_checkpoint(file), file.string());
  };
  const auto one = state("one"), two = state("two");
  REQUIRE(two.history.size() == 1);
  REQUIRE(two.history[0].val_class_auc.size() == 3);  // gathered from both processes' shares
  // Two images per process through 121 synchronised BatchNorm layers: rounding differs by a few
  // percent after two steps (see experiment() above), so only roughly the same.
  CHECK(two.history[0].val_loss == Approx(one.history[0].val_loss).epsilon(0.05));
}
