// The data layouts besides DICOM + RLE table: PNG/JPEG images (8- and 16-bit), mask folders,
// and folds grouped by patient (from DICOM headers or a patients CSV).
#include <catch2/catch.hpp>

#include <map>
#include <random>
#include <set>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "pneumo/core/config_node.h"
#include "pneumo/core/config_schema.h"
#include "pneumo/core/error.h"
#include "pneumo/data/data_section.h"
#include "pneumo/data/dataset.h"
#include "pneumo/data/demo_set.h"
#include "pneumo/data/dicom.h"
#include "pneumo/data/folds.h"
#include "pneumo/data/image_io.h"
#include "pneumo/data/loader.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

using namespace pneumo;
using Catch::Matchers::Contains;
using pneumo::testing::TempDir;
namespace fs = std::filesystem;

namespace {

data::DemoSetSummary png_demo_set(const fs::path& dir, int count = 12, int per_patient = 1) {
  data::DemoSetOptions options;
  options.count = count;
  options.size = 64;
  options.png = true;
  options.images_per_patient = per_patient;
  return data::write_demo_set(dir, options);
}

data::DataSection section(const std::string& yaml) {
  return core::read_section<data::DataSection>(core::parse_yaml(yaml, "data.yaml"), "data");
}

// Samples by image id.
std::map<std::string, data::Sample> samples_of(const data::Dataset& dataset) {
  std::map<std::string, data::Sample> out;
  for (int64_t i = 0; i < dataset.size(); ++i) {
    data::Sample s = dataset.load(i);
    out.emplace(s.image_id, std::move(s));
  }
  return out;
}

bool same_pixels(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::countNonZero(a != b) == 0;
}

}  // namespace

TEST_CASE("a PNG image + mask folder gives the DICOM + RLE layout's samples and batches") {
  TempDir dir;
  png_demo_set(dir.path());
  const data::Dataset dicom = data::open_dataset(
      section(fmt::format("{{labels: {0}/train-rle.csv, images: {0}/dicom, size: 48, cache: none}}", dir.path().string())));
  const data::Dataset png = data::open_dataset(
      section(fmt::format("{{masks: {0}/masks, images: {0}/png, size: 48, cache: none}}", dir.path().string())));
  REQUIRE(png.size() == dicom.size());
  CHECK(png.index().positive_count() == dicom.index().positive_count());
  const auto a = samples_of(dicom), b = samples_of(png);
  for (const auto& [id, sample] : a) {
    INFO(id);
    REQUIRE(b.count(id) == 1);
    CHECK(same_pixels(sample.image, b.at(id).image));
    CHECK(same_pixels(sample.mask, b.at(id).mask));
    CHECK(sample.label == b.at(id).label);
  }
  // The same images in the same order give the same batches.
  std::vector<int64_t> order_a, order_b;
  for (const auto& [id, sample] : a) order_a.push_back(sample.index), order_b.push_back(b.at(id).index);
  data::LoaderOptions options;
  options.batch_size = 5;
  options.workers = 1;
  data::BatchLoader la(dicom, order_a, options), lb(png, order_b, options);
  int batches = 0;
  while (auto x = la.next()) {
    auto y = lb.next();
    REQUIRE(y);
    CHECK(torch::equal(x->images, y->images));
    CHECK(torch::equal(x->masks, y->masks));
    CHECK(torch::equal(x->labels, y->labels));
    ++batches;
  }
  CHECK(batches == 3);
  CHECK_FALSE(lb.next());
}

