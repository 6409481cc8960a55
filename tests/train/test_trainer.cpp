// Schedules, and short training runs on a tiny demo set: the loss goes down, the run folder
// holds what it should, early stopping, NaN handling and configuration errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <csignal>
#include <random>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include <torch/cuda.h>
#include <torch/torch.h>

#include "pneumo/core/config_node.h"
#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"
#include "pneumo/data/demo_set.h"
#include "pneumo/models/model_section.h"
#include "pneumo/train/checkpoint.h"
#include "pneumo/train/schedule.h"
#include "pneumo/train/trainer.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

using namespace pneumo;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

train::ScheduleSection schedule(const std::string& yaml) {
  return core::read_section<train::ScheduleSection>(core::parse_yaml(yaml, "schedule"), "train.schedule");
}

// A tiny experiment on a 24-image demo set at 64x64.
train::ExperimentConfig tiny(const pneumo::testing::TempDir& dir, const std::vector<std::string>& overrides) {
  if (!fs::exists(dir / "set")) {
    data::DemoSetOptions demo;
    demo.count = 24;
    demo.size = 64;
    data::write_demo_set(dir / "set", demo);
  }
  const std::string yaml = fmt::format(R"(
experiment: {{name: tiny, output_dir: {0}/runs, run_name: run, seed: 3}}
runtime: {{device: cpu, threads: 1}}
data: {{labels: {0}/set/train-rle.csv, images: {0}/set/dicom, size: 64, folds: 4, cache: none, workers: 1}}
augment: {{train: [HorizontalFlip]}}
model: {{name: unet, encoder: {{name: resnet18, in_channels: 1}}, decoder_channels: [64, 32, 16, 16, 8], aux_head: true}}
train: {{epochs: 3, batch_size: 6, optimizer: {{lr: 0.003}}, schedule: {{name: constant}}}}
)",
                                       dir.path().string());
  pneumo::testing::write_file(dir / "tiny.yaml", yaml);
  return train::load_experiment((dir / "tiny.yaml").string(), overrides);
}

std::vector<std::vector<std::string>> csv_rows(const fs::path& file) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(pneumo::testing::read_file(file));
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cells;
    std::istringstream l(line);
    for (std::string cell; std::getline(l, cell, ',');) cells.push_back(cell);
    rows.push_back(cells);
  }
  return rows;
}

}  // namespace

TEST_CASE("schedules give the documented factors") {
  const train::LrSchedule constant(schedule("{name: constant}"), 10);
  CHECK(constant.factor(7.5) == 1.0);
  const train::LrSchedule step(schedule("{name: step, step_size: 3, gamma: 0.5}"), 10);
  CHECK(step.factor(2.9) == 1.0);
  CHECK(step.factor(3.0) == 0.5);
  CHECK(step.factor(6.5) == 0.25);
  const train::LrSchedule multi(schedule("{name: multistep, milestones: [2, 5], gamma: 0.1}"), 10);
  CHECK(multi.factor(1) == 1.0);
  CHECK(multi.factor(2) == Approx(0.1));
  CHECK(multi.factor(9) == Approx(0.01));
  const train::LrSchedule cosine(schedule("{name: cosine, min_lr_factor: 0.1, warmup_epochs: 2, warmup_start: 0.0}"), 12);
  CHECK(cosine.factor(0) == 0.0);
  CHECK(cosine.factor(1) == Approx(0.5));
  CHECK(cosine.factor(2) == Approx(1.0));
  CHECK(cosine.factor(7) == Approx(0.55));
  CHECK(cosine.factor(12) == Approx(0.1));
  const train::LrSchedule restarts(schedule("{name: cosine_restarts, cycle_epochs: 2, cycle_multiplier: 2}"), 14);
  CHECK(restarts.factor(0) == Approx(1.0));
  CHECK(restarts.factor(1) == Approx(0.5));
  CHECK(restarts.factor(2) == Approx(1.0));  // a restart
  CHECK(restarts.factor(4) == Approx(0.5));  // middle of the 4-epoch cycle
  CHECK(restarts.cycle_ends() == std::vector<int>{2, 6, 14});
  train::LrSchedule plateau(schedule("{name: plateau, patience: 2, gamma: 0.5}"), 10);
  for (double v : {0.5, 0.6, 0.6, 0.6}) plateau.on_validation(v);
  CHECK(plateau.factor(4) == 0.5);
  CHECK_THROWS_WITH(schedule("{name: cosine_warm}"), Contains("train.schedule.name"));
}

