// `pneumo cv` as a user runs it on a tiny demo set (24 images at 64x64, 3 folds, 2-3 epochs):
// every fold trained, out-of-fold predictions that cover each image once and come from the
// model that did not see it, tuning from the OOF files alone, the CV folder as one --model,
// resuming after SIGKILL, and the errors.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <torch/torch.h>

#include "pneumo/data/demo_set.h"
#include "pneumo/train/checkpoint.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

using pneumo::testing::read_file;
using pneumo::testing::run_pneumo;
using pneumo::testing::TempDir;
using pneumo::testing::write_file;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

fs::path cv_experiment(const TempDir& dir, int epochs) {
  if (!fs::exists(dir / "set")) {
    pneumo::data::DemoSetOptions demo;
    demo.count = 24;
    demo.size = 64;
    pneumo::data::write_demo_set(dir / "set", demo);
  }
  return write_file(dir / "cv.yaml", fmt::format(R"(
experiment: {{name: tiny, output_dir: {0}/runs, run_name: run, seed: 3}}
runtime: {{device: cpu, threads: 1, deterministic: true}}
data: {{labels: {0}/set/train-rle.csv, images: {0}/set/dicom, size: 64, folds: 3, cache: none, workers: 1}}
augment: {{train: [HorizontalFlip]}}
model: {{name: unet, encoder: {{name: resnet18, in_channels: 1}}, decoder_channels: [32, 16, 16, 8, 8], aux_head: true}}
train: {{epochs: {1}, batch_size: 4, optimizer: {{lr: 0.003}}, schedule: {{name: constant}}}}
)",
                                                 dir.path().string(), epochs));
}

// ImageId -> fold from a folds.csv (ImageId,fold).
std::map<std::string, int> folds_of(const fs::path& file) {
  std::map<std::string, int> out;
  std::istringstream in(read_file(file));
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    const size_t comma = line.find(',');
    out[line.substr(0, comma)] = std::stoi(line.substr(comma + 1));
  }
  return out;
}

// The ImageIds of an OOF table.
std::vector<std::string> oof_ids(const fs::path& csv) {
  std::vector<std::string> out;
  std::istringstream in(read_file(csv));
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) out.push_back(line.substr(0, line.find(',')));
  return out;
}

// Every file under `folder` (relative path -> bytes).
std::map<std::string, std::string> contents(const fs::path& folder) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(folder))
    if (e.is_regular_file()) out[fs::relative(e.path(), folder).string()] = read_file(e.path());
  return out;
}

void zero_weights(const fs::path& checkpoint) {
  pneumo::train::Checkpoint c = pneumo::train::read_checkpoint(checkpoint);
  for (auto& [name, tensor] : c.model) tensor = torch::zeros_like(tensor);
  pneumo::train::write_checkpoint(checkpoint, c);
}

}  // namespace

