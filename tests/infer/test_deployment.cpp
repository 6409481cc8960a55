// What a deployment is asked beyond Dice: calibration (against scikit-learn and SciPy),
// operating points with bootstrap intervals, tuning for an operating point, the input gate and
// explanations (Grad-CAM of a detector trained here peaks on the lesion).
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include "common.h"
#include "pneumo/core/error.h"
#include "pneumo/data/input_gate.h"
#include "pneumo/infer/calibrate.h"
#include "pneumo/infer/calibration.h"
#include "pneumo/infer/operating_points.h"
#include "pneumo/infer/predict.h"
#include "pneumo/infer/tune.h"
#include "python_reference.h"
#include "test_support.h"

using namespace pneumo;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

std::vector<double> doubles(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kFloat64).contiguous();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

}  // namespace

TEST_CASE("temperature scaling and isotonic regression equal SciPy's and scikit-learn's fits") {
  static const auto reference = testing::python_reference("tests/infer/reference_calibration.py");
  const std::vector<double> scores = doubles(reference.at("scores"));
  std::vector<int> labels;
  for (double l : doubles(reference.at("labels"))) labels.push_back(static_cast<int>(l));

  const infer::Calibration t = infer::fit_temperature(scores, labels);
  // The scores were made 2.5 times too confident; the fit undoes most of it.
  CHECK(t.temperature == Approx(reference.at("temperature").item<double>()).epsilon(1e-6));
  CHECK(t.temperature > 1.5);
  CHECK(t.images == 400);
  const infer::Calibration iso = infer::fit_isotonic(scores, labels);
  const std::vector<double> grid = doubles(reference.at("grid")), expected = doubles(reference.at("isotonic"));
  for (size_t i = 0; i < grid.size(); ++i) {
    INFO("score " << grid[i]);
    CHECK(iso.apply(grid[i]) == Approx(expected[i]).margin(1e-12));
  }
  // Calibration is monotone: the ranking (and so the AUC) stays; ECE falls on the fitting set.
  std::vector<double> calibrated;
  for (double s : scores) calibrated.push_back(t.apply(s));
  for (size_t i = 1; i < scores.size(); ++i)
    CHECK(((scores[i] > scores[0]) == (calibrated[i] > calibrated[0]) || scores[i] == scores[0]));
  CHECK(infer::calibration_figures(calibrated, labels).ece < infer::calibration_figures(scores, labels).ece);
}

TEST_CASE("ECE in equal-width and equal-mass bins and the Brier score by hand") {
  const std::vector<double> p{0.05, 0.15, 0.15, 0.85, 0.95, 0.95};
  const std::vector<int> y{0, 0, 1, 1, 1, 0};
  // Equal width (10 bins): {0.05}: |0-0.05|; {0.15,0.15}: |0.5-0.15|; {0.85}: |1-0.85|; {0.95,0.95}: |0.5-0.95|.
  const double ece = (0.05 + 2 * 0.35 + 0.15 + 2 * 0.45) / 6;
  CHECK(infer::expected_calibration_error(infer::reliability_bins(p, y, 10, false)) == Approx(ece));
  // Equal mass, 3 bins of 2: {0.05,0.15} (0.1 vs 0), {0.15,0.85}... ties stay together: 0.15 twice.
  const auto mass = infer::reliability_bins(p, y, 3, true);
  int64_t counted = 0;
  for (const auto& b : mass) counted += b.count;
  CHECK(counted == 6);
  CHECK(mass.front().count == 3);  // 0.05 and both 0.15s
  CHECK(infer::brier_score(p, y) ==
        Approx((0.0025 + 0.0225 + 0.7225 + 0.0225 + 0.0025 + 0.9025) / 6));
  CHECK_THROWS_AS(infer::fit_temperature({0.2, 0.3}, {0, 0}), core::DataError);
  CHECK_THROWS_WITH(infer::fit_isotonic({0.2, 1.5}, {0, 1}), Contains("not a probability"));
}