TEST_CASE("a short training run lowers the loss and leaves a complete run folder") {
  pneumo::testing::TempDir dir;
  const train::TrainSummary s = train::train_experiment(tiny(dir, {}));
  CHECK(s.epochs_run == 3);
  const fs::path run = dir / "runs/tiny/run";
  CHECK(s.run == run);
  for (const char* f : {"config.yaml", "log.txt", "folds.csv", "metrics.csv", "metrics.jsonl", "last.ckpt", "best.ckpt",
                        "loss.png", "metrics.png", "lr.png"})
    CHECK(fs::exists(run / f));
  const auto rows = csv_rows(run / "metrics.csv");
  REQUIRE(rows.size() == 4);
  CHECK(rows[0][2] == "train_loss");
  CHECK(std::stod(rows[3][2]) < std::stod(rows[1][2]));  // train loss, epoch 3 below epoch 1
  const train::Checkpoint last = train::read_checkpoint(run / "last.ckpt");
  CHECK(last.epoch == 3);
  CHECK(last.step == 3 * 3);  // 18 training images, batches of 6
  CHECK(train::read_checkpoint(run / "best.ckpt").epoch == s.best_epoch);
  CHECK_THAT(last.config_yaml, Contains("resnet18"));
  // The config recorded in the run loads again.
  CHECK_NOTHROW(train::load_experiment((run / "config.yaml").string(), {}));
  // A second run of the same name is refused unless asked.
  CHECK_THROWS_AS(train::train_experiment(tiny(dir, {})), core::UsageError);
}

TEST_CASE("a run stopped after an epoch and resumed ends with the same weights as one run straight") {
  pneumo::testing::TempDir a, b;
  const std::vector<std::string> deterministic = {"runtime.deterministic=true", "train.schedule.name=plateau",
                                                  "train.schedule.patience=1", "train.schedule.gamma=0.5"};
  train::train_experiment(tiny(a, deterministic));
  train::TrainOptions first;
  first.stop_after_epochs = 2;
  const auto partial = train::train_experiment(tiny(b, deterministic), first);
  CHECK(partial.epochs_run == 2);
  CHECK(train::read_checkpoint(b / "runs/tiny/run/last.ckpt").epoch == 2);
  train::TrainOptions resume;
  resume.resume = b / "runs/tiny/run";
  const auto resumed = train::train_experiment(train::load_run_config(resume.resume), resume);
  CHECK(resumed.epochs_run == 3);
  const train::Checkpoint straight = train::read_checkpoint(a / "runs/tiny/run/last.ckpt");
  const train::Checkpoint joined = train::read_checkpoint(b / "runs/tiny/run/last.ckpt");
  CHECK(joined.step == straight.step);
  REQUIRE(joined.model.size() == straight.model.size());
  for (size_t i = 0; i < joined.model.size(); ++i) {
    INFO(joined.model[i].first);
    CHECK(torch::equal(joined.model[i].second, straight.model[i].second));
  }
  CHECK(pneumo::testing::read_file(b / "runs/tiny/run/metrics.csv").size() > 0);
  CHECK(csv_rows(b / "runs/tiny/run/metrics.csv").size() == 4);
  // Resuming a finished run does nothing more.
  CHECK(train::train_experiment(train::load_run_config(resume.resume), resume).epochs_run == 3);
}