TEST_CASE("mask folders: any size is resized, other values and missing masks are errors unless asked") {
  TempDir dir;
  const data::DemoSetSummary demo = png_demo_set(dir.path(), 6);
  const auto ids = data::image_ids_in(demo.png_dir);
  REQUIRE(ids.size() == 6);
  // A half-size mask with 0/1 values: loaded resized with nearest neighbour, as 0/255.
  cv::Mat half(32, 32, CV_8UC1, cv::Scalar(0));
  half(cv::Rect(8, 8, 8, 8)).setTo(1);
  data::write_png(demo.masks_dir / (ids[0] + ".png"), half);
  const std::string yaml = fmt::format("{{masks: {0}/masks, images: {0}/png, size: 64, cache: none}}", dir.path().string());
  const data::Dataset dataset = data::open_dataset(section(yaml));
  const auto samples = samples_of(dataset);
  const cv::Mat& mask = samples.at(ids[0]).mask;
  CHECK(mask.size() == cv::Size(64, 64));
  CHECK(cv::countNonZero(mask) == 16 * 16);
  CHECK(mask.at<uchar>(20, 20) == 255);
  CHECK(samples.at(ids[0]).label == 1.0f);

  // A value other than 0, 1 and 255 names the file and the value.
  cv::Mat odd(64, 64, CV_8UC1, cv::Scalar(0));
  odd.at<uchar>(3, 5) = 7;
  data::write_png(demo.masks_dir / (ids[1] + ".png"), odd);
  CHECK_THROWS_WITH(data::open_dataset(section(yaml)), Contains(ids[1] + ".png") && Contains("value 7") && Contains("x=5"));
  cv::imwrite((demo.masks_dir / (ids[1] + ".png")).string(), cv::Mat(64, 64, CV_8UC3, cv::Scalar(0, 0, 0)));
  CHECK_THROWS_WITH(data::open_dataset(section(yaml)), Contains(ids[1] + ".png") && Contains("3 channel"));
  fs::remove(demo.masks_dir / (ids[1] + ".png"));

  // A missing mask: an error naming the image and the file, or a negative when asked.
  CHECK_THROWS_WITH(data::open_dataset(section(yaml)),
                    Contains(ids[1]) && Contains("has no mask") && Contains("missing_mask: negative"));
  const std::string lenient = fmt::format(
      "{{masks: {0}/masks, missing_mask: negative, images: {0}/png, size: 64, cache: none}}", dir.path().string());
  const data::Dataset with_missing = data::open_dataset(section(lenient));
  const auto loaded = samples_of(with_missing);
  CHECK(loaded.at(ids[1]).label == 0.0f);
  CHECK(cv::countNonZero(loaded.at(ids[1]).mask) == 0);
  CHECK(dynamic_cast<const data::MaskFolder&>(with_missing.masks()).missing_masks() == 1);

  // A mask without an image is reported; the config refuses two sources of masks.
  data::write_png(demo.masks_dir / "stray.png", odd * 0);
  CHECK(data::open_dataset(section(lenient)).index().labels_without_image == std::vector<std::string>{"stray"});
  CHECK_THROWS_WITH(data::validate(section(fmt::format("{{masks: {0}/masks, labels: {0}/train-rle.csv, images: {0}/png}}",
                                                       dir.path().string()))),
                    Contains("data.masks") && Contains("data.labels") && Contains("one source"));
  CHECK_THROWS_WITH(data::open_dataset(section(fmt::format("{{masks: {0}/nowhere, images: {0}/png}}", dir.path().string()))),
                    Contains("nowhere") && Contains("mask folder not found"));
}

TEST_CASE("a 16-bit PNG keeps its range: min..max to 0..255, as a DICOM without a window") {
  TempDir dir;
  cv::Mat wide(4, 64, CV_16UC1);
  for (int x = 0; x < 64; ++x) wide.col(x).setTo(1000 + 40 * x);  // 1000..3520
  REQUIRE(cv::imwrite((dir / "wide.png").string(), wide));
  const cv::Mat grey = data::read_grey_image(dir / "wide.png");
  REQUIRE(grey.type() == CV_8UC1);
  CHECK(grey.at<uchar>(0, 0) == 0);
  CHECK(grey.at<uchar>(0, 63) == 255);
  CHECK(grey.at<uchar>(0, 32) == cvRound(255.0 * 32 / 63));  // not 8-bit truncation (which gives 4..13)
  // A JPEG reads as well, and a file that is not an image names itself.
  REQUIRE(cv::imwrite((dir / "grey.jpg").string(), cv::Mat(16, 16, CV_8UC1, cv::Scalar(90))));
  CHECK(std::abs(data::read_grey_image(dir / "grey.jpg").at<uchar>(8, 8) - 90) <= 1);
  pneumo::testing::write_file(dir / "fake.png", "not a png at all");
  CHECK_THROWS_WITH(data::read_grey_image(dir / "fake.png"), Contains("fake.png") && Contains("not a readable image"));
}

