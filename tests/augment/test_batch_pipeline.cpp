// Batch augmentation on the device (tensor_warp.h, batch_pipeline.h) against the loader's
// OpenCV ops (functional.h), which test_functional proves equal to Albumentations' formulas.
// Runs on the CPU; the CUDA cases run where LibTorch sees a GPU.
#include <catch2/catch.hpp>

#include <cmath>

#include <opencv2/imgproc.hpp>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "pneumo/augment/batch_pipeline.h"
#include "pneumo/augment/functional.h"
#include "pneumo/augment/pipeline.h"
#include "pneumo/augment/tensor_warp.h"
#include "pneumo/core/config_node.h"
#include "pneumo/core/error.h"

using namespace pneumo;
using namespace pneumo::augment;
using Catch::Matchers::Contains;

namespace {

// A 72x64 (width x height) grey image with gradients, a disk and a line, as float 0..255.
cv::Mat test_image() {
  cv::Mat img(64, 72, CV_32FC1);
  for (int y = 0; y < img.rows; ++y)
    for (int x = 0; x < img.cols; ++x)
      img.at<float>(y, x) = static_cast<float>(60 + 1.5 * x + 0.8 * y + 30 * std::sin(x / 4.0) * std::cos(y / 6.0));
  cv::circle(img, {45, 25}, 12, cv::Scalar(230), -1);
  cv::line(img, {5, 60}, {70, 3}, cv::Scalar(15), 2);
  return img;
}

cv::Mat test_mask() {
  cv::Mat mask = cv::Mat::zeros(64, 72, CV_8UC1);
  cv::circle(mask, {30, 40}, 14, cv::Scalar(255), -1);
  return mask;
}

at::Tensor to_tensor(const cv::Mat& m) {  // one image -> [1, 1, H, W] float32
  cv::Mat f;
  m.convertTo(f, CV_32F);
  return torch::from_blob(f.data, {1, 1, f.rows, f.cols}, torch::kFloat32).clone();
}

cv::Mat to_mat(const at::Tensor& t) {  // [1, 1, H, W] or [H, W] -> CV_32FC1
  const at::Tensor c = t.reshape({t.size(-2), t.size(-1)}).to(torch::kCPU, torch::kFloat32).contiguous();
  return cv::Mat(static_cast<int>(c.size(0)), static_cast<int>(c.size(1)), CV_32FC1, c.data_ptr<float>()).clone();
}

double max_abs_diff(const cv::Mat& a, const cv::Mat& b) { return cv::norm(a, b, cv::NORM_INF); }
double mean_abs_diff(const cv::Mat& a, const cv::Mat& b) { return cv::norm(a, b, cv::NORM_L1) / a.total(); }

// Fraction of pixels where two 0/255 (or 0/1 scaled) masks disagree.
double mask_mismatch(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat diff;
  cv::absdiff(a, b, diff);
  return static_cast<double>(cv::countNonZero(diff > 0.5)) / static_cast<double>(a.total());
}

at::Tensor fill(double v) { return torch::full({1}, v); }

core::ConfigNode yaml(const std::string& text) { return core::parse_yaml(text, "test.yaml"); }

}  // namespace