TEST_CASE("a training killed with SIGKILL mid-epoch resumes to the same weights") {
  pneumo::testing::TempDir a, b;
  const std::vector<std::string> sets = {"runtime.deterministic=true", "train.epochs=4"};
  train::train_experiment(tiny(a, sets));
  tiny(b, sets);  // writes b/tiny.yaml and the data set
  std::vector<std::string> argv = {PNEUMO_CLI_PATH, "-q", "train", (b / "tiny.yaml").string()};
  for (const auto& s : sets) argv.insert(argv.end(), {"--set", s});
  const pid_t child = pneumo::testing::spawn_quiet(argv);
  REQUIRE(child >= 0);
  // Kill it once epoch 2 is checkpointed, while it trains epoch 3.
  const fs::path last = b / "runs/tiny/run/last.ckpt";
  bool killed = false;
  for (int i = 0; i < 6000 && !killed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (::waitpid(child, nullptr, WNOHANG) == child) FAIL("the training process ended before it could be killed");
    if (fs::exists(last) && train::read_checkpoint(last).epoch >= 2) {
      ::kill(child, SIGKILL);
      killed = true;
    }
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  REQUIRE(killed);
  CHECK(WIFSIGNALED(status));
  const auto resumed = pneumo::testing::run_command({PNEUMO_CLI_PATH, "train", "--resume", (b / "runs/tiny/run").string()});
  INFO(resumed.err);
  REQUIRE(resumed.exit_code == 0);
  const train::Checkpoint straight = train::read_checkpoint(a / "runs/tiny/run/last.ckpt");
  const train::Checkpoint joined = train::read_checkpoint(last);
  CHECK(joined.epoch == 4);
  int differing = 0;
  for (size_t i = 0; i < joined.model.size(); ++i)
    differing += !torch::equal(joined.model[i].second, straight.model[i].second);
  CHECK(differing == 0);
  CHECK_THAT(pneumo::testing::read_file(b / "runs/tiny/run/log.txt"), Contains("resuming after epoch"));
  // --set cannot change a resumed run.
  CHECK(pneumo::testing::run_command({PNEUMO_CLI_PATH, "train", "--resume", (b / "runs/tiny/run").string(), "--set",
                                      "train.epochs=9"}).exit_code == 2);
}

TEST_CASE("a damaged last.ckpt: resume falls back to the newest intact checkpoint and still ends exact") {
  pneumo::testing::TempDir a, b;
  const std::vector<std::string> sets = {"runtime.deterministic=true", "train.keep_top=3"};
  train::train_experiment(tiny(a, sets));
  train::TrainOptions first;
  first.stop_after_epochs = 2;
  train::train_experiment(tiny(b, sets), first);
  const fs::path run = b / "runs/tiny/run";
  std::string bytes = pneumo::testing::read_file(run / "last.ckpt");
  bytes[bytes.size() / 2] ^= 0x10;
  pneumo::testing::write_file(run / "last.ckpt", bytes);
  pneumo::testing::write_file(run / "best.ckpt.tmp-123-0", "a write cut short");
  const auto [checkpoint, file] = train::resume_checkpoint(run);
  CHECK(checkpoint.epoch == 2);  // top-k keeps every epoch here, so epoch 2 is intact elsewhere
  CHECK(file.filename() != "last.ckpt");
  train::TrainOptions resume;
  resume.resume = run;
  CHECK(train::train_experiment(train::load_run_config(run), resume).epochs_run == 3);
  const train::Checkpoint straight = train::read_checkpoint(a / "runs/tiny/run/last.ckpt");
  const train::Checkpoint joined = train::read_checkpoint(run / "last.ckpt");
  for (size_t i = 0; i < joined.model.size(); ++i) CHECK(torch::equal(joined.model[i].second, straight.model[i].second));
  CHECK_FALSE(fs::exists(run / "best.ckpt.tmp-123-0"));  // the interrupted write's leftover is gone
  const std::string log = pneumo::testing::read_file(run / "log.txt");
  CHECK_THAT(log, Contains("checksum") && Contains("instead"));
  // Nothing intact at all: a clear refusal.
  for (const auto& entry : fs::directory_iterator(run))
    if (entry.path().extension() == ".ckpt") pneumo::testing::write_file(entry.path(), "garbage");
  CHECK_THROWS_WITH(train::resume_checkpoint(run), Contains("no other intact checkpoint"));
}

TEST_CASE("SIGKILL at random points, again and again: every resume continues and the run ends exact") {
  pneumo::testing::TempDir a, b;
  const std::vector<std::string> sets = {"runtime.deterministic=true", "train.epochs=4"};
  train::train_experiment(tiny(a, sets));
  tiny(b, sets);
  const fs::path run = b / "runs/tiny/run";
  std::mt19937 rng(20261123);
  int longest_ms = 3000;  // grows when a kill came before any progress (slow machines, sanitizers)
  int64_t progress = 0;   // the last checkpointed epoch
  int kills = 0, during_write = 0, attempts = 0;
  bool finished = false;
  while (!finished && attempts++ < 30) {
    std::vector<std::string> argv = {PNEUMO_CLI_PATH, "-q", "train"};
    if (fs::exists(run / "last.ckpt")) {
      argv.insert(argv.end(), {"--resume", run.string()});
    } else {
      argv.insert(argv.end(), {(b / "tiny.yaml").string(), "--overwrite"});
      for (const auto& s : sets) argv.insert(argv.end(), {"--set", s});
    }
    const pid_t child = pneumo::testing::spawn_quiet(argv);
    REQUIRE(child >= 0);
    // The first two kills come early (start-up, epoch 1): a run from scratch or from epoch 1
    // lasts longer than that even on a fast machine, so at least two kills always happen.
    const int wait = std::uniform_int_distribution<int>(300, kills < 2 ? 1200 : longest_ms)(rng);
    int status = 0;
    bool exited = false;
    for (int waited = 0; waited < wait && !exited; waited += 5) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      exited = ::waitpid(child, &status, WNOHANG) == child;
    }
    if (exited) {
      REQUIRE(WIFEXITED(status));
      REQUIRE(WEXITSTATUS(status) == 0);
      finished = true;
      break;
    }
    ::kill(child, SIGKILL);
    ::waitpid(child, &status, 0);
    ++kills;
    // Whatever the moment, every checkpoint on disk is whole; a leftover temporary file shows
    // that the kill landed in a write.
    bool partial = false;
    if (fs::exists(run)) {  // a kill during start-up comes before the run folder
      for (const auto& entry : fs::directory_iterator(run)) {
        if (core::is_atomic_write_temp(entry.path())) partial = true;
        if (entry.path().extension() == ".ckpt") CHECK_NOTHROW(train::read_checkpoint(entry.path()));
      }
    }
    during_write += partial;
    const int64_t now = fs::exists(run / "last.ckpt") ? train::read_checkpoint(run / "last.ckpt").epoch : 0;
    if (now == progress && kills > 2) longest_ms = longest_ms * 3 / 2;  // the early two do not count
    progress = now;
  }
  REQUIRE(finished);
  WARN(kills << " kills, " << during_write << " of them during a file write");
  CHECK(kills >= 2);
  const train::Checkpoint straight = train::read_checkpoint(a / "runs/tiny/run/last.ckpt");
  const train::Checkpoint joined = train::read_checkpoint(run / "last.ckpt");
  CHECK(joined.epoch == 4);
  for (size_t i = 0; i < joined.model.size(); ++i) CHECK(torch::equal(joined.model[i].second, straight.model[i].second));
  CHECK(csv_rows(run / "metrics.csv").size() == 5);  // header + 4 epochs, none lost or repeated
}

