// A dataset's fingerprint (`pneumo plan`'s input), checked against the demo set's known
// properties: counts, sizes, formats, the area of every mask, the pixel statistics of the
// sample, the patients; the DICOM and PNG layouts of the same set agree.
#include <catch2/catch.hpp>

#include <cmath>

#include <fmt/format.h>
#include <opencv2/core.hpp>

#include "pneumo/core/config_schema.h"
#include "pneumo/core/error.h"
#include "pneumo/data/data_section.h"
#include "pneumo/data/demo_set.h"
#include "pneumo/data/fingerprint.h"
#include "pneumo/data/rle.h"
#include "test_support.h"

namespace data = pneumo::data;
namespace core = pneumo::core;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using pneumo::testing::TempDir;
using pneumo::testing::write_file;

namespace {

data::Dataset open(const std::string& yaml) {
  return data::open_dataset(core::read_section<data::DataSection>(core::parse_yaml(yaml, "data.yaml"), "data"));
}

}  // namespace

TEST_CASE("quantiles interpolate between ranks as numpy does") {
  const data::Quantiles q = data::quantiles_of({4, 1, 3, 2, 5});
  CHECK(q.count == 5);
  CHECK(q.min == 1);
  CHECK(q.p25 == 2);
  CHECK(q.p50 == 3);
  CHECK(q.p10 == Approx(1.4));
  CHECK(q.p95 == Approx(4.8));
  CHECK(q.max == 5);
  CHECK(data::quantiles_of({}).count == 0);
}

TEST_CASE("the fingerprint of a demo set gives its known counts, sizes, mask areas, pixels and patients") {
  TempDir dir;
  data::DemoSetOptions demo;
  demo.count = 16;
  demo.size = 96;
  demo.png = true;
  demo.images_per_patient = 4;
  const data::DemoSetSummary summary = data::write_demo_set(dir.path(), demo);
  const data::Dataset dicom = open(fmt::format(
      "{{labels: {0}/train-rle.csv, images: {0}/dicom, size: 64, cache: none}}", dir.path().string()));
  data::FingerprintOptions options;
  options.intensity_images = 16;
  options.threads = 2;
  const data::DatasetFingerprint fp = data::fingerprint_dataset(dicom, options);
  CHECK(fp.images == 16);
  CHECK(fp.positives == summary.positives);
  CHECK(fp.sizes == std::map<std::string, int64_t>{{"96x96", 16}});
  CHECK(fp.formats == std::map<std::string, int64_t>{{"DICOM", 16}});
  CHECK(fp.bits_stored == std::map<std::string, int64_t>{{"8", 16}});
  CHECK(fp.photometric == std::map<std::string, int64_t>{{"MONOCHROME2", 16}});
  CHECK(fp.short_side.p50 == 96);
  CHECK(fp.spacing_mm.count == 16);
  CHECK(fp.patients == 4);
  CHECK(fp.patients_with_several_images == 4);
  CHECK(fp.most_images_per_patient == 4);

  // Every positive's area and the pixel statistics, computed here from the renderer itself.
  std::vector<double> areas;
  double sum = 0, squares = 0, pixels = 0;
  for (int i = 0; i < demo.count; ++i) {
    const data::DemoRadiograph r = data::render_demo_radiograph(demo, i);
    if (cv::countNonZero(r.mask) > 0) areas.push_back(cv::countNonZero(r.mask) / (96.0 * 96.0));
    const cv::Mat image = dicom.load(i).image;  // at data.size, as training sees it
    for (int y = 0; y < image.rows; ++y)
      for (int x = 0; x < image.cols; ++x) {
        const double v = image.at<uint8_t>(y, x) / 255.0;
        sum += v, squares += v * v, pixels += 1;
      }
  }
  const data::Quantiles expected = data::quantiles_of(areas);
  CHECK(fp.area_fraction.count == static_cast<int64_t>(areas.size()));
  CHECK(fp.area_fraction.p10 == Approx(expected.p10));
  CHECK(fp.area_fraction.p50 == Approx(expected.p50));
  CHECK(fp.intensity_images == 16);
  CHECK(fp.intensity_mean == Approx(sum / pixels));
  CHECK(fp.intensity_std == Approx(std::sqrt(squares / pixels - std::pow(sum / pixels, 2))));

  // The PNG layout of the same set: the same areas, PNG headers read, patients from patients.csv.
  const data::Dataset png = open(fmt::format(
      "{{masks: {0}/masks, images: {0}/png, patients: {0}/patients.csv, group_by: patient, size: 64, cache: none}}",
      dir.path().string()));
  const data::DatasetFingerprint fp_png = data::fingerprint_dataset(png, options);
  CHECK(fp_png.formats == std::map<std::string, int64_t>{{"PNG", 16}});
  CHECK(fp_png.sizes == fp.sizes);
  CHECK(fp_png.bits_stored == fp.bits_stored);
  CHECK(fp_png.area_fraction.p10 == Approx(expected.p10));
  CHECK(fp_png.patients == 4);
  CHECK(fp_png.spacing_mm.count == 0);
  const std::vector<std::string> lines = data::describe(fp_png);
  CHECK_THAT(lines.front(), Contains(fmt::format("images: 16, {} positive", summary.positives)));
}

TEST_CASE("the fingerprint names the file it cannot read") {
  TempDir dir;
  data::DemoSetOptions demo;
  demo.count = 6;
  demo.size = 64;
  demo.png = true;
  data::write_demo_set(dir.path(), demo);
  const std::string victim = data::image_ids_in(dir / "png")[2];
  write_file(dir / "png" / (victim + ".png"), "not a png at all, just text that is long enough");
  const data::Dataset png = open(fmt::format("{{masks: {0}/masks, images: {0}/png, size: 64, cache: none}}",
                                             dir.path().string()));
  CHECK_THROWS_WITH(data::fingerprint_dataset(png), Contains(victim + ".png") && Contains("not a PNG"));
}
