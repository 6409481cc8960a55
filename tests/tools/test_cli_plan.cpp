// `pneumo plan` as a user runs it, on demo images whose masks we drew ourselves (squares of
// known area), so every proposal has a known right answer: the input size, the negative
// share, the folds and patient grouping, a batch size that its measured step fits, the plan
// running as an ordinary experiment, and the errors.
#include <catch2/catch.hpp>

#include <fmt/format.h>
#include <opencv2/core.hpp>

#include "pneumo/data/demo_set.h"
#include "pneumo/data/rle.h"
#include "pneumo/train/experiment.h"
#include "test_support.h"

using pneumo::testing::read_file;
using pneumo::testing::run_pneumo;
using pneumo::testing::TempDir;
using pneumo::testing::write_file;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

// A demo set of `count` images at `size`, relabelled: the first `positives` images get one
// `square` x `square` mask each, the others none.
fs::path squares_set(const fs::path& dir, int count, int size, int positives, int square, int per_patient = 1) {
  pneumo::data::DemoSetOptions demo;
  demo.count = count;
  demo.size = size;
  demo.images_per_patient = per_patient;
  pneumo::data::write_demo_set(dir, demo);
  std::string csv = "ImageId,EncodedPixels\n";
  std::vector<std::string> ids;
  std::istringstream in(read_file(dir / "train-rle.csv"));
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    const std::string id = line.substr(0, line.find(','));
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    cv::Mat mask = cv::Mat::zeros(size, size, CV_8UC1);
    if (static_cast<int>(i) < positives) mask(cv::Rect(size / 4, size / 4, square, square)).setTo(255);
    csv += ids[i] + "," + pneumo::data::encode_rle(mask) + "\n";
  }
  write_file(dir / "train-rle.csv", csv);
  return dir;
}

fs::path experiment_for(const fs::path& set, const fs::path& file) {
  return write_file(file, fmt::format(R"(
experiment: {{name: planned, output_dir: {0}/runs, seed: 3}}
runtime: {{device: cpu, threads: 1}}
data: {{labels: {0}/train-rle.csv, images: {0}/dicom, size: 64, cache: none, workers: 1}}
model: {{name: unet, encoder: {{name: resnet18, in_channels: 1}}, decoder_channels: [32, 16, 16, 8, 8]}}
train: {{epochs: 6, batch_size: 2}}
)",
                                      set.string()));
}

}  // namespace