TEST_CASE("RAdam trains, mixed precision asked on the CPU changes nothing, channels-last trains alike") {
  pneumo::testing::TempDir a, b, c;
  const std::vector<std::string> common = {"runtime.deterministic=true", "train.epochs=1", "train.optimizer.name=radam"};
  std::vector<std::string> sets = common, amp = common, nhwc = common;
  sets.push_back("runtime.channels_last=false");
  amp.push_back("runtime.channels_last=false");
  amp.push_back("runtime.mixed_precision=true");
  nhwc.push_back("runtime.channels_last=true");
  const auto plain = train::train_experiment(tiny(a, sets));
  train::train_experiment(tiny(b, amp));
  const auto channels_last = train::train_experiment(tiny(c, nhwc));
  CHECK(std::isfinite(plain.epochs.at(0).train_loss));
  const train::Checkpoint x = train::read_checkpoint(a / "runs/tiny/run/last.ckpt");
  const train::Checkpoint y = train::read_checkpoint(b / "runs/tiny/run/last.ckpt");
  const train::Checkpoint z = train::read_checkpoint(c / "runs/tiny/run/last.ckpt");
  REQUIRE(x.model.size() == y.model.size());
  REQUIRE(x.model.size() == z.model.size());
  for (size_t i = 0; i < x.model.size(); ++i) {
    INFO(x.model[i].first);
    CHECK(torch::equal(x.model[i].second, y.model[i].second));
    CHECK(z.model[i].second.is_contiguous());  // saved in the usual order whatever the memory format
    CHECK(torch::allclose(x.model[i].second, z.model[i].second, 1e-2, 1e-3));
  }
  CHECK(channels_last.epochs.at(0).train_loss == Approx(plain.epochs.at(0).train_loss).epsilon(1e-3));
}