TEST_CASE("cv trains each fold, predicts each image out of fold once, tunes on the OOF files alone") {
  TempDir dir;
  const fs::path config = cv_experiment(dir, 2), top = dir / "runs/tiny/run";
  const auto r = run_pneumo({"cv", config.string()});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("Cross-validation") && Contains("all OOF") && Contains("tuned:"));
  for (const char* f : {"experiment.yaml", "ensemble.json", "postprocess.yaml", "cv.json", "cv.md", "log.txt"})
    CHECK(fs::exists(top / f));

  // Each image once, in the fold whose model validated (and so did not train) on it.
  const std::map<std::string, int> folds = folds_of(top / "fold-0/folds.csv");
  REQUIRE(folds.size() == 24);
  std::multiset<std::string> seen;
  for (int k = 0; k < 3; ++k) {
    CHECK(fs::exists(top / fmt::format("fold-{}/best.ckpt", k)));
    CHECK(fs::exists(top / fmt::format("fold-{}/finished.json", k)));
    CHECK(read_file(top / fmt::format("fold-{}/folds.csv", k)) == read_file(top / "fold-0/folds.csv"));
    CHECK_THAT(read_file(top / fmt::format("fold-{}/config.yaml", k)), Contains(fmt::format("fold: {}", k)));
    for (const std::string& id : oof_ids(top / fmt::format("oof/fold-{}.csv", k))) {
      seen.insert(id);
      CHECK(folds.at(id) == k);
      CHECK(fs::exists(top / fmt::format("oof/fold-{}/{}.png", k, id)));
    }
  }
  CHECK(seen.size() == 24);
  CHECK(std::set<std::string>(seen.begin(), seen.end()).size() == 24);
  const std::string report = read_file(top / "cv.json");
  CHECK_THAT(report, Contains("\"dice_before_tuning\"") && Contains("\"sd\"") && Contains("\"images\": 24"));

  // The CV folder is one --model: three members, the top's postprocess.yaml.
  const auto predicted = run_pneumo({"predict", "--model", top.string(), (dir / "set/dicom").string(), "--out",
                                     (dir / "pred").string(), "--no-overlays"});
  INFO(predicted.err);
  CHECK(predicted.exit_code == 0);
  CHECK_THAT(predicted.err, Contains((top / "postprocess.yaml").string()));
  CHECK_THAT(predicted.out, Contains("24 image(s) predicted"));
  CHECK(run_pneumo({"export", "--model", top.string(), "--out", (dir / "cv.pt").string()}).exit_code == 0);
  const auto on_training = run_pneumo({"evaluate", "--model", top.string(), "--out", (dir / "ev").string()});
  CHECK(on_training.exit_code == 2);
  CHECK_THAT(on_training.err, Contains("cross-validation ensemble") && Contains("held-out"));
  const auto held_out = run_pneumo({"evaluate", "--model", top.string(), "--labels", (dir / "set/train-rle.csv").string(),
                                    "--images", (dir / "set/dicom").string(), "--out", (dir / "ev").string()});
  INFO(held_out.err);
  CHECK(held_out.exit_code == 0);

  // A fold model with zeroed weights changes that fold's OOF predictions and no other's.
  const auto before = contents(top / "oof");
  zero_weights(top / "fold-1/best.ckpt");
  fs::remove_all(top / "oof");
  const auto again = run_pneumo({"cv", "--resume", top.string()});
  INFO(again.err);
  REQUIRE(again.exit_code == 0);
  CHECK_THAT(again.err, Contains("fold 0: finished before"));
  const auto after = contents(top / "oof");
  REQUIRE(after.size() == before.size());
  int changed_elsewhere = 0, changed_in_fold_1 = 0;
  for (const auto& [name, bytes] : before) {
    const bool changed = after.at(name) != bytes;
    (name.rfind("fold-1", 0) == 0 ? changed_in_fold_1 : changed_elsewhere) += changed;
  }
  CHECK(changed_elsewhere == 0);
  CHECK(changed_in_fold_1 == 1 + static_cast<int>(oof_ids(top / "oof/fold-1.csv").size()));  // the table, every map

  // Tuning needs neither images nor networks: with both gone it ends with the same result.
  const std::string tuned = read_file(top / "postprocess.yaml"), scores = read_file(top / "cv.json");
  fs::rename(dir / "set", dir / "set-away");
  for (int k = 0; k < 3; ++k)
    for (const char* f : {"best.ckpt", "last.ckpt"}) fs::remove(top / fmt::format("fold-{}/{}", k, f));
  const auto retuned = run_pneumo({"cv", "--resume", top.string()});
  INFO(retuned.err);
  CHECK(retuned.exit_code == 0);
  CHECK(read_file(top / "postprocess.yaml") == tuned);
  CHECK(read_file(top / "cv.json") == scores);
}

