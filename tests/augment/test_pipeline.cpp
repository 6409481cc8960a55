// Pipelines from YAML: parsing and its errors, probabilities, the range of random draws,
// OneOf weights, image/mask alignment, determinism and the shipped presets.
#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <set>

#include <opencv2/imgproc.hpp>

#include "pneumo/augment/functional.h"
#include "pneumo/augment/pipeline.h"
#include "pneumo/core/error.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

using namespace pneumo;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

augment::Pipeline parse(const std::string& yaml) {
  return augment::Pipeline::from_config(core::parse_yaml(yaml, "test.yaml"), "augment.train");
}

// A ramp 0..255 along x, 64 rows: every grey level present, left/right asymmetric.
cv::Mat ramp() {
  cv::Mat img(64, 256, CV_8UC1);
  for (int y = 0; y < img.rows; ++y)
    for (int x = 0; x < img.cols; ++x) img.at<uint8_t>(y, x) = static_cast<uint8_t>(x);
  return img;
}

cv::Mat run(const augment::Pipeline& p, const cv::Mat& image, uint64_t seed, cv::Mat* mask = nullptr) {
  augment::Target t{image.clone(), mask ? mask->clone() : cv::Mat()};
  core::Rng rng(seed);
  p.apply(t, rng);
  if (mask) *mask = t.mask;
  return t.image;
}

bool same(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

}  // namespace

TEST_CASE("a pipeline reads Albumentations' structure, names alone and nested OneOf") {
  const auto p = parse(R"(
- HorizontalFlip: {p: 0.5}
- RandomGamma
- OneOf:
    p: 0.3
    transforms:
      - RandomContrast
      - {RandomBrightness: {limit: 0.1}}
- ShiftScaleRotate: {shift_limit: 0.1, scale_limit: [-0.2, 0.1], rotate_limit: 10,
                     border_mode: constant, interpolation: cv2.INTER_CUBIC}
- ToFloat: {max_value: 255}
)");
  CHECK(p.size() == 5);
  CHECK(augment::Pipeline::from_config(core::ConfigNode(), "x").empty());
  CHECK(augment::op_names().size() == 22);
}

TEST_CASE("pipeline errors name the place, the op and what is valid") {
  CHECK_THROWS_WITH(parse("- HorizontalFlp: {p: 0.5}"),
                    Contains("test.yaml:1:3") && Contains("augment.train[0]") &&
                        Contains("unknown augmentation op 'HorizontalFlp'") &&
                        Contains("did you mean 'HorizontalFlip'") && Contains("ShiftScaleRotate"));
  CHECK_THROWS_WITH(parse("- ShiftScaleRotate: {rotat_limit: 5}"),
                    Contains("test.yaml:1:22") && Contains("unknown parameter 'rotat_limit'") &&
                        Contains("did you mean 'rotate_limit'") && Contains("ShiftScaleRotate takes"));
  CHECK_THROWS_WITH(parse("- Blur: {p: 1.5}"), Contains("augment.train[0].Blur.p") && Contains("[0.0, 1.0]"));
  CHECK_THROWS_WITH(parse("- ShiftScaleRotate: {border_mode: mirror}"),
                    Contains("border_mode") && Contains("reflect_101 (4)"));
  CHECK_THROWS_WITH(parse("- ShiftScaleRotate: {scale_limit: [0.2, -0.2]}"), Contains("lo > hi"));
  CHECK_THROWS_WITH(parse("- RandomSizedCrop: {height: 32, width: 32}"), Contains("min_max_height"));
  CHECK_THROWS_WITH(parse("- OneOf: {p: 0.5}"), Contains("transforms") && Contains("required"));
  CHECK_THROWS_WITH(parse("- OneOf: {transforms: [{Blr: {}}]}"),
                    Contains("augment.train[0].OneOf.transforms[0]") && Contains("'Blr'"));
  CHECK_THROWS_WITH(parse("- Normalize: {}"), Contains("one grey channel") && Contains("data.mean"));
  CHECK_THROWS_WITH(parse("- {HorizontalFlip: {}, VerticalFlip: {}}"), Contains("several keys"));
  CHECK_THROWS_WITH(parse("HorizontalFlip: {}"), Contains("expected a list of ops"));
}

TEST_CASE("p gates each op: never at 0, always at 1, about p of the time otherwise") {
  const cv::Mat img = ramp();
  const cv::Mat flipped = augment::fn::hflip(img);
  CHECK(same(run(parse("- HorizontalFlip: {p: 0}"), img, 1), img));
  CHECK(same(run(parse("- HorizontalFlip: {p: 0, always_apply: true}"), img, 1), flipped));
  CHECK(same(run(parse("- HorizontalFlip: {p: 1}"), img, 1), flipped));
  int hits = 0;
  const auto p = parse("- HorizontalFlip: {p: 0.3}");
  for (uint64_t s = 0; s < 2000; ++s) hits += same(run(p, img, s), flipped);
  CHECK(hits == Approx(600).margin(90));  // 0.3 * 2000, 4.4 standard deviations
}