TEST_CASE("bfloat16 mixed precision on the CPU trains close to float32, and an unknown type is refused") {
  pneumo::testing::TempDir a, b, c;
  const std::vector<std::string> sets = {"runtime.deterministic=true", "train.epochs=1"};
  std::vector<std::string> bf16 = sets;
  bf16.push_back("runtime.mixed_precision=true");
  bf16.push_back("runtime.mixed_precision_dtype=bfloat16");
  const auto plain = train::train_experiment(tiny(a, sets));
  const auto half = train::train_experiment(tiny(b, bf16));
  REQUIRE(std::isfinite(half.epochs.at(0).train_loss));
  // Autocast was on (the weights differ from float32's), and training went the same way.
  CHECK(half.epochs.at(0).train_loss != plain.epochs.at(0).train_loss);
  CHECK(half.epochs.at(0).train_loss == Approx(plain.epochs.at(0).train_loss).epsilon(0.05));
  const train::Checkpoint x = train::read_checkpoint(a / "runs/tiny/run/last.ckpt");
  const train::Checkpoint y = train::read_checkpoint(b / "runs/tiny/run/last.ckpt");
  REQUIRE(x.model.size() == y.model.size());
  bool any_differs = false;
  for (size_t i = 0; i < x.model.size(); ++i) {
    INFO(x.model[i].first);
    CHECK(y.model[i].second.scalar_type() == x.model[i].second.scalar_type());  // weights stay float32
    if (!torch::equal(x.model[i].second, y.model[i].second)) any_differs = true;
  }
  CHECK(any_differs);
  CHECK_THROWS_WITH(tiny(c, {"runtime.mixed_precision_dtype=float8"}),
                    Contains("runtime.mixed_precision_dtype") && Contains("bfloat16"));
}

TEST_CASE("spatial augmentation on the device trains, reproducibly, and bad ops are refused before training") {
  pneumo::testing::TempDir a, b, c, d;
  const std::vector<std::string> sets = {"runtime.deterministic=true", "train.epochs=1", "augment.train=null"};
  std::vector<std::string> on_device = sets;
  on_device.push_back("augment.on_device=[HorizontalFlip, {ShiftScaleRotate: {p: 1}}, {ElasticTransform: {sigma: 5}}]");
  const auto plain = train::train_experiment(tiny(a, sets));
  const auto first = train::train_experiment(tiny(b, on_device));
  const auto again = train::train_experiment(tiny(c, on_device));
  REQUIRE(std::isfinite(first.epochs.at(0).train_loss));
  CHECK(first.epochs.at(0).train_loss == again.epochs.at(0).train_loss);
  CHECK(first.epochs.at(0).train_loss != plain.epochs.at(0).train_loss);
  // The run's config records the device ops.
  CHECK_THAT(pneumo::testing::read_file(b / "runs/tiny/run/config.yaml"), Contains("ShiftScaleRotate"));
  CHECK_THROWS_WITH(tiny(d, {"augment.on_device=[CLAHE]"}), Contains("augment.on_device[0]") && Contains("CLAHE"));
}