TEST_CASE("calibration.yaml and its JSON round-trip, and damaged ones are named errors") {
  testing::TempDir dir;
  infer::Calibration iso = infer::fit_isotonic({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1});
  iso.fitted_on = "validation fold 0";
  infer::write_calibration(dir / "calibration.yaml", iso);
  const infer::Calibration back = infer::read_calibration(dir / "calibration.yaml");
  CHECK(back.method == "isotonic");
  CHECK(back.scores == iso.scores);
  CHECK(back.probabilities == iso.probabilities);
  CHECK(back.fitted_on == "validation fold 0");
  CHECK(infer::calibration_from_json(infer::calibration_to_json(back)).apply(0.5) == Approx(iso.apply(0.5)));

  testing::write_file(dir / "bad.yaml", "calibration: {method: isotonic, scores: [0.5, 0.2], probabilities: [0.1, 0.3]}\n");
  CHECK_THROWS_WITH(infer::read_calibration(dir / "bad.yaml"), Contains("bad.yaml") && Contains("ascending"));
  testing::write_file(dir / "bad2.yaml", "calibration: {method: platt}\n");
  CHECK_THROWS_WITH(infer::read_calibration(dir / "bad2.yaml"), Contains("method") && Contains("isotonic"));
  testing::write_file(dir / "bad3.yaml", "calibration: {method: temperature, temperature: 0}\n");
  CHECK_THROWS_AS(infer::read_calibration(dir / "bad3.yaml"), core::ConfigError);
  CHECK_THROWS_AS(infer::calibration_from_json(R"({"method": "temperature", "temperature": -1})"), core::DataError);
  CHECK_THROWS_AS(infer::calibration_from_json("[1, 2"), core::DataError);
}

TEST_CASE("operating points by hand, seeded bootstrap intervals that resample whole patients") {
  //                              positives: 0.9 0.8 0.4 ; negatives: 0.7 0.3 0.2 0.1
  const std::vector<double> s{0.9, 0.8, 0.4, 0.7, 0.3, 0.2, 0.1};
  const std::vector<int> y{1, 1, 1, 0, 0, 0, 0};
  // Specificity >= 0.75 allows calling 0.7 positive (3 of 4 negatives left): threshold 0.4 then
  // has sensitivity 1 and specificity 0.75.
  const infer::ThresholdPoint a = infer::sensitivity_at_specificity(s, y, 0.75);
  CHECK(a.threshold == 0.4);
  CHECK(a.sensitivity == 1.0);
  CHECK(a.specificity == 0.75);
  // Specificity 1: only 0.9 and 0.8 (sensitivity 2/3).
  CHECK(infer::sensitivity_at_specificity(s, y, 1.0).sensitivity == Approx(2.0 / 3));
  // Sensitivity >= 0.6: threshold 0.8 (2/3), specificity 1.
  const infer::ThresholdPoint b = infer::specificity_at_sensitivity(s, y, 0.6);
  CHECK(b.threshold == 0.8);
  CHECK(b.specificity == 1.0);
  CHECK(std::isnan(infer::sensitivity_at_specificity(s, {1, 1, 1, 1, 1, 1, 1}, 0.9).threshold));

  const auto mean = [&](const std::vector<size_t>& idx) {
    double sum = 0;
    for (size_t i : idx) sum += s[i];
    return std::vector<double>{sum / static_cast<double>(idx.size())};
  };
  infer::BootstrapOptions options;
  const auto first = infer::bootstrap(s.size(), {}, options, mean), again = infer::bootstrap(s.size(), {}, options, mean);
  CHECK(first[0].low == again[0].low);  // seeded
  CHECK(first[0].low < first[0].estimate);
  CHECK(first[0].estimate < first[0].high);
  CHECK(first[0].resamples == 1000);
  // Two patients of identical images: a draw takes a patient's images together, so every
  // resample holds one patient's pair twice or both pairs: the mean is one of three values.
  const std::vector<double> pairs{0.0, 0.0, 1.0, 1.0};
  std::set<double> seen;
  infer::bootstrap(4, {"p1", "p1", "p2", "p2"}, options, [&](const std::vector<size_t>& idx) {
    double sum = 0;
    for (size_t i : idx) sum += pairs[i];
    seen.insert(sum / static_cast<double>(idx.size()));
    return std::vector<double>{0.0};
  });
  for (double m : seen) CHECK((m == 0.0 || m == 0.5 || m == 1.0));
  CHECK_THROWS_AS(infer::bootstrap(3, {"a"}, options, mean), core::Error);
}

