// Each op with fixed parameters against the Python way: Albumentations 0.4.6's own functions
// (reference_augment.py), on a non-square image so that width and height mix-ups show (the
// transcription of its formulas these tests once used had optical distortion's focal length
// and RandomGamma's 8-bit table wrong, and pneumo with it).
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <functional>
#include <iostream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "pneumo/augment/functional.h"
#include "pneumo/core/error.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

using namespace pneumo;
using pneumo::testing::TempDir;

namespace {

// A 72x64 (width x height) grey image with gradients, a disk and fine texture.
cv::Mat test_image() {
  cv::Mat img(64, 72, CV_8UC1);
  for (int y = 0; y < img.rows; ++y)
    for (int x = 0; x < img.cols; ++x)
      img.at<uint8_t>(y, x) = cv::saturate_cast<uint8_t>(
          60 + 1.5 * x + 0.8 * y + 30 * std::sin(x / 4.0) * std::cos(y / 6.0) + ((x * 7 + y * 13) % 11));
  cv::circle(img, {45, 25}, 12, cv::Scalar(230), -1);
  cv::line(img, {5, 60}, {70, 3}, cv::Scalar(15), 2);
  return img;
}

struct Case {
  std::string name;
  std::string reference;  // "op key=value ..." for reference_augment.py
  std::function<cv::Mat(const cv::Mat&)> ours;
  bool float_input = false;
  int tolerance = 0;  // grey levels (8-bit) or 1/255 units (float)
};

std::vector<Case> cases() {
  namespace fn = augment::fn;
  const std::vector<double> xs = {1.1, 0.8, 1.25, 0.9, 1.0, 1.2}, ys = {0.75, 1.3, 1.0, 1.1, 0.85, 0.95};
  return {
      {"hflip", "hflip", [](const cv::Mat& m) { return fn::hflip(m); }},
      {"vflip", "vflip", [](const cv::Mat& m) { return fn::vflip(m); }},
      {"ssr_reflect", "ssr angle=17.5 scale=1.1 dx=0.05 dy=-0.03 interp=1 border=4 value=0",
       [](const cv::Mat& m) { return fn::shift_scale_rotate(m, 17.5, 1.1, 0.05, -0.03, 1, 4, 0); }},
      {"ssr_constant_nearest", "ssr angle=-33 scale=0.85 dx=-0.1 dy=0.07 interp=0 border=0 value=7",
       [](const cv::Mat& m) { return fn::shift_scale_rotate(m, -33, 0.85, -0.1, 0.07, 0, 0, 7); }},
      {"ssr_float", "ssr angle=12 scale=1.05 dx=0.02 dy=0.01 interp=2 border=4 value=0 float=1",
       [](const cv::Mat& m) { return fn::shift_scale_rotate(m, 12, 1.05, 0.02, 0.01, 2, 4, 0); }, true},
      {"elastic", "elastic alpha=120 sigma=6 alpha_affine=3.6 interp=1 border=4 value=0 seed=1234 approx=0",
       [](const cv::Mat& m) { return fn::elastic_transform(m, 120, 6, 3.6, 1, 4, 0, 1234, false); }, false, 1},
      {"elastic_approx", "elastic alpha=30 sigma=4 alpha_affine=5 interp=1 border=0 value=0 seed=77 approx=1",
       [](const cv::Mat& m) { return fn::elastic_transform(m, 30, 4, 5, 1, 0, 0, 77, true); }, false, 1},
      {"elastic_float", "elastic alpha=50 sigma=5 alpha_affine=2 interp=1 border=4 value=0 seed=9 approx=0 float=1",
       [](const cv::Mat& m) { return fn::elastic_transform(m, 50, 5, 2, 1, 4, 0, 9, false); }, true, 1},
      {"grid", "grid steps=5 xsteps=1.1,0.8,1.25,0.9,1.0,1.2 ysteps=0.75,1.3,1.0,1.1,0.85,0.95 interp=1 border=4 value=0",
       [xs, ys](const cv::Mat& m) { return fn::grid_distortion(m, 5, xs, ys, 1, 4, 0); }},
      {"optical", "optical k=0.6 dx=3 dy=-2 interp=1 border=4 value=0",
       [](const cv::Mat& m) { return fn::optical_distortion(m, 0.6, 3, -2, 1, 4, 0); }},
      {"optical_pincushion", "optical k=-0.4 dx=0 dy=0 interp=1 border=0 value=0",
       [](const cv::Mat& m) { return fn::optical_distortion(m, -0.4, 0, 0, 1, 0, 0); }},
      {"brightness_contrast", "bc alpha=1.2 beta=0.1 by_max=1",
       [](const cv::Mat& m) { return fn::brightness_contrast_adjust(m, 1.2, 0.1, true); }},
      {"brightness_by_mean", "bc alpha=0.9 beta=-0.15 by_max=0",
       [](const cv::Mat& m) { return fn::brightness_contrast_adjust(m, 0.9, -0.15, false); }},
      {"brightness_contrast_float", "bc alpha=1.3 beta=0.05 by_max=1 float=1",
       [](const cv::Mat& m) { return fn::brightness_contrast_adjust(m, 1.3, 0.05, true); }, true},
      {"gamma", "gamma gamma=0.8", [](const cv::Mat& m) { return fn::gamma_transform(m, 0.8); }},
      {"gamma_float", "gamma gamma=1.3 float=1",
       [](const cv::Mat& m) { return fn::gamma_transform(m, 1.3); }, true},
      {"clahe", "clahe clip=2.5 tw=8 th=4", [](const cv::Mat& m) { return fn::clahe(m, 2.5, 8, 4); }},
      {"gauss_noise", "noise mean=0 sigma=5 seed=42",
       [](const cv::Mat& m) { return fn::gauss_noise(m, 0, 5, 42); }},
      {"gauss_noise_float", "noise mean=0.01 sigma=0.02 seed=3000000000 float=1",
       [](const cv::Mat& m) { return fn::gauss_noise(m, 0.01, 0.02, 3000000000u); }, true},
      {"blur", "blur k=5", [](const cv::Mat& m) { return fn::blur(m, 5); }},
      {"dropout", "dropout holes=3,4,11,9;60,50,72,64 fill=0",
       [](const cv::Mat& m) {
         return fn::coarse_dropout(m, {cv::Rect(3, 4, 8, 5), cv::Rect(60, 50, 12, 14)}, 0);
       }},
      {"random_crop", "random_crop ch=40 cw=48 hs=0.3 ws=0.7",
       [](const cv::Mat& m) { return fn::random_crop(m, 40, 48, 0.3, 0.7); }},
      {"center_crop", "center_crop ch=33 cw=47", [](const cv::Mat& m) { return fn::center_crop(m, 33, 47); }},
      {"resize_area", "resize h=40 w=50 interp=3", [](const cv::Mat& m) { return fn::resize(m, 40, 50, 3); }},
      {"resize_linear_up", "resize h=90 w=81 interp=1", [](const cv::Mat& m) { return fn::resize(m, 90, 81, 1); }},
      {"normalize", "normalize mean=0.485 std=0.229 max=255",
       [](const cv::Mat& m) { return fn::normalize(m, 0.485, 0.229, 255); }},
      {"to_float", "to_float max=255", [](const cv::Mat& m) { return fn::to_float(m, 255); }},
  };
}

cv::Mat read_reference(const std::filesystem::path& dir, const std::string& name, const cv::Size& size) {
  if (std::filesystem::exists(dir / (name + ".png"))) return cv::imread((dir / (name + ".png")).string(), cv::IMREAD_UNCHANGED);
  std::ifstream in(dir / (name + ".f32"), std::ios::binary);
  cv::Mat out(size, CV_32FC1);
  in.read(reinterpret_cast<char*>(out.data), static_cast<std::streamsize>(out.total() * sizeof(float)));
  return in ? out : cv::Mat();
}

}  // namespace

