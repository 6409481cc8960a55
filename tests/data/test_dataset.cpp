// Dataset index, stratified folds, the negative-share sampler, the preprocessing cache and
// sample loading.
#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <thread>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "pneumo/core/error.h"
#include "pneumo/data/dataset.h"
#include "pneumo/data/demo_set.h"
#include "pneumo/data/dicom.h"
#include "pneumo/data/folds.h"
#include "pneumo/data/sampler.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

using namespace pneumo;
using Catch::Matchers::Contains;
using pneumo::testing::TempDir;
using pneumo::testing::write_file;
namespace fs = std::filesystem;

namespace {

// A small demo set: `count` 64x64 JPEG DICOMs under dir/dicom plus dir/train-rle.csv.
data::DemoSetSummary small_demo_set(const fs::path& dir, int count = 12) {
  data::DemoSetOptions options;
  options.count = count;
  options.size = 64;
  return data::write_demo_set(dir, options);
}

std::vector<fs::path> dicom_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

TEST_CASE("the index finds <ImageId>.dcm in nested folders and reports both kinds of mismatch") {
  TempDir dir;
  small_demo_set(dir.path(), 6);
  const auto files = dicom_files(dir / "dicom");
  // Kaggle's nested layout for some, a different extension case for one.
  fs::create_directories(dir / "dicom/study1/series1");
  fs::rename(files[0], dir / "dicom/study1/series1" / files[0].filename());
  fs::rename(files[1], dir / "dicom" / (files[1].stem().string() + ".DCM"));
  // One label without image, one image without label.
  fs::remove(files[2]);
  fs::copy_file(files[3], dir / "dicom/study1/unlabelled.dcm");
  write_file(dir / "dicom/notes.txt", "not an image");

  const auto labels = data::LabelTable::read_csv(dir / "train-rle.csv");
  const auto index = data::build_dataset_index(labels, dir / "dicom");
  CHECK(index.files_scanned == 6);
  REQUIRE(index.entries.size() == 5);
  REQUIRE(index.labels_without_image == std::vector<std::string>{files[2].stem().string()});
  REQUIRE(index.images_without_label.size() == 1);
  CHECK(index.images_without_label[0].filename() == "unlabelled.dcm");
  // Entries follow the label file's order and carry the label's positivity.
  std::vector<std::string> expected;
  for (const auto& id : labels.image_ids())
    if (id != files[2].stem().string()) expected.push_back(id);
  for (size_t i = 0; i < index.entries.size(); ++i) {
    CHECK(index.entries[i].image_id == expected[i]);
    CHECK(index.entries[i].positive == labels.is_positive(expected[i]));
    CHECK(fs::exists(index.entries[i].file));
  }
}

TEST_CASE("the index refuses a missing folder, duplicate ImageIds and an empty match") {
  TempDir dir;
  small_demo_set(dir.path(), 3);
  const auto labels = data::LabelTable::read_csv(dir / "train-rle.csv");
  CHECK_THROWS_WITH(data::build_dataset_index(labels, dir / "nowhere"),
                    Contains("nowhere") && Contains("not found"));
  const auto files = dicom_files(dir / "dicom");
  fs::create_directories(dir / "dicom/copy");
  fs::copy_file(files[0], dir / "dicom/copy" / files[0].filename());
  CHECK_THROWS_WITH(data::build_dataset_index(labels, dir / "dicom"),
                    Contains("found twice") && Contains(files[0].stem().string()));
  fs::create_directories(dir / "empty");
  CHECK_THROWS_AS(data::build_dataset_index(labels, dir / "empty"), core::DataError);
}

TEST_CASE("stratified folds balance sizes and positives and depend only on the seed") {
  std::vector<bool> positive(103, false);
  for (size_t i = 0; i < positive.size(); i += 3) positive[i] = true;  // 35 positives
  const auto folds = data::stratified_folds(positive, 5, 42);
  std::vector<int> size(5, 0), pos(5, 0);
  for (size_t i = 0; i < folds.size(); ++i) {
    REQUIRE(folds[i] >= 0);
    REQUIRE(folds[i] < 5);
    ++size[folds[i]];
    pos[folds[i]] += positive[i];
  }
  CHECK(*std::max_element(size.begin(), size.end()) - *std::min_element(size.begin(), size.end()) <= 1);
  CHECK(*std::max_element(pos.begin(), pos.end()) - *std::min_element(pos.begin(), pos.end()) <= 1);
  CHECK(data::stratified_folds(positive, 5, 42) == folds);
  CHECK(data::stratified_folds(positive, 5, 43) != folds);
  CHECK_THROWS_AS(data::stratified_folds(std::vector<bool>(3, false), 5, 1), core::DataError);
  CHECK_THROWS_AS(data::stratified_folds(positive, 1, 1), core::ConfigError);
}

TEST_CASE("folds written to CSV read back, and a bad folds file names file and line") {
  TempDir dir;
  small_demo_set(dir.path(), 8);
  const auto labels = data::LabelTable::read_csv(dir / "train-rle.csv");
  const auto index = data::build_dataset_index(labels, dir / "dicom");
  const auto folds = data::stratified_folds(index.positives(), 4, 7);
  data::write_folds_csv(dir / "folds.csv", index, folds);
  CHECK(data::read_folds_csv(dir / "folds.csv", index, 4) == folds);
  CHECK_THROWS_WITH(data::read_folds_csv(dir / "folds.csv", index, 3),
                    Contains("folds.csv:") && Contains("outside 0..2"));

  std::string text = "ImageId,fold\n" + index.entries[0].image_id + ",x\n";
  write_file(dir / "bad.csv", text);
  CHECK_THROWS_WITH(data::read_folds_csv(dir / "bad.csv", index, 4),
                    Contains("bad.csv:2") && Contains("not an integer"));
  write_file(dir / "short.csv", "ImageId,fold\n" + index.entries[0].image_id + ",1\n");
  CHECK_THROWS_WITH(data::read_folds_csv(dir / "short.csv", index, 4),
                    Contains("no fold for ImageId") && Contains(index.entries[1].image_id));
}

TEST_CASE("the negative-share schedule is linear between points and constant outside") {
  const data::NegativeShareSchedule none;
  CHECK(none.at(0) == 1.0);
  CHECK(none.at(99) == 1.0);
  const data::NegativeShareSchedule s({{2, 0.8}, {6, 0.4}, {8, 0.4}});
  CHECK(s.at(0) == Approx(0.8));
  CHECK(s.at(2) == Approx(0.8));
  CHECK(s.at(4) == Approx(0.6));
  CHECK(s.at(7) == Approx(0.4));
  CHECK(s.at(100) == Approx(0.4));
  CHECK_THROWS_AS(data::NegativeShareSchedule({{3, 0.5}, {3, 0.2}}), core::ConfigError);
  CHECK_THROWS_AS(data::NegativeShareSchedule({{0, 1.5}}), core::ConfigError);
}

TEST_CASE("an epoch holds every positive and the scheduled share of distinct negatives") {
  std::vector<int64_t> members;
  std::vector<bool> positive;
  for (int64_t i = 0; i < 50; ++i) {
    members.push_back(100 + i);
    positive.push_back(i % 5 == 0);  // 10 positives, 40 negatives
  }
  const data::EpochSampler sampler(members, positive, data::NegativeShareSchedule({{0, 1.0}, {4, 0.25}}), 9);
  for (int64_t epoch : {0, 2, 4, 7}) {
    INFO("epoch " << epoch);
    const auto order = sampler.order(epoch);
    const size_t negatives = epoch == 0 ? 40 : epoch == 2 ? 25 : 10;  // llround(0.625 * 40) = 25
    CHECK(order.size() == 10 + negatives);
    CHECK(static_cast<int64_t>(order.size()) == sampler.size(epoch));
    const std::set<int64_t> unique(order.begin(), order.end());
    CHECK(unique.size() == order.size());
    for (int64_t i = 0; i < 50; i += 5) CHECK(unique.count(100 + i) == 1);
    for (int64_t m : order) CHECK((m >= 100 && m < 150));
  }
  CHECK(sampler.order(4) == sampler.order(4));
  CHECK(sampler.order(4) != sampler.order(5));  // a new draw each epoch
  const auto all = sampler.order(0);
  CHECK(all != members);  // shuffled
  const data::EpochSampler fixed(members, positive, {}, 9, /*shuffle=*/false);
  CHECK(fixed.order(3) == members);
}

TEST_CASE("the preprocessing cache serves later reads and is rebuilt when the source changes") {
  TempDir dir;
  small_demo_set(dir.path(), 2);
  const fs::path source = dicom_files(dir / "dicom")[0];
  data::PreprocessOptions options;
  options.size = 32;
  options.cache_dir = dir / "cache";
  const data::Preprocessor pre(options);

  const auto first = pre.prepare(source);
  CHECK(first.native_rows == 64);
  CHECK(first.native_columns == 64);
  REQUIRE(first.pixels.size() == cv::Size(32, 32));
  // What the cache holds is exactly decode + resize.
  cv::Mat expected;
  cv::resize(data::read_dicom(source).pixels, expected, cv::Size(32, 32), 0, 0, cv::INTER_AREA);
  CHECK(cv::norm(first.pixels, expected, cv::NORM_INF) == 0);
  CHECK(pre.counts().decodes == 1);
  CHECK(pre.counts().writes == 1);

  const auto second = pre.prepare(source);
  CHECK(pre.counts().hits == 1);
  CHECK(pre.counts().decodes == 1);
  CHECK(cv::norm(second.pixels, first.pixels, cv::NORM_INF) == 0);
  CHECK(second.native_rows == 64);

  // A different size lives in another folder; a new preprocessor reuses what is on disk.
  options.size = 16;
  const data::Preprocessor smaller(options);
  CHECK(smaller.cache_folder() != pre.cache_folder());
  smaller.prepare(source);
  CHECK(smaller.counts().decodes == 1);
  options.size = 32;
  const data::Preprocessor again(options);
  again.prepare(source);
  CHECK(again.counts().hits == 1);

  // Replacing the source (other content, other time stamp) invalidates its entry.
  fs::copy_file(dicom_files(dir / "dicom")[1], source, fs::copy_options::overwrite_existing);
  fs::last_write_time(source, fs::last_write_time(source) + std::chrono::seconds(5));
  const auto replaced = again.prepare(source);
  CHECK(again.counts().decodes == 1);
  CHECK(cv::norm(replaced.pixels, first.pixels, cv::NORM_INF) > 0);

  // A damaged entry is rebuilt, not trusted.
  for (const auto& e : fs::directory_iterator(again.cache_folder()))
    fs::resize_file(e.path(), 40);
  const data::Preprocessor fresh(options);
  const auto rebuilt = fresh.prepare(source);
  CHECK(fresh.counts().decodes == 1);
  CHECK(cv::norm(rebuilt.pixels, replaced.pixels, cv::NORM_INF) == 0);
}

TEST_CASE("without a cache every read decodes, and a bad file is a data error naming it") {
  TempDir dir;
  data::PreprocessOptions options;
  options.size = 32;
  const data::Preprocessor pre(options);
  CHECK(pre.cache_folder().empty());
  write_file(dir / "broken.dcm", "not a dicom at all");
  CHECK_THROWS_WITH(pre.prepare(dir / "broken.dcm"), Contains("broken.dcm"));
  options.cache_dir = dir / "cache";
  CHECK_THROWS_WITH(data::Preprocessor(options).prepare(dir / "broken.dcm"), Contains("broken.dcm"));
  CHECK_THROWS_WITH(data::Preprocessor(options).prepare(dir / "missing.dcm"), Contains("missing.dcm"));
  options.interpolation = "bicubic";
  CHECK_THROWS_AS(data::Preprocessor(options), core::ConfigError);
}

TEST_CASE("the cache can be shared by threads writing the same entries") {
  TempDir dir;
  small_demo_set(dir.path(), 4);
  const auto files = dicom_files(dir / "dicom");
  data::PreprocessOptions options;
  options.size = 32;
  options.cache_dir = dir / "cache";
  const data::Preprocessor pre(options);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (const auto& f : files) pre.prepare(f);
    });
  for (auto& t : threads) t.join();
  const data::Preprocessor after(options);
  for (const auto& f : files) after.prepare(f);
  CHECK(after.counts().hits == 4);
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(after.cache_folder())) ++entries;
  CHECK(entries == 4);  // no temporary files left behind
}