TEST_CASE("training on a GPU: mixed precision, channels-last, pinned batches and device augmentation") {
  if (!torch::cuda::is_available()) {
    WARN("skipped: LibTorch sees no CUDA device");
    return;
  }
  pneumo::testing::TempDir dir;
  const auto s = train::train_experiment(
      tiny(dir, {"runtime.device=cuda", "runtime.mixed_precision=true", "runtime.channels_last=true",
                 "runtime.cudnn_benchmark=true", "train.epochs=2",
                 "augment.on_device=[HorizontalFlip, ShiftScaleRotate, {ElasticTransform: {sigma: 5}}]"}));
  REQUIRE(s.epochs.size() == 2);
  for (const auto& e : s.epochs) CHECK(std::isfinite(e.train_loss));
  const train::Checkpoint c = train::read_checkpoint(dir / "runs/tiny/run/last.ckpt");
  for (const auto& [name, tensor] : c.model) {
    INFO(name);
    CHECK(tensor.device().is_cpu());  // checkpoints hold CPU tensors whatever the device
    CHECK(torch::isfinite(tensor).all().item<bool>());
  }
  pneumo::testing::TempDir bf16;
  const auto b = train::train_experiment(tiny(bf16, {"runtime.device=cuda", "runtime.mixed_precision=true",
                                                      "runtime.mixed_precision_dtype=bfloat16", "train.epochs=1"}));
  CHECK(std::isfinite(b.epochs.at(0).train_loss));
}

TEST_CASE("cuDNN benchmarking and determinism together are refused") {
  pneumo::testing::TempDir dir;
  CHECK_THROWS_WITH(train::train_experiment(tiny(dir, {"runtime.deterministic=true", "runtime.cudnn_benchmark=true"})),
                    Contains("runtime.cudnn_benchmark"));
}

TEST_CASE("snapshot cycles leave snapshot checkpoints and a manifest, SWA averages and recomputes BatchNorm") {
  pneumo::testing::TempDir dir;
  const auto s = train::train_experiment(tiny(dir, {"train.schedule.name=cosine_restarts", "train.schedule.cycle_epochs=1",
                                                    "train.swa.start_epoch=2"}));
  const fs::path run = dir / "runs/tiny/run";
  for (const char* f : {"snapshot-001.ckpt", "snapshot-002.ckpt", "snapshot-003.ckpt", "swa.ckpt", "ensemble.json"})
    CHECK(fs::exists(run / f));
  const std::string manifest = pneumo::testing::read_file(run / "ensemble.json");
  CHECK_THAT(manifest, Contains("\"checkpoint\": \"snapshot-003.ckpt\"") && Contains("\"swa\"") &&
                           Contains("pneumo-ensemble"));
  // SWA weights are the mean of epochs 2 and 3; its BatchNorm statistics are recomputed.
  const auto e2 = train::read_checkpoint(run / "snapshot-002.ckpt");
  const auto e3 = train::read_checkpoint(run / "snapshot-003.ckpt");
  const auto swa = train::read_checkpoint(run / "swa.ckpt");
  std::map<std::string, torch::Tensor> w2(e2.model.begin(), e2.model.end()), w3(e3.model.begin(), e3.model.end());
  int checked = 0;
  for (const auto& [name, value] : swa.model) {
    if (name.find("running_") != std::string::npos || name.find("num_batches") != std::string::npos) continue;
    CHECK(torch::allclose(value, (w2[name] + w3[name]) / 2, 1e-5, 1e-6));
    ++checked;
  }
  CHECK(checked > 50);
  const std::map<std::string, torch::Tensor> ws(swa.model.begin(), swa.model.end());
  CHECK_FALSE(torch::equal(ws.at("encoder.bn1.running_mean"), w3["encoder.bn1.running_mean"]));
  CHECK(s.epochs_run == 3);
}

TEST_CASE("EMA keeps a moving average of the weights and saves it validated") {
  pneumo::testing::TempDir dir;
  // decay 0.5 over 3 epochs of 3 steps: the average trails the final weights but is not them.
  train::train_experiment(tiny(dir, {"train.ema=0.5"}));
  const fs::path run = dir / "runs/tiny/run";
  REQUIRE(fs::exists(run / "ema.ckpt"));
  const auto ema = train::read_checkpoint(run / "ema.ckpt");
  const auto last = train::read_checkpoint(run / "last.ckpt");
  CHECK(ema.metrics.count("val_dice") == 1);
  const std::map<std::string, torch::Tensor> e(ema.model.begin(), ema.model.end()), l(last.model.begin(), last.model.end());
  CHECK_FALSE(torch::equal(e.at("encoder.conv1.weight"), l.at("encoder.conv1.weight")));
  CHECK(torch::equal(e.at("encoder.bn1.running_mean"), l.at("encoder.bn1.running_mean")));
}