TEST_CASE("OneOf picks its children in proportion to their p and applies the pick fully") {
  const cv::Mat img = ramp();
  const auto p = parse(R"(
- OneOf:
    p: 1
    transforms:
      - HorizontalFlip: {p: 0.2}
      - VerticalFlip: {p: 0.6}
      - Blur: {p: 0.2, blur_limit: [3, 3]}
)");
  const cv::Mat h = augment::fn::hflip(img), v = augment::fn::vflip(img), b = augment::fn::blur(img, 3);
  std::map<std::string, int> counts;
  for (uint64_t s = 0; s < 3000; ++s) {
    const cv::Mat out = run(p, img, s);
    counts[same(out, h) ? "h" : same(out, v) ? "v" : same(out, b) ? "b" : "other"]++;
  }
  CHECK(counts["other"] == 0);
  CHECK(counts["h"] == Approx(600).margin(100));
  CHECK(counts["v"] == Approx(1800).margin(130));
  CHECK(counts["b"] == Approx(600).margin(100));
}

TEST_CASE("random draws stay in their ranges and reach both ends") {
  const cv::Mat img = ramp();
  SECTION("RandomGamma draws every integer of gamma_limit") {
    const auto p = parse("- RandomGamma: {p: 1, gamma_limit: [80, 120]}");
    std::map<int, cv::Mat> by_gamma;
    for (int g = 70; g <= 130; ++g) by_gamma[g] = augment::fn::gamma_transform(img, g / 100.0);
    std::set<int> seen;
    for (uint64_t s = 0; s < 1500; ++s) {
      const cv::Mat out = run(p, img, s);
      int match = -1;
      for (const auto& [g, expected] : by_gamma)
        if (same(out, expected)) match = g;
      REQUIRE(match != -1);
      seen.insert(match);
    }
    CHECK(*seen.begin() == 80);
    CHECK(*seen.rbegin() == 120);
    CHECK(seen.size() >= 35);  // a few neighbouring gammas give identical 8-bit tables
  }
  SECTION("RandomBrightness shifts by at most limit * 255 and reaches both signs") {
    const auto p = parse("- RandomBrightness: {p: 1, limit: 0.2}");
    double low = 1e9, high = -1e9;
    for (uint64_t s = 0; s < 2000; ++s) {
      const cv::Mat out = run(p, img, s);
      const double shift = out.at<uint8_t>(0, 128) - 128.0;  // truncated beta * 255
      low = std::min(low, shift);
      high = std::max(high, shift);
    }
    CHECK(low >= -51);
    CHECK(high <= 51);
    CHECK(low <= -49);
    CHECK(high >= 49);
  }
  SECTION("Blur uses each odd size of blur_limit") {
    const auto p = parse("- Blur: {p: 1, blur_limit: 7}");
    std::set<int> seen;
    for (uint64_t s = 0; s < 300; ++s) {
      const cv::Mat out = run(p, img, s);
      for (int k : {3, 5, 7})
        if (same(out, augment::fn::blur(img, k))) seen.insert(k);
    }
    CHECK(seen == std::set<int>{3, 5, 7});
  }
  SECTION("RandomSizedCrop crops between min and max height") {
    // Image value = row index, so the crop's height shows in the output's value range.
    cv::Mat rows(200, 100, CV_8UC1);
    for (int y = 0; y < rows.rows; ++y) rows.row(y).setTo(y);
    const auto p = parse("- RandomSizedCrop: {min_max_height: [50, 150], height: 200, width: 100, "
                         "w2h_ratio: 0.5, interpolation: nearest}");
    int low = 1000, high = 0;
    for (uint64_t s = 0; s < 2000; ++s) {
      const cv::Mat out = run(p, rows, s);
      REQUIRE(out.size() == rows.size());
      double a = 0, b = 0;
      cv::minMaxLoc(out, &a, &b);
      const int span = static_cast<int>(b - a) + 1;
      low = std::min(low, span);
      high = std::max(high, span);
    }
    CHECK(low == 50);
    CHECK(high == 150);
  }
}