TEST_CASE("warp_affine matches cv::warpAffine for each border mode") {
  const cv::Mat image = test_image();
  const std::vector<std::pair<int, Border>> borders = {{cv::BORDER_CONSTANT, Border::kConstant},
                                                       {cv::BORDER_REPLICATE, Border::kReplicate},
                                                       {cv::BORDER_REFLECT, Border::kReflect},
                                                       {cv::BORDER_REFLECT_101, Border::kReflect101}};
  auto compare = [&](const cv::Mat& matrix, double max_tolerance, double mean_tolerance) {
    const at::Tensor m = torch::from_blob(const_cast<double*>(matrix.ptr<double>()), {1, 2, 3}, torch::kDouble).clone();
    std::vector<cv::Mat> results;
    for (const auto& [cv_border, border] : borders) {
      CAPTURE(cv_border);
      cv::Mat expected;
      cv::warpAffine(image, expected, matrix, image.size(), cv::INTER_LINEAR, cv_border, cv::Scalar::all(7));
      const cv::Mat ours = to_mat(warp_affine(to_tensor(image), m, Interpolation::kLinear, border, fill(7)));
      CHECK(max_abs_diff(ours, expected) < max_tolerance);
      CHECK(mean_abs_diff(ours, expected) < mean_tolerance);
      results.push_back(ours);
    }
    return results;
  };
  SECTION("source positions on OpenCV's 1/32-pixel grid: equal") {
    // Rotated by 90 degrees and shrunk to half (source positions on a 1/16 grid), placed so
    // that most of the output shows the borders around the image.
    cv::Mat matrix = (cv::Mat_<double>(2, 3) << 0.0, 0.5, 20.40625, -0.5, 0.0, 40.15625);
    const std::vector<cv::Mat> results = compare(matrix, 0.01, 1e-3);
    for (size_t i = 0; i < results.size(); ++i)
      for (size_t j = 0; j < i; ++j) CHECK(max_abs_diff(results[i], results[j]) > 20.0);  // a wrong fold shows
  }
  SECTION("any rotation: within OpenCV's 1/32-pixel rounding") {
    cv::Mat matrix = cv::getRotationMatrix2D(cv::Point2f(36.0f, 32.0f), 17.5, 1.1);
    matrix.at<double>(0, 2) += 0.05 * 72;
    matrix.at<double>(1, 2) -= 0.03 * 64;
    // A 1/64-pixel shift across the image's 215-level steps (the disk, the line) moves a
    // pixel by up to about 3.4 levels per axis.
    compare(matrix, 7.0, 0.2);
  }
}

TEST_CASE("warp_affine moves masks as cv::warpAffine does with nearest neighbour") {
  cv::Mat matrix = cv::getRotationMatrix2D(cv::Point2f(36.0f, 32.0f), 17.5, 1.1);
  matrix.at<double>(0, 2) += 0.05 * 72;
  const at::Tensor m = torch::from_blob(matrix.ptr<double>(), {1, 2, 3}, torch::kDouble).clone();
  // Masks move with nearest neighbour: ties at exactly half a pixel may round either way.
  const cv::Mat mask = test_mask();
  cv::Mat expected_mask;
  cv::warpAffine(mask, expected_mask, matrix, mask.size(), cv::INTER_NEAREST, cv::BORDER_CONSTANT, cv::Scalar::all(0));
  const cv::Mat ours_mask =
      to_mat(warp_affine(to_tensor(mask), m, Interpolation::kNearest, Border::kConstant, fill(0)));
  CHECK(mask_mismatch(ours_mask, [&] { cv::Mat f; expected_mask.convertTo(f, CV_32F); return f; }()) < 0.005);
  CHECK(cv::countNonZero(ours_mask != 0 & ours_mask != 255) == 0);  // still binary
}