TEST_CASE("keep_top keeps exactly the N best epochs") {
  pneumo::testing::TempDir dir;
  train::train_experiment(tiny(dir, {"train.epochs=4", "train.keep_top=2", "train.monitor=val_loss"}));
  const fs::path run = dir / "runs/tiny/run";
  const auto rows = csv_rows(run / "metrics.csv");
  std::vector<std::pair<double, int>> losses;
  for (size_t i = 1; i < rows.size(); ++i) losses.emplace_back(std::stod(rows[i][3]), static_cast<int>(i));
  std::sort(losses.begin(), losses.end());
  for (int epoch = 1; epoch <= 4; ++epoch) {
    const bool kept = epoch == losses[0].second || epoch == losses[1].second;
    INFO("epoch " << epoch);
    CHECK(fs::exists(run / fmt::format("top-{:03d}.ckpt", epoch)) == kept);
  }
}

TEST_CASE("early stopping ends a run that no longer improves") {
  pneumo::testing::TempDir dir;
  // With a learning rate of zero nothing changes after the first epoch.
  const auto s = train::train_experiment(
      tiny(dir, {"train.epochs=6", "train.early_stopping=2", "train.optimizer.lr=1e-30", "train.monitor=val_loss"}));
  CHECK(s.stopped_early);
  CHECK(s.epochs_run == 3);
  CHECK(s.best_epoch == 1);
}

TEST_CASE("a loss that becomes NaN stops the run with a clear message") {
  pneumo::testing::TempDir dir;
  CHECK_THROWS_WITH(train::train_experiment(tiny(dir, {"train.optimizer.name=sgd", "train.optimizer.lr=1e30"})),
                    Contains("the loss became") && Contains("train.optimizer.lr"));
}

TEST_CASE("inconsistent experiments are refused before a run folder is made") {
  pneumo::testing::TempDir dir;
  CHECK_THROWS_WITH(train::train_experiment(tiny(dir, {"model.name=classifier", "model.encoder.name=densenet121"})),
                    Contains("train.monitor") && Contains("val_auc"));
  CHECK_THROWS_WITH(train::train_experiment(tiny(dir, {"model.encoder.in_channels=3"})), Contains("data.channels"));
  CHECK_FALSE(fs::exists(dir / "runs"));
}

TEST_CASE("every shipped experiment loads and builds its network") {
  int built = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(PNEUMO_SOURCE_DIR) / "configs")) {
    if (entry.path().extension() != ".yaml") continue;
    INFO(entry.path());
    // Pretrained weight files are the user's to bring (see README); build without them.
    const train::ExperimentConfig config =
        train::load_experiment(entry.path().string(), {"model.encoder.weights=\"\"", "model.weights=\"\""});
    auto net = models::build_model(config.model);
    CHECK(net->parameters().size() > 10);
    CHECK(config.model.encoder.in_channels == config.data.channels);
    ++built;
  }
  CHECK(built >= 9);
}

