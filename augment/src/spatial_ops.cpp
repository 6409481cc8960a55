// Spatial transforms: they move the mask with the image (nearest neighbour, mask_value fill).
#include <cmath>

#include <fmt/format.h>
#include <opencv2/imgproc.hpp>

#include "ops.h"
#include "pneumo/augment/functional.h"
#include "pneumo/core/error.h"

namespace pneumo::augment {

namespace {

// Applies `warp(img, interpolation, value)` to the image and, with nearest neighbour and the
// mask fill, to the mask.
template <class Warp>
void warp_both(Target& t, const WarpSettings& s, Warp warp) {
  t.image = warp(t.image, s.interpolation, s.value);
  if (!t.mask.empty()) t.mask = warp(t.mask, cv::INTER_NEAREST, s.mask_value);
}

class Flip : public Transform {
 public:
  Flip(const char* name, OpParams& params, bool horizontal)
      : Transform(name, read_probability(params, 0.5)), horizontal_(horizontal) {}

 protected:
  void apply(Target& t, core::Rng&) const override {
    t.image = horizontal_ ? fn::hflip(t.image) : fn::vflip(t.image);
    if (!t.mask.empty()) t.mask = horizontal_ ? fn::hflip(t.mask) : fn::vflip(t.mask);
  }

 private:
  bool horizontal_;
};

class ShiftScaleRotate : public Transform {
 public:
  explicit ShiftScaleRotate(OpParams& params)
      : Transform("ShiftScaleRotate", read_probability(params, 0.5)),
        params_(ShiftScaleRotateParams::read(params)),
        warp_(read_warp_settings(params)) {}

 protected:
  void apply(Target& t, core::Rng& rng) const override {
    const ShiftScaleRotateParams::Draw d = params_.draw(rng);
    warp_both(t, warp_, [&](const cv::Mat& img, int interpolation, double value) {
      return fn::shift_scale_rotate(img, d.angle, d.scale, d.dx, d.dy, interpolation, warp_.border_mode, value);
    });
  }

 private:
  ShiftScaleRotateParams params_;
  WarpSettings warp_;
};

class ElasticTransform : public Transform {
 public:
  explicit ElasticTransform(OpParams& params)
      : Transform("ElasticTransform", read_probability(params, 0.5)),
        params_(ElasticParams::read(params)),
        warp_(read_warp_settings(params)) {}

 protected:
  void apply(Target& t, core::Rng& rng) const override {
    const uint32_t seed = ElasticParams::draw_random_state(rng);
    const ElasticParams& e = params_;
    const fn::ElasticField field = fn::elastic_field(t.image.size(), e.alpha, e.sigma, e.alpha_affine, seed, e.approximate);
    warp_both(t, warp_, [&](const cv::Mat& img, int interpolation, double value) {
      return fn::apply_elastic(img, field, interpolation, warp_.border_mode, value);
    });
  }

 private:
  ElasticParams params_;
  WarpSettings warp_;
};

class GridDistortion : public Transform {
 public:
  explicit GridDistortion(OpParams& params)
      : Transform("GridDistortion", read_probability(params, 0.5)),
        num_steps_(params.integer("num_steps", 5, positive_int())),
        distort_(params.range("distort_limit", {-0.3, 0.3})),
        warp_(read_warp_settings(params)) {}

 protected:
  void apply(Target& t, core::Rng& rng) const override {
    std::vector<double> xsteps, ysteps;
    for (int i = 0; i <= num_steps_; ++i) xsteps.push_back(1.0 + rng.uniform(distort_.lo, distort_.hi));
    for (int i = 0; i <= num_steps_; ++i) ysteps.push_back(1.0 + rng.uniform(distort_.lo, distort_.hi));
    warp_both(t, warp_, [&](const cv::Mat& img, int interpolation, double value) {
      return fn::grid_distortion(img, num_steps_, xsteps, ysteps, interpolation, warp_.border_mode, value);
    });
  }

 private:
  int num_steps_;
  Range distort_;
  WarpSettings warp_;
};

class OpticalDistortion : public Transform {
 public:
  explicit OpticalDistortion(OpParams& params)
      : Transform("OpticalDistortion", read_probability(params, 0.5)),
        distort_(params.range("distort_limit", {-0.05, 0.05})),
        shift_(params.range("shift_limit", {-0.05, 0.05})),
        warp_(read_warp_settings(params)) {}

 protected:
  void apply(Target& t, core::Rng& rng) const override {
    const double k = rng.uniform(distort_.lo, distort_.hi);
    // Python's round(): halves to even, which nearbyint does in the default rounding mode.
    const double dx = std::nearbyint(rng.uniform(shift_.lo, shift_.hi));
    const double dy = std::nearbyint(rng.uniform(shift_.lo, shift_.hi));
    warp_both(t, warp_, [&](const cv::Mat& img, int interpolation, double value) {
      return fn::optical_distortion(img, k, dx, dy, interpolation, warp_.border_mode, value);
    });
  }