TEST_CASE("operating-point targets are read strictly") {
  CHECK(infer::parse_operating_point("sensitivity=0.95").sensitivity);
  CHECK(infer::parse_operating_point("specificity=0.9").level == 0.9);
  CHECK_FALSE(infer::parse_operating_point("specificity=1").sensitivity);
  for (const char* bad : {"sensitivity", "sensitivity=", "recall=0.9", "sensitivity=1.5", "sensitivity=0",
                          "specificity=0.9x", "=0.9"})
    CHECK_THROWS_AS(infer::parse_operating_point(bad), core::UsageError);
}

TEST_CASE("tuning for an operating point: the target is reached, and no setting of the grid does better") {
  // Images whose probability maps are blobs of random height; positives' blobs are on the truth.
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<infer::ImageHistogram> images;
  for (int i = 0; i < 60; ++i) {
    const bool positive = i % 3 == 0;
    cv::Mat probability(32, 32, CV_32FC1, cv::Scalar(0.02f)), truth = cv::Mat::zeros(32, 32, CV_8UC1);
    const float peak = positive ? 0.3f + 0.7f * uniform(rng) : 0.8f * uniform(rng);
    cv::circle(probability, {16, 16}, 2 + static_cast<int>(6 * uniform(rng)), cv::Scalar(peak), cv::FILLED);
    if (positive) cv::circle(truth, {16, 16}, 5, cv::Scalar(255), cv::FILLED);
    const double gate = std::clamp(static_cast<double>(peak) + 0.2 * (uniform(rng) - 0.5), 0.0, 1.0);
    images.push_back(infer::summarise(probability, truth, gate));
  }
  for (const bool sensitivity : {true, false}) {
    const infer::OperatingPointTarget target{sensitivity, sensitivity ? 0.9 : 0.85};
    const infer::OperatingPointSearch found = infer::search_operating_point(images, 1024, {}, target);
    const double reached = sensitivity ? found.decisions.recall : found.decisions.specificity;
    const double other = sensitivity ? found.decisions.specificity : found.decisions.recall;
    INFO(target.describe());
    CHECK(reached >= target.level);
    CHECK(found.dice == Approx(infer::mean_dice(images, found.best)));
    // Brute force over the pixel grid and a fine gate grid: nothing reaches the target with a
    // better other rate (nor, at an equal one, a better Dice).
    for (int bottom = 5; bottom <= 95; bottom += 5)
      for (int top = bottom; top <= 95; top += 10)
        for (int gate = 0; gate <= 100; gate += 2) {
          infer::PostprocessSection s;
          s.threshold = bottom / 100.0;
          s.top_threshold = top / 100.0;
          s.min_area = top == bottom ? 0 : 1;
          s.classifier_threshold = gate / 100.0;
          const train::BinaryMetrics m = infer::image_decisions(images, s);
          if ((sensitivity ? m.recall : m.specificity) < target.level) continue;
          const double theirs = sensitivity ? m.specificity : m.recall;
          CHECK(theirs <= other + 1e-12);
          if (theirs == other) CHECK(infer::mean_dice(images, s) <= found.dice + 1e-12);
        }
  }
  // A positive whose map is empty: no settings find it, so sensitivity 1 cannot be reached.
  cv::Mat truth = cv::Mat::zeros(32, 32, CV_8UC1);
  cv::circle(truth, {16, 16}, 5, cv::Scalar(255), cv::FILLED);
  images.push_back(infer::summarise(cv::Mat::zeros(32, 32, CV_32FC1), truth, 0.9));
  CHECK_THROWS_WITH(infer::search_operating_point(images, 1024, {}, {true, 1.0}),
                    Contains("no post-processing settings reach sensitivity >= 1") && Contains("highest sensitivity"));
  std::vector<infer::ImageHistogram> negatives(images.begin() + 1, images.begin() + 3);
  CHECK_THROWS_WITH(infer::search_operating_point(negatives, 1024, {}, {true, 0.9}), Contains("all negative"));
}

