#include <catch2/catch.hpp>

#include <fstream>

#include <opencv2/core.hpp>

#include "pneumo/core/error.h"
#include "pneumo/data/labels.h"
#include "pneumo/data/rle.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

using namespace pneumo;
using pneumo::testing::run_command;
using pneumo::testing::TempDir;
using pneumo::testing::write_file;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {
const fs::path kSiim = fs::path(PNEUMO_SHARED_DATA_DIR) / "siim";
}

TEST_CASE("RLE runs are column-major, relative, and may touch the last pixel") {
  // 3 rows x 2 columns; column-major flat order is (0,0) (1,0) (2,0) (0,1) (1,1) (2,1).
  const cv::Mat mask = data::decode_rle("1 2 2 1", 3, 2);
  const cv::Mat expected = (cv::Mat_<uchar>(3, 2) << 0, 0, 255, 0, 255, 255);
  CHECK(cv::norm(mask, expected, cv::NORM_INF) == 0);
  CHECK(data::encode_rle(mask) == "1 2 2 1");
  // A run ending on the very last pixel is kept (the competition's encoder dropped it).
  cv::Mat full(4, 4, CV_8UC1, cv::Scalar(0));
  full.at<uchar>(3, 3) = 1;
  CHECK(data::encode_rle(full) == "15 1");
  CHECK(cv::countNonZero(data::decode_rle("15 1", 4, 4)) == 1);
  CHECK(data::encode_rle(cv::Mat(4, 4, CV_8UC1, cv::Scalar(7))) == "0 16");
}

TEST_CASE("an empty mask is -1 in either spelling") {
  CHECK(data::encode_rle(cv::Mat(8, 8, CV_8UC1, cv::Scalar(0))) == "-1");
  CHECK(cv::countNonZero(data::decode_rle("-1", 8, 8)) == 0);
  CHECK(cv::countNonZero(data::decode_rle(" -1", 8, 8)) == 0);
}

TEST_CASE("malformed RLE strings are errors that say what is wrong") {
  CHECK_THROWS_WITH(data::decode_rle("1 2 3", 4, 4), Contains("odd number of values (3)"));
  CHECK_THROWS_WITH(data::decode_rle("1 -2", 4, 4), Contains("negative value '-2'"));
  CHECK_THROWS_WITH(data::decode_rle("1 x", 4, 4), Contains("'x' is not a non-negative integer"));
  CHECK_THROWS_WITH(data::decode_rle("10 7", 4, 4), Contains("ends past the last pixel of a 4x4"));
  CHECK_THROWS_WITH(data::decode_rle("18446744073709551615 1", 4, 4), Contains("past the last"));
  CHECK_THROWS_AS(data::decode_rle("99999999999999999999999 1", 4, 4), core::DataError);
  CHECK_THROWS_AS(data::decode_rle("1 1", 0, 4), core::DataError);
  CHECK(data::rle_syntax_error("1 2 3 4").empty());
  CHECK_FALSE(data::rle_syntax_error("1 2 3").empty());
}

TEST_CASE("label CSVs are read in all their real forms") {
  TempDir dir;
  const std::string rows = "a,-1\nb, 1 2\nb,5 1\nc, -1\n";
  for (const std::string& text :
       {"ImageId,EncodedPixels\n" + rows, rows, "\xEF\xBB\xBF" + rows,
        std::string("ImageId, EncodedPixels\r\na,-1\r\nb, 1 2\r\nb,5 1\r\nc, -1\r\n\r\n")}) {
    const auto file = write_file(dir / "labels.csv", text);
    const auto table = data::LabelTable::read_csv(file);
    CHECK(table.image_ids() == std::vector<std::string>{"a", "b", "c"});
    CHECK(table.row_count() == 4);
    CHECK_FALSE(table.is_positive("a"));
    CHECK(table.is_positive("b"));
    CHECK(cv::countNonZero(table.mask("b", 4, 4)) == 3);  // the union of both rows
  }
}