TEST_CASE("warp_affine at identity returns the images, and refuses what does not fit") {
  const at::Tensor images = torch::rand({3, 2, 9, 7});
  const at::Tensor identity = torch::tensor({1.0, 0.0, 0.0, 0.0, 1.0, 0.0}, torch::kDouble).reshape({1, 2, 3}).repeat({3, 1, 1});
  for (const Border border : {Border::kConstant, Border::kReplicate, Border::kReflect, Border::kReflect101})
    CHECK(torch::allclose(warp_affine(images, identity, Interpolation::kLinear, border, fill(0)), images, 1e-5, 1e-5));
  CHECK(torch::equal(warp_affine(images, identity, Interpolation::kNearest, Border::kReflect101, fill(0)), images));

  CHECK_THROWS_WITH(warp_affine(images, identity.slice(0, 0, 2), Interpolation::kLinear, Border::kConstant, fill(0)),
                    Contains("expected [3, 2, 3]"));
  CHECK_THROWS_WITH(warp_affine(images, torch::zeros({3, 2, 3}, torch::kDouble), Interpolation::kLinear,
                                Border::kConstant, fill(0)),
                    Contains("singular"));
  CHECK_THROWS_WITH(warp_affine(torch::rand({1, 1, 1, 5}), identity.slice(0, 0, 1), Interpolation::kLinear,
                                Border::kConstant, fill(0)),
                    Contains("at least 2x2"));
  CHECK_THROWS_WITH(remap(images, torch::zeros({3, 9, 7}), torch::zeros({3, 9, 6}), Interpolation::kLinear,
                          Border::kConstant, fill(0)),
                    Contains("do not fit"));
  Border b{};
  CHECK_FALSE(border_from_opencv(cv::BORDER_WRAP, b));
  CHECK(border_from_opencv(cv::BORDER_REFLECT_101, b));
  CHECK(b == Border::kReflect101);
}

TEST_CASE("an elastic field's affine step and remap on the device match the loader's") {
  const cv::Mat image = test_image();
  for (const int cv_border : {cv::BORDER_REFLECT_101, cv::BORDER_CONSTANT}) {
    CAPTURE(cv_border);
    Border border{};
    REQUIRE(border_from_opencv(cv_border, border));
    const fn::ElasticField field = fn::elastic_field(image.size(), 40.0, 5.0, 4.0, 321, false);
    const cv::Mat expected = fn::apply_elastic(image, field, cv::INTER_LINEAR, cv_border, 9.0);
    const at::Tensor affine = torch::from_blob(const_cast<double*>(field.affine.ptr<double>()), {1, 2, 3}, torch::kDouble).clone();
    const at::Tensor step = warp_affine(to_tensor(image), affine, Interpolation::kLinear, border, fill(9));
    const at::Tensor ours = remap(step, to_tensor(field.map_x).squeeze(1), to_tensor(field.map_y).squeeze(1),
                                  Interpolation::kLinear, border, fill(9));
    // Two interpolations, each within OpenCV's 1/32-pixel rounding (see above).
    CHECK(mean_abs_diff(to_mat(ours), expected) < 0.3);
    CHECK(max_abs_diff(to_mat(ours), expected) < 10.0);
  }
  // elastic_affine is the field's affine step alone.
  const fn::ElasticField field = fn::elastic_field({72, 64}, 1.0, 5.0, 6.0, 4242, true);
  CHECK(cv::norm(fn::elastic_affine({72, 64}, 6.0, 4242), field.affine, cv::NORM_INF) == 0.0);
}

TEST_CASE("gaussian_smooth equals scipy's gaussian_filter and OpenCV's 17-tap blur") {
  cv::Mat noise(23, 31, CV_64FC1);
  cv::randu(noise, -1.0, 1.0);
  for (const double sigma : {1.5, 4.0, 30.0}) {  // 30: the kernel is wider than the field
    CAPTURE(sigma);
    const cv::Mat expected = fn::gaussian_filter(noise, sigma);
    cv::Mat expected32;
    expected.convertTo(expected32, CV_32F);
    const cv::Mat ours = to_mat(gaussian_smooth(to_tensor(noise), sigma, false));
    CHECK(max_abs_diff(ours, expected32) < 2e-6);
  }
  cv::Mat noise32, blurred;
  noise.convertTo(noise32, CV_32F);
  cv::GaussianBlur(noise32, blurred, cv::Size(17, 17), 3.0);
  CHECK(max_abs_diff(to_mat(gaussian_smooth(to_tensor(noise32), 3.0, true)), blurred) < 2e-6);
  CHECK_THROWS_WITH(gaussian_smooth(torch::rand({1, 2, 5, 5}), 1.0, false), Contains("[N, 1, H, W]"));
}