TEST_CASE("the input gate refuses each kind of image it names, with its reason, and each rule switches off") {
  data::GateSection gate;
  gate.photometric = {"MONOCHROME2"};
  gate.bits_stored = {8};
  cv::Mat image(256, 256, CV_8UC1);
  cv::randu(image, 20, 230);
  data::InputFacts facts;
  facts.photometric = "MONOCHROME2";
  facts.bits_stored = 8;
  data::DicomMetadata header;
  header.modality = "CR";
  header.view_position = "PA";
  header.body_part = "CHEST";
  header.patient_age = "045Y";
  facts.dicom = header;
  CHECK(data::check_input(gate, facts, image, 128).accepted);
  CHECK(data::check_input(gate, facts, image, 128).str() == "accepted");

  const auto refused = [&](data::InputFacts f, const cv::Mat& pixels = cv::Mat()) {
    return data::check_input(gate, f, pixels.empty() ? image : pixels, 128);
  };
  auto f = facts;
  f.dicom->view_position = "LL";
  CHECK(refused(f).str() == "refused: lateral_view (View Position LL)");
  f = facts;
  f.dicom->patient_age = "006Y";
  CHECK(refused(f).reason == "paediatric");
  f.dicom->patient_age = "010";  // SIIM's bare digits are years
  CHECK(refused(f).reason == "paediatric");
  f.dicom->patient_age = "018M";
  CHECK(refused(f).reason == "paediatric");
  f = facts;
  f.dicom->modality = "CT";
  CHECK_THAT(refused(f).str(), Contains("modality") && Contains("CT"));
  f.dicom->modality = "";
  CHECK(refused(f).reason == "modality");
  f = facts;
  f.dicom->body_part = "KNEE";
  CHECK(refused(f).reason == "body_part");
  f.dicom->body_part = "";  // the header does not say: not refused
  CHECK(refused(f).accepted);
  f = facts;
  f.photometric = "MONOCHROME1";
  CHECK(refused(f).reason == "photometric");
  f = facts;
  f.bits_stored = 12;
  CHECK(refused(f).reason == "bit_depth");
  CHECK(refused(facts, cv::Mat(100, 300, CV_8UC1, cv::Scalar(90))).reason == "too_small");
  CHECK(refused(facts, cv::Mat(256, 256, CV_8UC1, cv::Scalar(128))).reason == "blank");
  cv::Mat saturated = image.clone();
  saturated(cv::Rect(0, 0, 256, 220)).setTo(255);
  CHECK(refused(facts, saturated).reason == "saturated");
  // A PNG has no header: the header rules pass it.
  data::InputFacts png;
  png.photometric = "PNG grey";
  png.bits_stored = 8;
  gate.photometric = {"MONOCHROME2", "PNG grey"};
  CHECK(data::check_input(gate, png, image, 128).accepted);

  // Each rule off.
  gate.lateral_view = false;
  gate.min_age_years = 0;
  gate.modalities.clear();
  gate.body_parts.clear();
  gate.photometric.clear();
  gate.bits_stored.clear();
  gate.too_small = false;
  gate.blank_std = 0;
  gate.saturated_share = 1;
  f = facts;
  f.dicom->view_position = "LL";
  f.dicom->patient_age = "002Y";
  f.dicom->modality = "CT";
  f.dicom->body_part = "KNEE";
  f.bits_stored = 16;
  CHECK(data::check_input(gate, f, cv::Mat(10, 10, CV_8UC1, cv::Scalar(255)), 128).accepted);
  gate = data::GateSection();
  gate.enabled = false;
  CHECK(data::check_input(gate, f, image, 128).accepted);

  CHECK(*data::age_in_years("045Y") == 45);
  CHECK(*data::age_in_years("006M") == 0.5);
  CHECK(data::age_in_years("52W").has_value());
  for (const char* bad : {"", "Y", "12X", "1234Y", "abc"}) CHECK_FALSE(data::age_in_years(bad).has_value());
}

namespace {

// A synthetic detection task at 64 px: a bright disk (radius 5) on a noisy background of random
// brightness, so that only the disk itself tells the classes apart.
struct Sample {
  cv::Mat image;
  cv::Point centre{-1, -1};
};

Sample synthetic_sample(std::mt19937& rng, bool positive) {
  std::uniform_int_distribution<int> level(50, 150), position(12, 51);
  std::normal_distribution<float> noise(0.0f, 8.0f);
  Sample s;
  s.image = cv::Mat(64, 64, CV_8UC1);
  const int base = level(rng);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x) s.image.at<uint8_t>(y, x) = cv::saturate_cast<uint8_t>(base + x / 2 + noise(rng));
  if (positive) {
    s.centre = {position(rng), position(rng)};
    cv::Mat disk = cv::Mat::zeros(64, 64, CV_8UC1);
    cv::circle(disk, s.centre, 5, cv::Scalar(70), cv::FILLED);
    s.image += disk;
  }
  return s;
}

