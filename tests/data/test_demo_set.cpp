#include <catch2/catch.hpp>

#include <opencv2/core.hpp>

#include "pneumo/core/error.h"
#include "pneumo/data/demo_set.h"
#include "pneumo/data/dicom.h"
#include "pneumo/data/labels.h"
#include "test_support.h"

using namespace pneumo;
using pneumo::testing::read_file;
using pneumo::testing::TempDir;
namespace fs = std::filesystem;

TEST_CASE("demo radiographs are deterministic per (seed, index) and differ between them") {
  data::DemoSetOptions options;
  options.size = 96;
  const auto a = data::render_demo_radiograph(options, 3);
  const auto b = data::render_demo_radiograph(options, 3);
  CHECK(cv::norm(a.image, b.image, cv::NORM_INF) == 0);
  CHECK(cv::norm(a.mask, b.mask, cv::NORM_INF) == 0);
  CHECK(cv::norm(a.image, data::render_demo_radiograph(options, 4).image, cv::NORM_INF) > 0);
  options.seed = 8;
  CHECK(cv::norm(a.image, data::render_demo_radiograph(options, 3).image, cv::NORM_INF) > 0);
}

TEST_CASE("a pneumothorax region is darker and lies inside the chest") {
  data::DemoSetOptions options;
  options.size = 128;
  options.positive_fraction = 1.0;
  for (int i = 0; i < 5; ++i) {
    INFO("image " << i);
    const auto r = data::render_demo_radiograph(options, i);
    const int area = cv::countNonZero(r.mask);
    CHECK(area > 0.005 * 128 * 128);
    CHECK(area < 0.25 * 128 * 128);
    // Mean brightness inside the mask is below the image mean: air, not tissue.
    CHECK(cv::mean(r.image, r.mask)[0] < cv::mean(r.image)[0]);
  }
  options.positive_fraction = 0.0;
  CHECK(cv::countNonZero(data::render_demo_radiograph(options, 0).mask) == 0);
}

TEST_CASE("a written demo set is JPEG DICOM plus labels that decode to the rendered masks") {
  TempDir out;
  data::DemoSetOptions options;
  options.count = 6;
  options.size = 64;
  options.seed = 11;
  const auto summary = data::write_demo_set(out.path(), options);
  CHECK(summary.images == 6);
  const auto labels = data::LabelTable::read_csv(summary.labels_csv);
  REQUIRE(labels.image_ids().size() == 6);
  int positives = 0;
  for (int i = 0; i < 6; ++i) {
    const std::string& id = labels.image_ids()[static_cast<size_t>(i)];
    INFO(id);
    const auto image = data::read_dicom(summary.dicom_dir / (id + ".dcm"));
    CHECK(image.meta.sop_instance_uid == id);
    CHECK(image.meta.transfer_syntax_uid == "1.2.840.10008.1.2.4.50");
    CHECK(image.meta.photometric == "MONOCHROME2");
    CHECK(image.meta.pixel_spacing_row_mm.has_value());
    const auto rendered = data::render_demo_radiograph(options, i);
    // Lossy JPEG at quality 95: close to, not equal to, the rendering.
    CHECK(cv::norm(image.pixels, rendered.image, cv::NORM_L1) / image.pixels.total() < 3.0);
    CHECK(cv::norm(labels.mask(id, 64, 64), rendered.mask, cv::NORM_INF) == 0);
    positives += labels.is_positive(id);
  }
  CHECK(positives == summary.positives);
  // Writing the same set again gives the same bytes.
  const std::string first = read_file(summary.labels_csv);
  TempDir again;
  data::write_demo_set(again.path(), options);
  CHECK(read_file(again / "train-rle.csv") == first);
}

TEST_CASE("bad demo options are refused") {
  TempDir out;
  data::DemoSetOptions options;
  options.count = 0;
  CHECK_THROWS_AS(data::write_demo_set(out.path(), options), core::ConfigError);
  options.count = 1;
  options.size = 10;
  CHECK_THROWS_AS(data::write_demo_set(out.path(), options), core::ConfigError);
  options.size = 64;
  options.positive_fraction = 1.5;
  CHECK_THROWS_AS(data::write_demo_set(out.path(), options), core::ConfigError);
}