TEST_CASE("every spatial op moves the mask exactly like the image") {
  // With nearest interpolation and equal fills, an image equal to its mask must stay equal.
  cv::Mat mask = cv::Mat::zeros(96, 96, CV_8UC1);
  cv::ellipse(mask, {30, 40}, {18, 9}, 30, 0, 360, cv::Scalar(255), -1);
  cv::rectangle(mask, {60, 10}, {80, 70}, cv::Scalar(255), -1);
  const std::string common = "p: 1, interpolation: nearest, value: 0, mask_value: 0";
  const std::vector<std::string> ops = {
      "HorizontalFlip: {p: 1}",
      "VerticalFlip: {p: 1}",
      "ShiftScaleRotate: {" + common + ", border_mode: constant}",
      "ShiftScaleRotate: {" + common + "}",
      "ElasticTransform: {" + common + ", alpha: 40, sigma: 5, alpha_affine: 4}",
      "ElasticTransform: {" + common + ", alpha: 40, sigma: 5, alpha_affine: 4, approximate: true}",
      "GridDistortion: {" + common + ", distort_limit: 0.4}",
      "OpticalDistortion: {" + common + ", distort_limit: 0.8, shift_limit: 3}",
      "RandomSizedCrop: {p: 1, min_max_height: [40, 90], height: 64, width: 64, interpolation: nearest}",
      "RandomCrop: {height: 50, width: 70}",
      "CenterCrop: {height: 50, width: 70}",
      "Resize: {height: 50, width: 70, interpolation: nearest}",
  };
  for (const std::string& op : ops) {
    INFO(op);
    const auto p = parse("- " + op);
    int changed = 0;
    for (uint64_t s = 0; s < 5; ++s) {
      cv::Mat out_mask = mask;
      const cv::Mat out = run(p, mask, s, &out_mask);
      REQUIRE(out.size() == out_mask.size());
      CHECK(cv::norm(out, out_mask, cv::NORM_INF) == 0);
      changed += out.size() != mask.size() || cv::norm(out, mask, cv::NORM_INF) > 0;
    }
    CHECK(changed > 0);
  }
}

TEST_CASE("pixel ops leave the mask alone") {
  cv::Mat mask = cv::Mat::zeros(64, 64, CV_8UC1);
  cv::circle(mask, {20, 20}, 10, cv::Scalar(255), -1);
  const auto p = parse(R"(
- RandomBrightnessContrast: {p: 1}
- RandomGamma: {p: 1}
- CLAHE: {p: 1}
- GaussNoise: {p: 1}
- Blur: {p: 1}
- CoarseDropout: {p: 1, max_holes: 4, max_height: 10, max_width: 10}
- ToFloat: {max_value: 255}
- Normalize: {mean: 0.5, std: 0.25, max_pixel_value: 1.0}
)");
  cv::Mat out_mask = mask;
  const cv::Mat out = run(p, ramp()(cv::Rect(0, 0, 64, 64)), 3, &out_mask);
  CHECK(out.type() == CV_32FC1);
  CHECK(cv::norm(out_mask, mask, cv::NORM_INF) == 0);
}

TEST_CASE("the same seed gives the same result, another seed another one") {
  const auto p = parse(R"(
- ShiftScaleRotate: {p: 1}
- ElasticTransform: {p: 1, alpha: 20, sigma: 4, alpha_affine: 3}
- GaussNoise: {p: 1}
)");
  const cv::Mat img = ramp()(cv::Rect(0, 0, 64, 64)).clone();
  CHECK(same(run(p, img, 11), run(p, img, 11)));
  CHECK_FALSE(same(run(p, img, 11), run(p, img, 12)));
}

TEST_CASE("an op that does not fit the image says which op and why") {
  const auto p = parse("- RandomCrop: {height: 100, width: 10}");
  CHECK_THROWS_WITH(run(p, ramp(), 1), Contains("RandomCrop") && Contains("larger than"));
  const auto clahe = parse("- ToFloat\n- CLAHE: {p: 1}");
  CHECK_THROWS_WITH(run(clahe, ramp(), 1), Contains("CLAHE") && Contains("8-bit"));
}

TEST_CASE("every shipped preset parses and runs on a 256 image") {
  const fs::path dir = fs::path(PNEUMO_SOURCE_DIR) / "configs" / "augment";
  int presets = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    INFO(entry.path());
    const auto p = augment::Pipeline::from_file(entry.path());
    CHECK_FALSE(p.empty());
    cv::Mat mask = cv::Mat::zeros(256, 256, CV_8UC1), square;
    cv::resize(ramp(), square, {256, 256});
    for (uint64_t s = 0; s < 20; ++s) {
      cv::Mat m = mask;
      const cv::Mat out = run(p, square, s, &m);
      CHECK(out.size() == m.size());
    }
    ++presets;
  }
  CHECK(presets >= 2);
}

TEST_CASE("a pipeline named by file is read relative to the file that names it") {
  pneumo::testing::TempDir dir;
  pneumo::testing::write_file(dir / "pipes/flip.yaml", "- HorizontalFlip: {p: 1}\n");
  pneumo::testing::write_file(dir / "exp.yaml", "train: pipes/flip.yaml\n");
  const core::ConfigNode root = core::load_yaml_file(dir / "exp.yaml");
  const auto p = augment::Pipeline::from_config(*root.find("train"), "augment.train");
  CHECK(same(run(p, ramp(), 1), augment::fn::hflip(ramp())));
  pneumo::testing::write_file(dir / "bad.yaml", "train: pipes/none.yaml\n");
  CHECK_THROWS_WITH(augment::Pipeline::from_config(*core::load_yaml_file(dir / "bad.yaml").find("train"), "x"),
                    Contains("none.yaml"));
}
