// Evaluation, tuning and weight averaging: curves and Dice by hand, the tuner's histogram
// arithmetic against real post-processing, and reports on small demo sets.
#include <catch2/catch.hpp>

#include <random>

#include <nlohmann/json.hpp>

#include "common.h"
#include "pneumo/core/error.h"
#include "pneumo/data/data_section.h"
#include "pneumo/data/demo_set.h"
#include "pneumo/data/folds.h"
#include "pneumo/infer/evaluate.h"
#include "pneumo/infer/tune.h"
#include "pneumo/train/average.h"
#include "test_support.h"

using namespace pneumo;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

// A demo set and a run folder holding a random-weight best.ckpt trained "on" it: config.yaml
// naming the set and folds.csv, as training leaves them.
fs::path make_run(const pneumo::testing::TempDir& dir, uint64_t seed = 1) {
  if (!fs::exists(dir / "set")) {
    data::DemoSetOptions demo;
    demo.count = 16;
    demo.size = 96;
    data::write_demo_set(dir / "set", demo);
  }
  const fs::path run = dir / fmt::format("run{}", seed);
  testing::ModelRecipe recipe;
  recipe.seed = seed;
  train::ExperimentConfig config = testing::recipe_config(recipe);
  config.data.labels = (dir / "set/train-rle.csv").string();
  config.data.images = (dir / "set/dicom").string();
  config.data.folds = 4;
  config.data.cache = "none";
  config.train.batch_size = 4;
  testing::write_random_checkpoint(run / "best.ckpt", recipe);
  train::Checkpoint c = train::read_checkpoint(run / "best.ckpt");
  c.config_yaml = train::experiment_to_yaml(config);
  train::write_checkpoint(run / "best.ckpt", c);
  pneumo::testing::write_file(run / "config.yaml", c.config_yaml);
  const data::Dataset dataset = data::open_dataset(config.data);
  data::write_folds_csv(run / "folds.csv", dataset.index(), data::assign_folds(config.data, dataset.index(), 1));
  return run;
}

}  // namespace

TEST_CASE("Dice, IoU, ROC and precision-recall points by hand") {
  cv::Mat a = cv::Mat::zeros(4, 4, CV_8UC1), b = cv::Mat::zeros(4, 4, CV_8UC1);
  CHECK(infer::mask_dice(a, b) == 1.0);  // both empty
  CHECK(infer::mask_iou(a, b) == 1.0);
  a(cv::Rect(0, 0, 2, 2)).setTo(255);  // 4 pixels
  CHECK(infer::mask_dice(a, b) == 0.0);
  b(cv::Rect(1, 0, 2, 2)).setTo(255);  // 4 pixels, 2 shared
  CHECK(infer::mask_dice(a, b) == Approx(2.0 * 2 / 8));
  CHECK(infer::mask_iou(a, b) == Approx(2.0 / 6));

  const std::vector<double> scores{0.9, 0.8, 0.8, 0.3};
  const std::vector<int> labels{1, 0, 1, 0};
  const auto roc = infer::roc_curve(scores, labels);
  REQUIRE(roc.size() == 4);
  CHECK(roc[0] == std::make_pair(0.0, 0.0));
  CHECK(roc[1] == std::make_pair(0.0, 0.5));
  CHECK(roc[2] == std::make_pair(0.5, 1.0));  // the tie at 0.8 is one step
  CHECK(roc[3] == std::make_pair(1.0, 1.0));
  const auto pr = infer::pr_curve(scores, labels);
  REQUIRE(pr.size() == 3);
  CHECK(pr[0] == std::make_pair(0.5, 1.0));
  CHECK(pr[1].first == 1.0);
  CHECK(pr[1].second == Approx(2.0 / 3));
  CHECK(pr[2].second == Approx(0.5));
}

TEST_CASE("the tuner's histogram Dice and IoU equal post-processing the maps, for every rule") {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<cv::Mat> maps, truths;
  std::vector<std::optional<double>> gates;
  std::vector<infer::ImageHistogram> summaries;
  for (int i = 0; i < 12; ++i) {
    cv::Mat p(24, 20, CV_32FC1);
    for (int y = 0; y < p.rows; ++y)
      for (int x = 0; x < p.cols; ++x) p.at<float>(y, x) = uniform(rng) * uniform(rng);  // mostly low
    if (i % 4 == 0) p.setTo(0.0f);  // some all-zero maps
    cv::Mat truth = cv::Mat::zeros(p.size(), CV_8UC1);
    if (i % 2 == 0) truth(cv::Rect(i % 5, 3, 6, 8)).setTo(255);
    const std::optional<double> gate = uniform(rng);
    maps.push_back(p);
    truths.push_back(truth);
    gates.push_back(gate);
    summaries.push_back(infer::summarise(p, truth, gate));
  }
  for (const double bottom : {0.05, 0.2, 0.35, 0.5})
    for (const double top : {0.35, 0.6, 0.9})
      for (const int64_t area : {0, 1, 5, 30})
        for (const double gate : {0.0, 0.4}) {
          infer::PostprocessSection s;
          s.threshold = bottom;
          s.top_threshold = top;
          s.min_area = area;
          s.classifier_threshold = gate;
          double direct = 0;
          for (size_t i = 0; i < maps.size(); ++i) {
            const cv::Mat mask = infer::postprocess(maps[i], s, gates[i]);
            direct += infer::mask_dice(mask, truths[i]);
            const infer::ImageOverlap overlap = infer::image_overlap(summaries[i], s);
            CHECK(overlap.dice == Approx(infer::mask_dice(mask, truths[i])).epsilon(1e-12));
            CHECK(overlap.iou == Approx(infer::mask_iou(mask, truths[i])).epsilon(1e-12));
          }
          INFO("bottom " << bottom << " top " << top << " area " << area << " gate " << gate);
          CHECK(infer::mean_dice(summaries, s) == Approx(direct / static_cast<double>(maps.size())).epsilon(1e-12));
        }
}