namespace {

// Eight samples of the test image (with small per-sample changes) and mask, as the loader
// collates them: 3 channels, (grey / 255 - mean) / std.
struct TestBatch {
  std::vector<cv::Mat> images, masks;
  std::vector<int64_t> ids;
  std::vector<double> mean{0.485, 0.456, 0.406}, std{0.229, 0.224, 0.225};
  at::Tensor image_tensor, mask_tensor;
};

TestBatch test_batch(int count = 8) {
  TestBatch b;
  std::vector<at::Tensor> images, masks;
  for (int i = 0; i < count; ++i) {
    cv::Mat image;
    test_image().convertTo(image, CV_8U, 1.0, i * 3.0);
    b.images.push_back(image);
    b.masks.push_back(test_mask());
    b.ids.push_back(100 + i);
    const at::Tensor grey = to_tensor(image) / 255.0;
    std::vector<at::Tensor> channels;
    for (int c = 0; c < 3; ++c) channels.push_back((grey - b.mean[static_cast<size_t>(c)]) / b.std[static_cast<size_t>(c)]);
    images.push_back(torch::cat(channels, 1));
    masks.push_back(to_tensor(test_mask()) / 255.0);
  }
  b.image_tensor = torch::cat(images);
  b.mask_tensor = torch::cat(masks);
  return b;
}

// Channel c of sample i back in grey levels.
cv::Mat grey_of(const TestBatch& b, const at::Tensor& images, int64_t i, int64_t c) {
  return to_mat((images[i][c] * b.std[static_cast<size_t>(c)] + b.mean[static_cast<size_t>(c)]) * 255.0);
}

const char* kSpatialOps = R"(
- HorizontalFlip
- VerticalFlip
- ShiftScaleRotate: {rotate_limit: 20, border_mode: constant, value: 30, mask_value: 0}
- ElasticTransform: {alpha: 0, sigma: 5, alpha_affine: 4, p: 0.7}
)";

}  // namespace

TEST_CASE("the device pipeline draws as the loader's pipeline and gives its results") {
  const Pipeline loader_ops = Pipeline::from_config(yaml(kSpatialOps), "augment.train");
  const BatchPipeline device_ops = BatchPipeline::from_config(yaml(kSpatialOps), "augment.on_device");
  REQUIRE(device_ops.size() == 4);
  TestBatch b = test_batch();
  at::Tensor images = b.image_tensor.clone(), masks = b.mask_tensor.clone();
  device_ops.apply(images, masks, b.ids, 7, 2, b.mean, b.std);
  int changed = 0;
  for (size_t i = 0; i < b.ids.size(); ++i) {
    CAPTURE(i);
    cv::Mat image = b.images[i].clone(), mask = b.masks[i].clone();
    core::Rng rng = BatchPipeline::sample_rng(7, 2, b.ids[i]);
    loader_ops.apply(image, mask, rng);
    cv::Mat expected, expected_mask;
    image.convertTo(expected, CV_32F);
    mask.convertTo(expected_mask, CV_32F, 1.0 / 255.0);
    for (int64_t c = 0; c < 3; ++c) {
      // The loader rounds to 8 bits after each op; the device keeps floats.
      const cv::Mat ours = grey_of(b, images, static_cast<int64_t>(i), c);
      CHECK(mean_abs_diff(ours, expected) < 0.6);
    }
    CHECK(mask_mismatch(to_mat(masks[static_cast<int64_t>(i)]), expected_mask) < 0.01);
    if (max_abs_diff(expected, [&] { cv::Mat f; b.images[i].convertTo(f, CV_32F); return f; }()) > 0) ++changed;
  }
  CHECK(changed >= 6);  // the ops did apply to most samples
}