TEST_CASE("pneumo plan proposes the size, negative share, folds and batch that a known demo set asks for") {
  TempDir dir;
  // 40 images at 256, 10 positive with 64 x 64 masks (6.25%), 2 images per patient.
  const fs::path set = squares_set(dir / "set", 40, 256, 10, 64, 2);
  const fs::path plan = dir / "plan.yaml";
  const auto r = run_pneumo({"plan", experiment_for(set, dir / "base.yaml").string(), "--out", plan.string(),
                             "--max-batch", "4"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  const pneumo::train::ExperimentConfig c = pneumo::train::load_experiment(plan.string(), {});
  CHECK(c.data.size == 128);  // 6.25% of 128 x 128 = 1024 pixels >= 400
  REQUIRE(c.data.negative_share.size() == 2);
  CHECK(c.data.negative_share[0].epoch == 0);
  CHECK(c.data.negative_share[0].share == Approx(0.333));  // 10 positives, 30 negatives
  CHECK(c.data.negative_share[1].epoch == 5);
  CHECK(c.data.negative_share[1].share == 1.0);
  CHECK(c.data.folds == 2);  // 10 positives: 5 per validation fold
  CHECK(c.data.group_by == "patient");
  CHECK(c.train.batch_size == 4);
  CHECK(c.model.encoder.name == "resnet18");  // the source's keys are kept
  const std::string text = read_file(plan);
  CHECK_THAT(text, Contains("size: 128  # plan: the smallest tenth of the 10 pneumothoraces covers 6.25%"));
  CHECK_THAT(text, Contains("images: 40, 10 positive (25.0%)"));
  CHECK_THAT(text, Contains("20 of 20 patients have several images"));
  CHECK_THAT(text, Contains("batch   4:"));
  CHECK_THAT(r.out, Contains("train.batch_size: 4"));
  // An ordinary experiment file, which pneumo cv runs (one epoch here).
  CHECK(run_pneumo({"config", "check", plan.string()}).exit_code == 0);
  const auto cv = run_pneumo({"-q", "cv", plan.string(), "--set", "train.epochs=1", "--set", "experiment.run_name=cv"});
  INFO(cv.err);
  CHECK(cv.exit_code == 0);
  CHECK(fs::exists(set / "runs/planned/cv/cv.md"));
  CHECK(fs::exists(set / "runs/planned/cv/fold-1/finished.json"));
}

TEST_CASE("pneumo plan sizes up for small masks, but never above the images' own size") {
  TempDir dir;
  // 512-pixel images, 48 x 48 masks (0.88%): 144 pixels at 128, 576 at 256.
  const fs::path medium = squares_set(dir / "medium", 12, 512, 6, 48);
  auto r = run_pneumo({"plan", experiment_for(medium, dir / "medium.yaml").string(), "--out",
                       (dir / "medium-plan.yaml").string(), "--max-batch", "2"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(pneumo::train::load_experiment((dir / "medium-plan.yaml").string(), {}).data.size == 256);
  CHECK(pneumo::train::load_experiment((dir / "medium-plan.yaml").string(), {}).data.negative_share.empty());  // 50%
  // 256-pixel images with 8 x 8 masks (0.1%): 400 pixels need 640; the images are 256.
  const fs::path tiny = squares_set(dir / "tiny", 12, 256, 6, 8);
  r = run_pneumo({"plan", experiment_for(tiny, dir / "tiny.yaml").string(), "--out", (dir / "tiny-plan.yaml").string(),
                  "--max-batch", "2"});
  REQUIRE(r.exit_code == 0);
  CHECK(pneumo::train::load_experiment((dir / "tiny-plan.yaml").string(), {}).data.size == 256);
  CHECK_THAT(read_file(dir / "tiny-plan.yaml"), Contains("need at least 640") && Contains("caps it"));
}

TEST_CASE("pneumo plan reads a data folder in the PNG layout, patients from its patients.csv") {
  TempDir dir;
  pneumo::data::DemoSetOptions demo;
  demo.count = 12;
  demo.size = 64;
  demo.png = true;
  demo.images_per_patient = 3;
  pneumo::data::write_demo_set(dir / "set", demo);
  fs::remove(dir / "set" / "train-rle.csv");  // only masks/ and png/ are left to find
  const auto r = run_pneumo({"plan", (dir / "set").string(), "--out", (dir / "plan.yaml").string(), "--set",
                             "runtime.device=cpu", "--set", "model.encoder.name=resnet18", "--set", "data.cache=none",
                             "--max-batch", "2"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  const pneumo::train::ExperimentConfig c = pneumo::train::load_experiment((dir / "plan.yaml").string(), {});
  CHECK(c.data.masks == (dir / "set" / "masks").string());
  CHECK(c.data.images == (dir / "set" / "png").string());
  CHECK(c.data.group_by == "patient");
  CHECK_THAT(read_file(dir / "plan.yaml"), Contains("formats: PNG (12)"));
}

TEST_CASE("pneumo plan fails cleanly when even batch 1 does not fit, and on bad input") {
  TempDir dir;
  const fs::path set = squares_set(dir / "set", 12, 64, 4, 16);
  const fs::path base = experiment_for(set, dir / "base.yaml");
  const fs::path plan = dir / "plan.yaml";
  auto r = run_pneumo({"plan", base.string(), "--out", plan.string(), "--gpu-memory", "0.01"});
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, Contains("even batch 1 does not fit on cpu") && Contains("--gpu-memory"));
  CHECK_FALSE(fs::exists(plan));  // nothing half-made is left

  r = run_pneumo({"plan", (dir / "missing").string(), "--out", plan.string()});
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, Contains("missing: no such file or folder"));
  fs::create_directories(dir / "empty");
  r = run_pneumo({"plan", (dir / "empty").string(), "--out", plan.string()});
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, Contains("found no SIIM label table"));
  r = run_pneumo({"plan", base.string(), "--out", plan.string(), "--set", "data.sizee=3"});
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, Contains("sizee"));
  // No positives: nothing to plan a segmenter from.
  const fs::path negatives = squares_set(dir / "negatives", 6, 64, 0, 8);
  r = run_pneumo({"plan", experiment_for(negatives, dir / "negatives.yaml").string(), "--out", plan.string()});
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, Contains("no image has a pneumothorax"));
  // An existing plan is kept unless --overwrite.
  write_file(plan, "my own notes\n");
  r = run_pneumo({"plan", base.string(), "--out", plan.string()});
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, Contains("--overwrite"));
  CHECK(read_file(plan) == "my own notes\n");
}
