// The cross-validation folder's files on their own: out-of-fold tables and maps written by
// hand, scored and tuned exactly; damaged tables rejected with their file and line, fuzzed.
#include <catch2/catch.hpp>

#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "pneumo/core/error.h"
#include "pneumo/data/rle.h"
#include "pneumo/infer/cross_validation.h"
#include "test_support.h"

using namespace pneumo;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

// A CV folder with two folds of three 64x64 images each; maps stored at 32x32. Image i's truth
// is a square, present for even i; its map is 1 on the square (or `noise` elsewhere).
void write_cv_folder(const fs::path& top, float noise) {
  infer::CvManifest manifest;
  manifest.folds = {0, 1};
  infer::write_cv_manifest(top, manifest);
  for (int fold = 0; fold < 2; ++fold) {
    fs::create_directories(top / fmt::format("fold-{}", fold));
    infer::write_fold_finished(top, fold, {2, "val_dice", 0.5, 2, false});
    std::string csv = "ImageId,height,width,score,gate,truth\n";
    for (int j = 0; j < 3; ++j) {
      const int i = fold * 3 + j;
      cv::Mat truth = cv::Mat::zeros(64, 64, CV_8UC1);
      if (i % 2 == 0) truth(cv::Rect(8 * j, 16, 16, 16)).setTo(255);
      cv::Mat map(32, 32, CV_8UC1, cv::Scalar(static_cast<int>(noise * 255)));
      if (i % 2 == 0) map(cv::Rect(4 * j, 8, 8, 8)).setTo(255);
      fs::create_directories(top / fmt::format("oof/fold-{}", fold));
      cv::imwrite((top / fmt::format("oof/fold-{}/img{}.png", fold, i)).string(), map);
      csv += fmt::format("img{},64,64,{},,{}\n", i, i % 2 == 0 ? 0.9 : 0.1, data::encode_rle(truth));
    }
    pneumo::testing::write_file(top / fmt::format("oof/fold-{}.csv", fold), csv);
  }
}

}  // namespace

TEST_CASE("OOF predictions read back, score and tune exactly from their files") {
  pneumo::testing::TempDir dir;
  const fs::path top = dir / "cv";
  write_cv_folder(top, 0.3f);
  REQUIRE(infer::is_cv_folder(top));
  CHECK_FALSE(infer::is_cv_folder(dir.path()));
  const infer::CvManifest manifest = infer::read_cv_manifest(top);
  CHECK(manifest.folds == std::vector<int>{0, 1});
  const std::vector<infer::OofImage> images = infer::read_out_of_fold(top, 1);
  REQUIRE(images.size() == 3);
  CHECK(images[0].id == "img3");
  CHECK(images[0].height == 64);
  CHECK_FALSE(images[0].gate.has_value());
  const cv::Mat map = infer::read_out_of_fold_map(top, 1, images[1]);
  CHECK(map.size() == cv::Size(64, 64));
  CHECK(map.at<float>(40, 40) == Approx(76.0 / 255));  // the stored 8-bit value, resized bilinearly

  // Starting at 0.2 the noise (0.3) is inside every mask; tuning finds a threshold above it.
  infer::PostprocessSection start;
  start.threshold = start.top_threshold = 0.2;
  const infer::CvReport report = infer::tune_out_of_fold(top, manifest, start);
  REQUIRE(report.per_fold.size() == 2);
  CHECK(report.segments);
  CHECK(report.overall.images == 6);
  CHECK(report.overall.positives == 3);
  CHECK(report.overall.dice == Approx(1.0));
  CHECK(report.overall.iou == Approx(1.0));
  CHECK(report.overall.dice_start < 0.5);
  CHECK(report.tuned.threshold > 0.3);
  CHECK(report.overall.auc == Approx(1.0));
  CHECK(report.training[1].best_epoch == 2);
  CHECK(fs::exists(top / "postprocess.yaml"));
  const std::string md = infer::write_cv_report(top, report);
  CHECK_THAT(md, Contains("| 0 | 3 | 2 |") && Contains("all OOF") && Contains("± "));
  const nlohmann::json j = nlohmann::json::parse(pneumo::testing::read_file(top / "cv.json"));
  CHECK(j["overall"]["dice"].get<double>() == Approx(1.0));
  CHECK(j["folds"].size() == 2);
  CHECK(j["postprocess"]["tuned"]["threshold"].get<double>() == report.tuned.threshold);

  // An image in two folds breaks the out-of-fold guarantee.
  const std::string fold1 = pneumo::testing::read_file(top / "oof/fold-1.csv");
  pneumo::testing::write_file(top / "oof/fold-1.csv", fold1 + "img0,64,64,0.9,,-1\n");
  cv::imwrite((top / "oof/fold-1/img0.png").string(), cv::Mat::zeros(32, 32, CV_8UC1));
  CHECK_THROWS_WITH(infer::tune_out_of_fold(top, manifest, start), Contains("img0") && Contains("also in fold 0"));
  pneumo::testing::write_file(top / "oof/fold-1.csv", fold1);
  // A map missing, or of another kind, is named.
  fs::remove(top / "oof/fold-1/img4.png");
  CHECK_THROWS_WITH(infer::tune_out_of_fold(top, manifest, start), Contains("img4") && Contains("no probability map"));
  pneumo::testing::write_file(top / "oof/fold-1/img4.png", "not a png");
  CHECK_THROWS_AS(infer::tune_out_of_fold(top, manifest, start), core::DataError);
}

TEST_CASE("damaged OOF tables and manifests are errors naming the file, never crashes (fuzzed)") {
  pneumo::testing::TempDir dir;
  const fs::path top = dir / "cv";
  write_cv_folder(top, 0.0f);
  const std::string table = pneumo::testing::read_file(top / "oof/fold-0.csv");
  std::mt19937 rng(11);
  const std::string alphabet = "0123456789,-. \"\nx";
  int rejected = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    std::string mutated = table;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % mutated.size();
      switch (rng() % 3) {
        case 0: mutated[at] = alphabet[rng() % alphabet.size()]; break;
        case 1: mutated.erase(at, 1 + rng() % 8); break;
        default: mutated.insert(at, 1, alphabet[rng() % alphabet.size()]);
      }
    }
    pneumo::testing::write_file(top / "oof/fold-0.csv", mutated);
    try {
      infer::tune_out_of_fold(top, infer::read_cv_manifest(top), {});
    } catch (const core::DataError& e) {
      ++rejected;
      CHECK_THAT(std::string(e.what()), Contains("fold-0"));
    }
  }
  CHECK(rejected > 500);
  for (const std::string& manifest : {std::string("{"), std::string("[]"), std::string(R"({"format": "pneumo-cv"})"),
                                      std::string(R"({"format": "pneumo-cv", "folds": [], "members": "best", "oof_hflip": false})"),
                                      std::string(R"({"format": "pneumo-cv", "folds": [{"fold": -2}], "members": "best", "oof_hflip": false})"),
                                      std::string(R"({"format": "other", "folds": [{"fold": 0}], "members": "best", "oof_hflip": false})")}) {
    pneumo::testing::write_file(top / "ensemble.json", manifest);
    INFO(manifest);
    CHECK_THROWS_WITH(infer::read_cv_manifest(top), Contains("ensemble.json"));
  }
}