 private:
  Range distort_, shift_;
  WarpSettings warp_;
};

class RandomSizedCrop : public Transform {
 public:
  explicit RandomSizedCrop(OpParams& params)
      : Transform("RandomSizedCrop", read_probability(params, 1.0)),
        min_max_height_(required_pair(params)),
        height_(required(params, "height")),
        width_(required(params, "width")),
        w2h_ratio_(params.number("w2h_ratio", 1.0, positive())),
        interpolation_(params.interpolation("interpolation", cv::INTER_LINEAR)) {}

 protected:
  void apply(Target& t, core::Rng& rng) const override {
    const int crop_height = static_cast<int>(rng.randint(min_max_height_.first, min_max_height_.second));
    const double h_start = rng.uniform();
    const double w_start = rng.uniform();
    const int crop_width = static_cast<int>(crop_height * w2h_ratio_);
    t.image = fn::resize(fn::random_crop(t.image, crop_height, crop_width, h_start, w_start),
                         height_, width_, interpolation_);
    if (!t.mask.empty())
      t.mask = fn::resize(fn::random_crop(t.mask, crop_height, crop_width, h_start, w_start),
                          height_, width_, cv::INTER_NEAREST);
  }

 private:
  static std::pair<int, int> required_pair(OpParams& params) {
    const auto v = params.int_pair("min_max_height", {0, 0});
    if (v.first < 1 || v.second < v.first)
      params.fail("min_max_height", "required: [min, max] crop heights with 1 <= min <= max");
    return v;
  }
  static int required(OpParams& params, const char* key) {
    const int v = params.integer(key, 0);
    if (v < 1) params.fail(key, "required: a positive output size in pixels");
    return v;
  }

  std::pair<int, int> min_max_height_;
  int height_, width_;
  double w2h_ratio_;
  int interpolation_;
};

// RandomCrop, CenterCrop and Resize: a fixed output size.
class SizedOp : public Transform {
 public:
  enum class Kind { kRandomCrop, kCenterCrop, kResize };

  SizedOp(const char* name, Kind kind, OpParams& params)
      : Transform(name, read_probability(params, 1.0)),
        kind_(kind),
        height_(params.integer("height", 0)),
        width_(params.integer("width", 0)),
        interpolation_(kind == Kind::kResize ? params.interpolation("interpolation", cv::INTER_LINEAR)
                                             : cv::INTER_LINEAR) {
    if (height_ < 1) params.fail("height", "required: a positive size in pixels");
    if (width_ < 1) params.fail("width", "required: a positive size in pixels");
  }

 protected:
  void apply(Target& t, core::Rng& rng) const override {
    switch (kind_) {
      case Kind::kRandomCrop: {
        const double h_start = rng.uniform();
        const double w_start = rng.uniform();
        t.image = fn::random_crop(t.image, height_, width_, h_start, w_start);
        if (!t.mask.empty()) t.mask = fn::random_crop(t.mask, height_, width_, h_start, w_start);
        break;
      }
      case Kind::kCenterCrop:
        t.image = fn::center_crop(t.image, height_, width_);
        if (!t.mask.empty()) t.mask = fn::center_crop(t.mask, height_, width_);
        break;
      case Kind::kResize:
        t.image = fn::resize(t.image, height_, width_, interpolation_);
        if (!t.mask.empty()) t.mask = fn::resize(t.mask, height_, width_, cv::INTER_NEAREST);
        break;
    }
  }

 private:
  Kind kind_;
  int height_, width_, interpolation_;
};

}  // namespace

void register_spatial_ops(core::Registry<OpFactory>& registry) {
  registry.add("HorizontalFlip", [](OpParams& p) { return std::make_shared<Flip>("HorizontalFlip", p, true); });
  registry.add("VerticalFlip", [](OpParams& p) { return std::make_shared<Flip>("VerticalFlip", p, false); });
  registry.add("ShiftScaleRotate", [](OpParams& p) { return std::make_shared<ShiftScaleRotate>(p); });
  registry.add("ElasticTransform", [](OpParams& p) { return std::make_shared<ElasticTransform>(p); });
  registry.add("GridDistortion", [](OpParams& p) { return std::make_shared<GridDistortion>(p); });
  registry.add("OpticalDistortion", [](OpParams& p) { return std::make_shared<OpticalDistortion>(p); });
  registry.add("RandomSizedCrop", [](OpParams& p) { return std::make_shared<RandomSizedCrop>(p); });
  registry.add("RandomCrop", [](OpParams& p) {
    return std::make_shared<SizedOp>("RandomCrop", SizedOp::Kind::kRandomCrop, p);
  });
  registry.add("CenterCrop", [](OpParams& p) {
    return std::make_shared<SizedOp>("CenterCrop", SizedOp::Kind::kCenterCrop, p);
  });
  registry.add("Resize", [](OpParams& p) {
    return std::make_shared<SizedOp>("Resize", SizedOp::Kind::kResize, p);
  });
}

}  // namespace pneumo::augment