// tests/train/fixtures/c0189b9-run/last.ckpt was written by pneumo at commit c0189b9, before the
// trainer state carried its own version: `pneumo make-demo --count 8 --size 64`, then
// `pneumo train fixture.yaml --stop-after 1` with the config below (every kind of state filled:
// Adam moments, cosine-restart snapshots, SWA, EMA, top-k).
TEST_CASE("a checkpoint written before the trainer state had a version still loads and resumes") {
  const fs::path fixture = fs::path(PNEUMO_SOURCE_DIR) / "tests/train/fixtures/c0189b9-run/last.ckpt";
  const train::Checkpoint old = train::read_checkpoint(fixture);
  REQUIRE(old.state);
  CHECK_FALSE(models::pickle_get(old.state, "version"));  // the old layout
  const train::TrainingState s = train::TrainingState::from_checkpoint(old, fixture.string());
  CHECK(s.epoch == 1);
  CHECK(s.step == 2);  // 6 training images, batches of 3
  CHECK(s.optimizer.size() > 100);
  CHECK(s.rng_cpu.numel() > 0);
  CHECK(s.has_scaler);
  REQUIRE(s.history.size() == 1);
  CHECK(s.history[0].epoch == 1);
  CHECK(std::isfinite(s.history[0].train_loss));
  CHECK(s.best_epoch == 1);
  CHECK(s.snapshots.size() == 1);
  CHECK(s.swa_count == 1);
  CHECK(s.swa.size() == s.ema.size());
  const auto net = models::build_model(core::read_section<models::ModelSection>(
      core::parse_yaml("{name: attention_unet, widths: [2, 4, 4, 8, 8]}", "model"), "model"));
  CHECK(s.swa.size() == net->parameters().size());  // one average per parameter
  REQUIRE(s.top.size() == 1);
  CHECK(s.top[0].epoch == 1);

  // Resume it in a run folder of this machine, on a demo set made alike.
  pneumo::testing::TempDir dir;
  data::DemoSetOptions demo;
  demo.count = 8;
  demo.size = 64;
  data::write_demo_set(dir / "set", demo);
  const fs::path run = dir / "runs/fixture/run";
  fs::create_directories(run);
  pneumo::testing::write_file(run / "config.yaml", fmt::format(R"(
experiment: {{name: fixture, output_dir: {0}/runs, run_name: run, seed: 5}}
runtime: {{device: cpu, threads: 1, deterministic: true}}
data: {{labels: {0}/set/train-rle.csv, images: {0}/set/dicom, size: 32, folds: 4, cache: none, workers: 1}}
model: {{name: attention_unet, widths: [2, 4, 4, 8, 8]}}
train: {{epochs: 2, batch_size: 3, keep_top: 1, ema: 0.9, swa: {{start_epoch: 1}},
        optimizer: {{lr: 0.003}}, schedule: {{name: cosine_restarts, cycle_epochs: 1}}}}
)", dir.path().string()));
  fs::copy_file(fixture, run / "last.ckpt");
  train::TrainOptions resume;
  resume.resume = run;
  const train::TrainSummary summary = train::train_experiment(train::load_run_config(run), resume);
  CHECK(summary.epochs_run == 2);
  REQUIRE(summary.epochs.size() == 2);
  CHECK(summary.epochs[0].train_loss == s.history[0].train_loss);  // the history came along
  const train::Checkpoint last = train::read_checkpoint(run / "last.ckpt");
  CHECK(last.epoch == 2);
  CHECK(models::pickle_get(last.state, "version")->integer == train::TrainingState::kVersion);
  const train::TrainingState now = train::TrainingState::from_checkpoint(last, "last.ckpt");
  CHECK(now.step == 4);
  CHECK(now.swa_count == 2);
  CHECK(now.snapshots.size() == 2);
  CHECK(fs::exists(run / "swa.ckpt"));
  CHECK(fs::exists(run / "ema.ckpt"));
}

TEST_CASE("a trainer state from a newer pneumo, or with a key missing, is refused naming the file") {
  const fs::path fixture = fs::path(PNEUMO_SOURCE_DIR) / "tests/train/fixtures/c0189b9-run/last.ckpt";
  train::Checkpoint c = train::read_checkpoint(fixture);
  train::TrainingState s = train::TrainingState::from_checkpoint(c, "x.ckpt");
  s.to_checkpoint(c);
  CHECK(train::TrainingState::from_checkpoint(c, "x.ckpt").history.size() == 1);  // round trip
  models::pickle_get(c.state, "version")->integer = train::TrainingState::kVersion + 1;
  CHECK_THROWS_WITH(train::TrainingState::from_checkpoint(c, "x.ckpt"), Contains("x.ckpt") && Contains("newer"));
  s.to_checkpoint(c);
  auto& entries = c.state->entries;
  entries.erase(std::remove_if(entries.begin(), entries.end(), [](const auto& e) { return e.first->text == "best_epoch"; }),
                entries.end());
  CHECK_THROWS_WITH(train::TrainingState::from_checkpoint(c, "x.ckpt"), Contains("x.ckpt") && Contains("best_epoch"));
  c.state = nullptr;
  CHECK_THROWS_WITH(train::TrainingState::from_checkpoint(c, "x.ckpt"), Contains("no trainer state"));
}