TEST_CASE("every op with fixed parameters matches Albumentations 0.4.6 run in Python") {
  TempDir dir;
  const cv::Mat image = test_image();
  REQUIRE(cv::imwrite((dir / "image.png").string(), image));
  std::string lines;
  for (const Case& c : cases()) lines += c.name + " " + c.reference + "\n";
  pneumo::testing::write_file(dir / "cases.txt", lines);
  const auto python = pneumo::testing::run_command(
      {PNEUMO_REFERENCE_PYTHON, std::string(PNEUMO_SOURCE_DIR) + "/tests/augment/reference_augment.py",
       (dir / "cases.txt").string(), (dir / "image.png").string(), dir.path().string()});
  INFO(python.err);
  REQUIRE(python.exit_code == 0);

  cv::Mat float_image;
  image.convertTo(float_image, CV_32F, 1.0 / 255.0);
  for (const Case& c : cases()) {
    INFO("op " << c.name);
    const cv::Mat ours = c.ours(c.float_input ? float_image : image);
    const cv::Mat theirs = read_reference(dir.path(), c.name, ours.size());
    REQUIRE(!theirs.empty());
    REQUIRE(ours.type() == theirs.type());
    REQUIRE(ours.size() == theirs.size());
    cv::Mat diff;
    cv::absdiff(ours, theirs, diff);
    double worst = 0;
    cv::minMaxLoc(diff, nullptr, &worst);
    if (ours.depth() == CV_32F && c.reference.find("normalize") == std::string::npos)
      worst *= 255.0;  // float results in 0..1: compare in grey levels
    const int differing = cv::countNonZero(diff > (ours.depth() == CV_32F ? 1e-6 : 0));
    std::cout << "  " << c.name << ": max difference " << worst << ", " << differing << " of "
              << ours.total() << " pixels differ\n";
    CHECK(worst <= c.tolerance + (ours.depth() == CV_32F ? 1e-3 : 0));
    // Where rounding may differ, it may differ only rarely.
    CHECK(differing <= static_cast<int>(ours.total() / 100));
  }
}

TEST_CASE("gaussian_filter is normalised, reflects at edges and keeps constants") {
  cv::Mat constant(20, 30, CV_64FC1, cv::Scalar(0.25));
  CHECK(cv::norm(augment::fn::gaussian_filter(constant, 6.0), constant, cv::NORM_INF) < 1e-12);
  cv::Mat impulse = cv::Mat::zeros(41, 41, CV_64FC1);
  impulse.at<double>(20, 20) = 1.0;
  const cv::Mat g = augment::fn::gaussian_filter(impulse, 2.0);
  CHECK(cv::sum(g)[0] == Approx(1.0));
  CHECK(g.at<double>(20, 18) == Approx(g.at<double>(18, 20)));
}

TEST_CASE("ops refuse images they cannot handle, naming why") {
  cv::Mat f(16, 16, CV_32FC1, cv::Scalar(0.5));
  CHECK_THROWS_WITH(augment::fn::clahe(f, 2, 8, 8), Catch::Matchers::Contains("8-bit"));
  cv::Mat u(16, 16, CV_8UC1, cv::Scalar(1));
  CHECK_THROWS_AS(augment::fn::random_crop(u, 20, 8, 0.5, 0.5), core::DataError);
  CHECK_THROWS_AS(augment::fn::center_crop(u, 8, 17), core::DataError);
  CHECK_THROWS_AS(augment::fn::grid_distortion(u, 20, {}, {}, 1, 4, 0), core::DataError);
}