TEST_CASE("a sample is augmented the same in any batch, and seed and epoch change it") {
  const BatchPipeline ops = BatchPipeline::from_config(yaml(R"(
- HorizontalFlip
- ShiftScaleRotate: {rotate_limit: 30}
- ElasticTransform: {alpha: 20, sigma: 4, alpha_affine: 3}
)"),
                                                       "augment.on_device");
  TestBatch b = test_batch(4);
  auto run = [&](const std::vector<int64_t>& rows, uint64_t seed, int64_t epoch) {
    const at::Tensor index = torch::tensor(rows, torch::kLong);
    at::Tensor images = b.image_tensor.index_select(0, index), masks = b.mask_tensor.index_select(0, index);
    std::vector<int64_t> ids;
    for (const int64_t r : rows) ids.push_back(b.ids[static_cast<size_t>(r)]);
    ops.apply(images, masks, ids, seed, epoch, b.mean, b.std);
    return std::make_pair(images, masks);
  };
  const auto all = run({0, 1, 2, 3}, 5, 0);
  const auto alone = run({2}, 5, 0);
  CHECK(torch::allclose(all.first[2], alone.first[0], 1e-5, 1e-5));
  CHECK(torch::equal(all.second[2], alone.second[0]));
  CHECK(torch::equal(run({0, 1, 2, 3}, 5, 0).first, all.first));
  CHECK_FALSE(torch::allclose(run({0, 1, 2, 3}, 6, 0).first, all.first));
  CHECK_FALSE(torch::allclose(run({0, 1, 2, 3}, 5, 1).first, all.first));
  // Masks stay 0 or 1.
  CHECK(torch::equal(all.second, all.second.round()));
}

TEST_CASE("the device's elastic displacement has the loader's size") {
  // On a horizontal ramp (grey = x) without the affine step, output - x is the x displacement.
  cv::Mat ramp(64, 64, CV_32FC1);
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x) ramp.at<float>(y, x) = static_cast<float>(x);
  const double alpha = 30.0, sigma = 4.0;
  cv::Mat xs = ramp.clone();
  double ours_sq = 0.0, loader_sq = 0.0, ours_mean = 0.0;
  const BatchPipeline ops = BatchPipeline::from_config(
      yaml("[{ElasticTransform: {alpha: 30, sigma: 4, alpha_affine: 0, p: 1, border_mode: replicate}}]"), "on_device");
  const int samples = 16;
  std::vector<int64_t> ids;
  for (int i = 0; i < samples; ++i) ids.push_back(i);
  at::Tensor images = to_tensor(ramp).repeat({samples, 1, 1, 1}), masks;
  ops.apply(images, masks, ids, 11, 0, {0.0}, {1.0 / 255.0});  // tensor values are grey levels
  // Away from the borders, where replicate clamps the ramp.
  const cv::Rect inner(16, 16, 32, 32);
  for (int i = 0; i < samples; ++i) {
    const cv::Mat d = to_mat(images[i]) - xs;
    ours_sq += cv::norm(d(inner), cv::NORM_L2SQR) / inner.area();
    ours_mean += cv::mean(d(inner))[0];
    const cv::Mat loader = fn::elastic_transform(ramp, alpha, sigma, 0.0, cv::INTER_LINEAR, cv::BORDER_REPLICATE, 0,
                                                 static_cast<uint32_t>(1000 + i), false);
    loader_sq += cv::norm((loader - xs)(inner), cv::NORM_L2SQR) / inner.area();
  }
  const double ours_rms = std::sqrt(ours_sq / samples), loader_rms = std::sqrt(loader_sq / samples);
  CAPTURE(ours_rms, loader_rms, ours_mean / samples);
  CHECK(loader_rms > 0.5);
  CHECK(ours_rms / loader_rms > 0.75);
  CHECK(ours_rms / loader_rms < 1.33);
  CHECK(std::abs(ours_mean / samples) < loader_rms / 2);
}