// Trains the auxiliary head of a U-Net on ResNet18's first three stages (8x8 at 64 px: the head
// and Grad-CAM's stage are the encoder's last) to say whether there is a disk; returns its
// checkpoint.
fs::path train_detector(const fs::path& file) {
  testing::ModelRecipe recipe;
  recipe.size = 64;
  train::ExperimentConfig config = testing::recipe_config(recipe);
  config.model.encoder.depth = 3;
  config.model.decoder_channels = {16, 8, 8};
  torch::manual_seed(3);
  auto net = models::build_model(config.model);
  net->train();
  torch::optim::Adam optimiser(net->parameters(), torch::optim::AdamOptions(2e-3));
  std::mt19937 rng(5);
  data::LoaderOptions normalise;
  for (int step = 0; step < 200; ++step) {
    std::vector<cv::Mat> images;
    std::vector<float> labels;
    for (int i = 0; i < 12; ++i) {
      const bool positive = i % 2 == 0;
      images.push_back(synthetic_sample(rng, positive).image);
      labels.push_back(positive ? 1.0f : 0.0f);
    }
    const torch::Tensor x = data::image_tensor(images, normalise);
    const torch::Tensor logit = models::pneumothorax_logit(net->forward(x), true);
    const torch::Tensor loss = torch::binary_cross_entropy_with_logits(logit, torch::tensor(labels));
    optimiser.zero_grad();
    loss.backward();
    optimiser.step();
  }
  train::Checkpoint c;
  c.config_yaml = train::experiment_to_yaml(config);
  for (const auto& p : net->named_parameters()) c.model.emplace_back(p.key(), p.value().detach());
  for (const auto& b : net->named_buffers()) c.model.emplace_back(b.key(), b.value());
  fs::create_directories(file.parent_path());
  train::write_checkpoint(file, c);
  return file;
}

}  // namespace

TEST_CASE("Grad-CAM and Grad-CAM++ of a trained detector peak on the lesion") {
  testing::TempDir dir;
  torch::set_num_threads(std::max(1, torch::get_num_threads()));
  const fs::path checkpoint = train_detector(dir / "run/best.ckpt");
  infer::EnsembleOptions options;
  options.models = {{checkpoint, 1.0}};
  options.device = "cpu";
  const infer::Predictor predictor = infer::load_predictor(options);
  std::mt19937 rng(99);
  for (const std::string method : {"gradcam", "gradcam++"}) {
    int on_lesion = 0, cases = 0;
    double inside = 0, outside = 0;
    for (int i = 0; i < 10; ++i) {
      const Sample s = synthetic_sample(rng, true);
      infer::InputImage input;
      input.file.id = "synthetic";
      input.pixels = s.image;
      // The detector must have learnt the task for its map to mean anything.
      std::vector<infer::PreparedInput> batch;
      batch.push_back(predictor.prepare(input));
      REQUIRE(*predictor.predict(std::move(batch)).front().image_probability > 0.5);
      const cv::Mat map = predictor.explain(input, {method, 0});  // 0: the deepest, stage 3
      REQUIRE(map.size() == s.image.size());
      double max = 0;
      cv::Point peak;
      cv::minMaxLoc(map, nullptr, &max, nullptr, &peak);
      CHECK(max == Approx(1.0));
      ++cases;
      if (cv::norm(peak - s.centre) <= 5 + 8) ++on_lesion;  // the disk's radius + one cell of the 8x8 map
      cv::Mat disk = cv::Mat::zeros(64, 64, CV_8UC1);
      cv::circle(disk, s.centre, 5, cv::Scalar(255), cv::FILLED);
      inside += cv::mean(map, disk)[0];
      outside += cv::mean(map, ~disk)[0];
    }
    INFO(method << ": the map's peak was on the disk in " << on_lesion << " of " << cases);
    CHECK(on_lesion >= cases - 1);
    CHECK(inside > 3 * outside);
  }
  CHECK_THROWS_AS(predictor.explain(infer::InputImage{{"x", {}}, cv::Mat(64, 64, CV_8UC1, cv::Scalar(9))}, {"gradcam", 4}),
                  core::UsageError);  // deeper than the encoder
  CHECK_THROWS_AS(predictor.explain(infer::InputImage{{"x", {}}, cv::Mat(64, 64, CV_8UC1, cv::Scalar(9))}, {"cam", 0}),
                  core::UsageError);
}