TEST_CASE("evaluate writes metrics, per-image rows and charts, tune's best is what evaluate then measures") {
  pneumo::testing::TempDir dir;
  const fs::path run = make_run(dir);
  infer::EvaluateOptions e;
  e.run.models = {{run, 1.0}};
  e.run.device = "cpu";
  e.out = dir / "report";
  e.run.postprocess.threshold = 1.0;  // nothing is ever called: Dice is the share of negative images
  e.run.postprocess.top_threshold = 1.0;
  const infer::EvaluationReport empty = infer::evaluate(e);
  CHECK(empty.images == 4);  // the validation fold of 16 images in 4 folds
  CHECK_THAT(empty.set, Contains("validation fold 0"));
  const auto rows = pneumo::testing::read_file(dir / "report/per_image.csv");
  int negatives = 0, lines = 0;
  std::istringstream in(rows);
  for (std::string line; std::getline(in, line); ++lines)
    if (lines > 0 && line.substr(line.find(',') + 1, 1) == "0") ++negatives;
  CHECK(lines == 5);
  CHECK(empty.dice == Approx(negatives / 4.0));
  CHECK(empty.image.tp == 0);
  for (const char* f : {"metrics.json", "roc.png", "pr.png", "confusion.png", "dice_histogram.png"})
    CHECK(fs::exists(dir / "report" / f));
  const auto metrics = nlohmann::json::parse(pneumo::testing::read_file(dir / "report/metrics.json"));
  CHECK(metrics["images"] == 4);
  CHECK(metrics["kaggle_dice"].get<double>() == Approx(empty.dice));

  infer::TuneOptions t;
  t.run.models = {{run, 1.0}};
  t.run.device = "cpu";
  const infer::TuneResult tuned = infer::tune(t);
  CHECK(tuned.written == run / "postprocess.yaml");
  CHECK(tuned.best_dice >= tuned.start_dice);
  CHECK(tuned.best_dice >= empty.dice);  // calling nothing is among the choices (top 0.95, large area)
  e.run.postprocess = {};  // now the run's tuned postprocess.yaml
  e.out = dir / "report2";
  const infer::EvaluationReport after = infer::evaluate(e);
  CHECK(after.postprocess.min_area == tuned.best.min_area);
  CHECK(after.dice == Approx(tuned.best_dice).epsilon(1e-9));
}

TEST_CASE("evaluate and tune refuse what they cannot do") {
  pneumo::testing::TempDir dir;
  testing::write_random_checkpoint(dir / "loose.ckpt", {});
  infer::EvaluateOptions e;
  e.run.models = {{dir / "loose.ckpt", 1.0}};
  e.out = dir / "report";
  e.run.device = "cpu";
  CHECK_THROWS_WITH(infer::evaluate(e), Contains("--labels"));  // not in a run folder, no labels
  infer::TuneOptions t;
  t.run = e.run;
  CHECK_THROWS_WITH(infer::tune(t), Contains("--out"));
}

TEST_CASE("average: the mean of the weights, BatchNorm recomputed over the training folds") {
  pneumo::testing::TempDir dir;
  const fs::path a = make_run(dir, 1), b = make_run(dir, 2);
  train::AverageOptions o;
  o.checkpoints = {a / "best.ckpt", b / "best.ckpt"};
  o.out = dir / "mean.ckpt";
  o.recompute_batchnorm = false;
  o.device = "cpu";
  CHECK(train::average_checkpoints(o).checkpoints == 2);
  const auto x = train::read_checkpoint(a / "best.ckpt"), y = train::read_checkpoint(b / "best.ckpt"),
             m = train::read_checkpoint(dir / "mean.ckpt");
  REQUIRE(m.model.size() == x.model.size());
  for (size_t i = 0; i < m.model.size(); ++i) {
    INFO(m.model[i].first);
    if (m.model[i].second.is_floating_point())
      CHECK(torch::allclose(m.model[i].second, (x.model[i].second + y.model[i].second) / 2, 1e-6, 1e-7));
  }
  o.recompute_batchnorm = true;
  o.out = dir / "mean-bn.ckpt";
  const train::AverageSummary s = train::average_checkpoints(o);
  CHECK(s.batchnorm_layers > 10);
  CHECK(s.batchnorm_images == 12);  // three of four folds
  const auto n = train::read_checkpoint(dir / "mean-bn.ckpt");
  for (size_t i = 0; i < n.model.size(); ++i)
    if (n.model[i].first.find("running_mean") != std::string::npos) {
      INFO(n.model[i].first);
      CHECK_FALSE(torch::allclose(n.model[i].second, m.model[i].second));  // recomputed, not averaged
    }

  testing::ModelRecipe other;
  other.encoder = "resnet34";
  testing::write_random_checkpoint(dir / "other.ckpt", other);
  o.checkpoints = {a / "best.ckpt", dir / "other.ckpt"};
  CHECK_THROWS_WITH(train::average_checkpoints(o), Contains("other.ckpt") && Contains("model"));
  o.checkpoints = {a / "best.ckpt"};
  CHECK_THROWS_AS(train::average_checkpoints(o), core::UsageError);
}