TEST_CASE("device pipelines refuse ops and settings the device cannot run, naming them") {
  CHECK_THROWS_WITH(BatchPipeline::from_config(yaml("[HorizontalFlip, CLAHE]"), "augment.on_device"),
                    Contains("augment.on_device[1]") && Contains("'CLAHE'") &&
                        Contains("ElasticTransform, HorizontalFlip, ShiftScaleRotate, VerticalFlip") &&
                        Contains("augment.train"));
  CHECK_THROWS_WITH(BatchPipeline::from_config(yaml("[{ShiftScaleRotate: {border_mode: wrap}}]"), "augment.on_device"),
                    Contains("border_mode") && Contains("not wrap"));
  CHECK_THROWS_WITH(BatchPipeline::from_config(yaml("[{ElasticTransform: {interpolation: cubic}}]"), "augment.on_device"),
                    Contains("interpolation") && Contains("linear or nearest"));
  CHECK_THROWS_WITH(BatchPipeline::from_config(yaml("[{VerticalFlip: {q: 1}}]"), "augment.on_device"), Contains("'q'"));
  CHECK_THROWS_WITH(BatchPipeline::from_config(yaml("{HorizontalFlip: {}}"), "augment.on_device"),
                    Contains("expected a list of ops"));
  CHECK(BatchPipeline::from_config(core::ConfigNode(), "augment.on_device").empty());

  const BatchPipeline flip = BatchPipeline::from_config(yaml("[{HorizontalFlip: {p: 1}}]"), "augment.on_device");
  at::Tensor images = torch::rand({2, 1, 8, 8}), masks = torch::zeros({2, 1, 8, 8});
  CHECK_THROWS_WITH(flip.apply(images, masks, {1}, 0, 0, {0.0}, {1.0}), Contains("2 images but 1 sample ids"));
  at::Tensor bad_masks = torch::zeros({2, 1, 8, 9});
  CHECK_THROWS_WITH(flip.apply(images, bad_masks, {1, 2}, 0, 0, {0.0}, {1.0}), Contains("expected [2, 1, 8, 8]"));
  CHECK_THROWS_WITH(flip.apply(images, masks, {1, 2}, 0, 0, {0.0, 0.0}, {1.0}), Contains("2 mean values for 1 channels"));
  const at::Tensor before = images.clone();
  flip.apply(images, masks, {1, 2}, 0, 0, {0.0}, {1.0});
  CHECK(torch::equal(images, before.flip({3})));
}

TEST_CASE("the device pipeline gives the CPU's results on a GPU") {
  if (!torch::cuda::is_available()) {
    WARN("skipped: LibTorch sees no CUDA device");
    return;
  }
  const BatchPipeline ops = BatchPipeline::from_config(yaml(kSpatialOps), "augment.on_device");
  TestBatch b = test_batch();
  at::Tensor cpu_images = b.image_tensor.clone(), cpu_masks = b.mask_tensor.clone();
  at::Tensor gpu_images = b.image_tensor.to(torch::kCUDA), gpu_masks = b.mask_tensor.to(torch::kCUDA);
  ops.apply(cpu_images, cpu_masks, b.ids, 3, 1, b.mean, b.std);
  ops.apply(gpu_images, gpu_masks, b.ids, 3, 1, b.mean, b.std);
  CHECK(gpu_images.is_cuda());
  CHECK(torch::allclose(gpu_images.cpu(), cpu_images, 1e-4, 1e-4));
  CHECK((gpu_masks.cpu() != cpu_masks).sum().item<int64_t>() < cpu_masks.numel() / 200);
  // With noise, the field comes from the GPU's generator: same size, other values.
  const BatchPipeline elastic =
      BatchPipeline::from_config(yaml("[{ElasticTransform: {alpha: 20, sigma: 4, p: 1}}]"), "augment.on_device");
  at::Tensor a = b.image_tensor.to(torch::kCUDA), m = b.mask_tensor.to(torch::kCUDA);
  elastic.apply(a, m, b.ids, 3, 1, b.mean, b.std);
  CHECK(torch::isfinite(a).all().item<bool>());
}