TEST_CASE("a sample's mask is its labels' union resized with nearest neighbour") {
  TempDir dir;
  small_demo_set(dir.path(), 8);
  auto labels = data::LabelTable::read_csv(dir / "train-rle.csv");
  auto index = data::build_dataset_index(labels, dir / "dicom");
  data::PreprocessOptions options;
  options.size = 32;
  const data::Dataset dataset(labels, index, data::Preprocessor(options));
  REQUIRE(dataset.size() == 8);
  int positives = 0;
  for (int64_t i = 0; i < dataset.size(); ++i) {
    const data::Sample s = dataset.load(i);
    CHECK(s.index == i);
    CHECK(s.image_id == index.entries[i].image_id);
    REQUIRE(s.image.size() == cv::Size(32, 32));
    REQUIRE(s.mask.size() == cv::Size(32, 32));
    cv::Mat expected;
    cv::resize(labels.mask(s.image_id, 64, 64), expected, cv::Size(32, 32), 0, 0, cv::INTER_NEAREST);
    CHECK(cv::norm(s.mask, expected, cv::NORM_INF) == 0);
    CHECK(s.label == (labels.is_positive(s.image_id) ? 1.0f : 0.0f));
    positives += s.label > 0;
  }
  CHECK(positives > 0);
  CHECK_THROWS(dataset.load(8));
}

TEST_CASE("the real SIIM samples index, load and match their masks at 256") {
  const fs::path siim = fs::path(PNEUMO_SHARED_DATA_DIR) / "siim";
  if (!fs::exists(siim / "dicom")) {
    WARN("skipped: " << siim << " is absent");
    return;
  }
  auto labels = data::LabelTable::read_csv(siim / "train-rle.csv");
  auto index = data::build_dataset_index(labels, siim / "dicom");
  REQUIRE(index.entries.size() == 10);
  CHECK(index.positive_count() == 5);
  CHECK(index.labels_without_image.empty());
  data::PreprocessOptions options;
  options.size = 256;
  const data::Dataset dataset(labels, index, data::Preprocessor(options));
  for (int64_t i = 0; i < dataset.size(); ++i) {
    const data::Sample s = dataset.load(i);
    cv::Mat expected;
    cv::resize(labels.mask(s.image_id, 1024, 1024), expected, cv::Size(256, 256), 0, 0,
               cv::INTER_NEAREST);
    CHECK(cv::norm(s.mask, expected, cv::NORM_INF) == 0);
    CHECK((cv::countNonZero(s.mask) > 0) == (s.label > 0));
  }
}