TEST_CASE("cv --resume after SIGKILL in fold 2 keeps folds 0 and 1 and ends as an uninterrupted run, as --parallel-folds does") {
  TempDir a, b, c;
  const fs::path straight_top = a / "runs/tiny/run", top = b / "runs/tiny/run";
  REQUIRE(run_pneumo({"-q", "cv", cv_experiment(a, 3).string()}).exit_code == 0);
  const pid_t child = pneumo::testing::spawn_quiet({PNEUMO_CLI_PATH, "-q", "cv", cv_experiment(b, 3).string()});
  REQUIRE(child >= 0);
  const fs::path last = top / "fold-2/last.ckpt";
  bool killed = false;
  for (int i = 0; i < 30000 && !killed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (::waitpid(child, nullptr, WNOHANG) == child) FAIL("cv ended before it could be killed");
    if (fs::exists(last) && pneumo::train::read_checkpoint(last).epoch >= 1) {
      ::kill(child, SIGKILL);
      killed = true;
    }
  }
  ::waitpid(child, nullptr, 0);
  REQUIRE(killed);
  REQUIRE_FALSE(fs::exists(top / "fold-2/finished.json"));
  const auto kept = std::make_pair(contents(top / "fold-0"), contents(top / "fold-1"));
  const auto resumed = run_pneumo({"cv", "--resume", top.string()});
  INFO(resumed.err);
  REQUIRE(resumed.exit_code == 0);
  CHECK_THAT(resumed.err, Contains("fold 2: continuing the interrupted training"));
  CHECK(contents(top / "fold-0") == kept.first);
  CHECK(contents(top / "fold-1") == kept.second);
  // Ends as the uninterrupted run: the same fold-2 weights, OOF predictions and scores.
  const pneumo::train::Checkpoint x = pneumo::train::read_checkpoint(straight_top / "fold-2/last.ckpt");
  const pneumo::train::Checkpoint y = pneumo::train::read_checkpoint(last);
  REQUIRE(x.model.size() == y.model.size());
  for (size_t i = 0; i < x.model.size(); ++i) CHECK(torch::equal(x.model[i].second, y.model[i].second));
  CHECK(contents(top / "oof") == contents(straight_top / "oof"));
  CHECK(read_file(top / "cv.json") == read_file(straight_top / "cv.json"));
  CHECK(read_file(top / "postprocess.yaml") == read_file(straight_top / "postprocess.yaml"));

  // Folds side by side (two processes of one thread each here) give what one after the other gave.
  const fs::path side_top = c / "runs/tiny/run";
  const auto side = run_pneumo({"cv", cv_experiment(c, 3).string(), "--parallel-folds", "2"});
  INFO(side.err);
  REQUIRE(side.exit_code == 0);
  CHECK_THAT(side.err, Contains("fold worker 0: fold(s) 0,2 on cpu") && Contains("fold worker 1: fold(s) 1 on cpu"));
  for (int k = 0; k < 3; ++k) {
    const auto p = pneumo::train::read_checkpoint(straight_top / fmt::format("fold-{}/last.ckpt", k));
    const auto q = pneumo::train::read_checkpoint(side_top / fmt::format("fold-{}/last.ckpt", k));
    REQUIRE(p.model.size() == q.model.size());
    for (size_t i = 0; i < p.model.size(); ++i) CHECK(torch::equal(p.model[i].second, q.model[i].second));
  }
  CHECK(contents(side_top / "oof") == contents(straight_top / "oof"));
  CHECK(read_file(side_top / "cv.json") == read_file(straight_top / "cv.json"));
}