TEST_CASE("patient-grouped folds keep every patient in one fold, stratified and fixed by the seed") {
  std::mt19937 gen(11);
  std::vector<std::string> patient;
  std::vector<bool> positive;
  for (int p = 0; p < 60; ++p)
    for (int n = 1 + static_cast<int>(gen() % 4); n > 0; --n) {
      patient.push_back("P" + std::to_string(p));
      positive.push_back(gen() % 3 == 0);
    }
  const std::vector<int> folds = data::grouped_stratified_folds(positive, patient, 5, 7);
  std::map<std::string, int> fold_of;
  std::vector<int> images(5, 0), positives(5, 0);
  for (size_t i = 0; i < folds.size(); ++i) {
    const auto [it, fresh] = fold_of.emplace(patient[i], folds[i]);
    CHECK(it->second == folds[i]);  // no patient in two folds
    ++images[folds[i]];
    positives[folds[i]] += positive[i] ? 1 : 0;
  }
  const auto spread = [](const std::vector<int>& v) { return *std::max_element(v.begin(), v.end()) - *std::min_element(v.begin(), v.end()); };
  CHECK(spread(positives) <= 4);  // at most one patient's positives (a patient has at most 4 images)
  CHECK(spread(images) <= 8);
  CHECK(data::grouped_stratified_folds(positive, patient, 5, 7) == folds);
  CHECK(data::grouped_stratified_folds(positive, patient, 5, 8) != folds);
  CHECK_THROWS_WITH(data::grouped_stratified_folds({true, false, true}, {"a", "a", "b"}, 3, 1),
                    Contains("2 patients into 3 folds"));
}

TEST_CASE("group_by: patient reads PatientID from DICOM headers or a patients CSV, and says what is missing") {
  TempDir dir;
  png_demo_set(dir.path(), 24, 3);
  const std::string base = dir.path().string();
  const data::DataSection dicom = section(
      fmt::format("{{labels: {0}/train-rle.csv, images: {0}/dicom, group_by: patient, folds: 4, cache: none}}", base));
  const data::Dataset from_headers = data::open_dataset(dicom);
  const data::DataSection png = section(fmt::format(
      "{{masks: {0}/masks, images: {0}/png, group_by: patient, patients: {0}/patients.csv, folds: 4, cache: none}}", base));
  const data::Dataset from_csv = data::open_dataset(png);
  std::map<std::string, std::string> patient_of;
  for (const auto& e : from_headers.index().entries) {
    CHECK(e.patient == data::read_dicom(e.file).meta.patient_id);
    patient_of[e.image_id] = e.patient;
  }
  std::set<std::string> patients;
  for (const auto& e : from_csv.index().entries) {
    CHECK(e.patient == patient_of.at(e.image_id));  // the CSV says what the headers say
    patients.insert(e.patient);
  }
  CHECK(patients.size() == 8);
  for (const data::Dataset* d : {&from_headers, &from_csv}) {
    const std::vector<int> folds = data::assign_folds(d == &from_headers ? dicom : png, d->index(), 42);
    std::map<std::string, int> fold_of;
    for (size_t i = 0; i < folds.size(); ++i) {
      const auto [it, fresh] = fold_of.emplace(d->index().entries[i].patient, folds[i]);
      CHECK(it->second == folds[i]);
    }
  }
  // PNG images have no header to read: the config must name the CSV.
  CHECK_THROWS_WITH(data::open_dataset(section(fmt::format(
                        "{{masks: {0}/masks, images: {0}/png, group_by: patient, cache: none}}", base))),
                    Contains("data.patients") && Contains(".png"));
  pneumo::testing::write_file(dir / "few.csv", "ImageId,PatientID\nsomeone,P1\n");
  CHECK_THROWS_WITH(data::open_dataset(section(fmt::format(
                        "{{masks: {0}/masks, images: {0}/png, group_by: patient, patients: {0}/few.csv, cache: none}}", base))),
                    Contains("few.csv") && Contains("no patient for ImageId"));
  pneumo::testing::write_file(dir / "bad.csv", "ImageId,PatientID\nx\n");
  CHECK_THROWS_WITH(data::read_patients_csv(dir / "bad.csv"), Contains("bad.csv:2") && Contains("no comma"));
  CHECK_THROWS_WITH(data::validate(section(fmt::format("{{labels: {0}/train-rle.csv, images: {0}/dicom, patients: x.csv}}", base))),
                    Contains("data.patients") && Contains("group_by"));
}

TEST_CASE("the real SIIM samples carry a PatientID that the header-only read finds") {
  const fs::path siim = fs::path(PNEUMO_SHARED_DATA_DIR) / "siim/dicom";
  if (!fs::is_directory(siim)) {
    WARN("skipped: " << siim << " is absent");
    return;
  }
  int checked = 0;
  for (const auto& e : fs::directory_iterator(siim)) {
    INFO(e.path());
    const std::string id = data::read_dicom_patient_id(e.path());
    CHECK_FALSE(id.empty());
    CHECK(id == data::read_dicom(e.path()).meta.patient_id);
    ++checked;
  }
  CHECK(checked == 10);
}