TEST_CASE("a malformed label row names the file and line") {
  TempDir dir;
  const auto odd = write_file(dir / "odd.csv", "ImageId,EncodedPixels\na,-1\nb,1 2 3\n");
  CHECK_THROWS_WITH(data::LabelTable::read_csv(odd), Contains("odd.csv:3: image b") &&
                                                         Contains("odd number of values"));
  const auto neg = write_file(dir / "neg.csv", "a,1 -4\n");
  CHECK_THROWS_WITH(data::LabelTable::read_csv(neg), Contains("neg.csv:1:") && Contains("negative"));
  const auto no_comma = write_file(dir / "nc.csv", "ImageId,EncodedPixels\njust-an-id\n");
  CHECK_THROWS_WITH(data::LabelTable::read_csv(no_comma), Contains("nc.csv:2: expected 'ImageId,EncodedPixels'"));
  const auto empty_id = write_file(dir / "e.csv", " ,-1\n");
  CHECK_THROWS_WITH(data::LabelTable::read_csv(empty_id), Contains("e.csv:1: empty ImageId"));
  const auto outside = write_file(dir / "out.csv", "a,-1\nz,0 5\nz,100 1\n");
  const auto table = data::LabelTable::read_csv(outside);
  CHECK_THROWS_WITH(table.mask("z", 4, 4), Contains("out.csv:3: image z") && Contains("past the last"));
  CHECK_THROWS_WITH(data::LabelTable::read_csv(dir / "absent.csv"), Contains("absent.csv"));
  CHECK_THROWS_WITH(table.rows("nobody"), Contains("no label rows for image 'nobody'"));
}

TEST_CASE("every positive row of stage_2_train.csv survives decode, encode, decode") {
  const fs::path file = kSiim / "stage_2_train.csv";
  if (!fs::exists(file)) {
    WARN("../shared/data/siim is absent; skipping");
    return;
  }
  const auto table = data::LabelTable::read_csv(file);
  CHECK(table.row_count() == 12954);
  CHECK(table.image_ids().size() == 12047);
  int positive_rows = 0, positive_images = 0, overlapping = 0;
  for (const auto& id : table.image_ids()) {
    int pixels_in_rows = 0;
    for (const auto& row : table.rows(id)) {
      if (row.rle == "-1") continue;
      ++positive_rows;
      const cv::Mat mask = data::decode_rle(row.rle, 1024, 1024);
      const std::string again = data::encode_rle(mask);
      REQUIRE(cv::norm(data::decode_rle(again, 1024, 1024), mask, cv::NORM_INF) == 0);
      pixels_in_rows += cv::countNonZero(mask);
    }
    if (table.is_positive(id)) {
      ++positive_images;
      if (cv::countNonZero(table.mask(id, 1024, 1024)) < pixels_in_rows) ++overlapping;
    }
  }
  CHECK(positive_rows == 3576);
  CHECK(positive_images == 2669);
  CHECK(overlapping == 183);  // rows that overlap: the mask is their union
}

TEST_CASE("masks of the shared sample images equal an independent Python decoder") {
  const fs::path labels = kSiim / "train-rle-sample.csv";
  if (!fs::exists(labels)) {
    WARN("../shared/data/siim is absent; skipping");
    return;
  }
  const auto table = data::LabelTable::read_csv(labels);
  std::vector<std::string> ids;
  for (const auto& entry : fs::directory_iterator(kSiim / "dicom"))
    ids.push_back(entry.path().stem().string());
  REQUIRE(ids.size() == 10);
  TempDir out;
  std::vector<std::string> argv = {PNEUMO_REFERENCE_PYTHON,
                                   PNEUMO_SOURCE_DIR "/tests/data/reference_rle.py",
                                   labels.string(), out.path().string()};
  argv.insert(argv.end(), ids.begin(), ids.end());
  REQUIRE(run_command(argv).exit_code == 0);
  int positives = 0;
  for (const auto& id : ids) {
    INFO(id);
    REQUIRE(table.contains(id));
    cv::Mat expected(1024, 1024, CV_8UC1);
    std::ifstream in(out / (id + ".raw"), std::ios::binary);
    in.read(reinterpret_cast<char*>(expected.data), 1024 * 1024);
    REQUIRE(in.gcount() == 1024 * 1024);
    const cv::Mat ours = table.mask(id, 1024, 1024);
    CHECK(cv::norm(ours, expected, cv::NORM_INF) == 0);
    positives += table.is_positive(id);
  }
  CHECK(positives == 5);
}