TEST_CASE("cv refuses bad folds, changes to a resumed run, damaged OOF files and class tables") {
  TempDir dir;
  const fs::path config = cv_experiment(dir, 1), top = dir / "runs/tiny/run";
  for (const char* folds : {"0,3", "1,1", "a", "0,,1", "1;2", "99999999999"}) {
    const auto r = run_pneumo({"cv", config.string(), "--folds", folds});
    INFO(folds << ": " << r.err);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Contains("--folds"));
  }
  CHECK_FALSE(fs::exists(top));
  CHECK(run_pneumo({"cv"}).exit_code == 2);
  CHECK(run_pneumo({"cv", config.string(), "--members", "worst"}).exit_code == 2);
  const auto nowhere = run_pneumo({"cv", "--resume", (dir / "nowhere").string()});
  CHECK(nowhere.exit_code == 2);
  CHECK_THAT(nowhere.err, Contains("not a pneumo cv run"));

  REQUIRE(run_pneumo({"-q", "cv", config.string(), "--folds", "0,2"}).exit_code == 0);
  CHECK_FALSE(fs::exists(top / "fold-1"));
  CHECK(run_pneumo({"cv", config.string()}).exit_code == 2);  // the run exists
  for (const std::vector<std::string>& change : std::vector<std::vector<std::string>>{
           {"--set", "train.epochs=3"}, {"--folds", "1"}, {"--members", "last"}, {"--tta"}}) {
    std::vector<std::string> args{"cv", "--resume", top.string()};
    args.insert(args.end(), change.begin(), change.end());
    const auto r = run_pneumo(args);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Contains("cannot change a cross-validation run"));
  }
  // A fold worker of --parallel-folds that fails stops the command, naming it and its output;
  // the other folds stay as they were.
  const std::string fold_config = read_file(top / "fold-2/config.yaml");
  const std::string finished = read_file(top / "fold-2/finished.json");
  const auto fold_0 = contents(top / "fold-0");
  fs::remove(top / "fold-2/finished.json");
  write_file(top / "fold-2/config.yaml", "data: [not a section\n");
  const auto failed = run_pneumo({"cv", "--resume", top.string(), "--parallel-folds", "2"});
  CHECK(failed.exit_code != 0);
  CHECK_THAT(failed.err, Contains("fold worker 0 (folds 2;") && Contains("failed") && Contains("cv --resume"));
  CHECK_THAT(read_file(top / "workers/worker-0.log"), Contains("config.yaml"));
  CHECK(contents(top / "fold-0") == fold_0);
  write_file(top / "fold-2/config.yaml", fold_config);
  write_file(top / "fold-2/finished.json", finished);

  // A damaged OOF table is named with its line; a damaged manifest with its file.
  const std::string table = read_file(top / "oof/fold-2.csv");
  for (const std::string& row : {std::string("x,64,64,0.5,,-1,extra"), std::string("x,0,64,0.5,,-1"),
                                 std::string("x,64,64,nan,,-1"), std::string("x,64,64,0.5,,3 a"),
                                 std::string("../x,64,64,0.5,,-1"), std::string("x,64,64,0.5,,1 5000")}) {
    write_file(top / "oof/fold-2.csv", table + row + "\n");
    const auto r = run_pneumo({"cv", "--resume", top.string()});
    INFO(row << ": " << r.err);
    CHECK(r.exit_code == 1);
    CHECK_THAT(r.err, Contains("fold-2.csv"));
  }
  write_file(top / "oof/fold-2.csv", table);
  const std::string manifest = read_file(top / "ensemble.json");
  write_file(top / "ensemble.json", manifest.substr(0, manifest.size() / 2));
  const auto broken = run_pneumo({"predict", "--model", top.string(), (dir / "set/dicom").string(), "--out",
                                  (dir / "p").string()});
  CHECK(broken.exit_code != 0);
  write_file(top / "ensemble.json", manifest);
  CHECK(run_pneumo({"-q", "cv", "--resume", top.string()}).exit_code == 0);

  // Class tables have no masks for the OOF Dice; refused before anything is written.
  const auto table_run = run_pneumo({"cv", "configs/demo-classes.yaml", "--set", "experiment.output_dir=" + (dir / "runs").string()});
  CHECK(table_run.exit_code == 2);
  CHECK_THAT(table_run.err, Contains("class table"));
  CHECK_FALSE(fs::exists(dir / "runs/demo-classes"));
}
