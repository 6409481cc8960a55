// Pixel transforms: they change the image only, never the mask.
#include <cmath>

#include <fmt/format.h>

#include "ops.h"
#include "pneumo/augment/functional.h"
#include "pneumo/core/error.h"

namespace pneumo::augment {

namespace {

// RandomBrightnessContrast and its deprecated one-sided forms RandomBrightness (`limit` =
// brightness) and RandomContrast (`limit` = contrast), which 0.4.x derives from it.
class BrightnessContrast : public Transform {
 public:
  enum class Kind { kBoth, kBrightness, kContrast };

  BrightnessContrast(const char* name, Kind kind, OpParams& params)
      : Transform(name, read_probability(params, 0.5)) {
    if (kind == Kind::kBoth) {
      brightness_ = params.range("brightness_limit", {-0.2, 0.2});
      contrast_ = params.range("contrast_limit", {-0.2, 0.2}, {}, 1.0);
      by_max_ = params.flag("brightness_by_max", true);
    } else if (kind == Kind::kBrightness) {
      brightness_ = params.range("limit", {-0.2, 0.2});
    } else {
      contrast_ = params.range("limit", {-0.2, 0.2}, {}, 1.0);
    }
  }

 protected:
  void apply(Target& t, core::Rng& rng) const override {
    const double alpha = rng.uniform(contrast_.lo, contrast_.hi);
    const double beta = rng.uniform(brightness_.lo, brightness_.hi);
    t.image = fn::brightness_contrast_adjust(t.image, alpha, beta, by_max_);
  }

 private:
  Range brightness_{0.0, 0.0};
  Range contrast_{1.0, 1.0};
  bool by_max_ = true;
};

class RandomGamma : public Transform {
 public:
  explicit RandomGamma(OpParams& params)
      : Transform("RandomGamma", read_probability(params, 0.5)),
        limit_(params.int_pair("gamma_limit", {80, 120}, positive_int())) {
    // Albumentations 0.4.6 takes eps and ignores it ("Deprecated"); so do we.
    params.number("eps", 0.0, non_negative());
    if (limit_.first > limit_.second) params.fail("gamma_limit", "expected [lo, hi] with lo <= hi");
  }

 protected:
  void apply(Target& t, core::Rng& rng) const override {
    const double gamma = static_cast<double>(rng.randint(limit_.first, limit_.second)) / 100.0;
    t.image = fn::gamma_transform(t.image, gamma);
  }

 private:
  std::pair<int, int> limit_;
};

class Clahe : public Transform {
 public:
  explicit Clahe(OpParams& params)
      : Transform("CLAHE", read_probability(params, 0.5)),
        clip_(params.range("clip_limit", {1.0, 4.0}, 1.0, 0.0, positive())),
        tiles_(params.int_pair("tile_grid_size", {8, 8}, positive_int())) {}

 protected:
  void apply(Target& t, core::Rng& rng) const override {
    const double clip = rng.uniform(clip_.lo, clip_.hi);
    t.image = fn::clahe(t.image, clip, tiles_.first, tiles_.second);
  }

 private:
  Range clip_;
  std::pair<int, int> tiles_;
};

class GaussNoise : public Transform {
 public:
  explicit GaussNoise(OpParams& params)
      : Transform("GaussNoise", read_probability(params, 0.5)),
        var_(params.range("var_limit", {10.0, 50.0}, 0.0, 0.0, non_negative())),
        mean_(params.number("mean", 0.0)) {}

 protected:
  void apply(Target& t, core::Rng& rng) const override {
    const double var = rng.uniform(var_.lo, var_.hi);
    const auto seed = static_cast<uint32_t>(rng.randint(0, 4294967295LL));
    t.image = fn::gauss_noise(t.image, mean_, std::sqrt(var), seed);
  }

 private:
  Range var_;
  double mean_;
};

class Blur : public Transform {
 public:
  explicit Blur(OpParams& params) : Transform("Blur", read_probability(params, 0.5)) {
    const Range r = params.range("blur_limit", {3, 7}, 3.0);
    if (r.lo < 1 || r.lo != std::floor(r.lo) || r.hi != std::floor(r.hi))
      params.fail("blur_limit", "expected whole kernel sizes >= 1");
    for (int k = static_cast<int>(r.lo); k <= static_cast<int>(r.hi); k += 2) sizes_.push_back(k);
  }

 protected:
  void apply(Target& t, core::Rng& rng) const override {
    const int k = sizes_[static_cast<size_t>(rng.randint(0, static_cast<int64_t>(sizes_.size()) - 1))];
    t.image = fn::blur(t.image, k);
  }

 private:
  std::vector<int> sizes_;
};

class CoarseDropout : public Transform {
 public:
  explicit CoarseDropout(OpParams& params)
      : Transform("CoarseDropout", read_probability(params, 0.5)),
        max_holes_(params.integer("max_holes", 8, positive_int())),
        max_height_(params.integer("max_height", 8, positive_int())),
        max_width_(params.integer("max_width", 8, positive_int())),
        min_holes_(params.optional_integer("min_holes", positive_int()).value_or(max_holes_)),
        min_height_(params.optional_integer("min_height", positive_int()).value_or(max_height_)),
        min_width_(params.optional_integer("min_width", positive_int()).value_or(max_width_)),
        fill_value_(params.number("fill_value", 0.0)) {
    if (min_holes_ > max_holes_) params.fail("min_holes", "must not exceed max_holes");
    if (min_height_ > max_height_) params.fail("min_height", "must not exceed max_height");
    if (min_width_ > max_width_) params.fail("min_width", "must not exceed max_width");
  }

 protected:
  void apply(Target& t, core::Rng& rng) const override {
    const int height = t.image.rows, width = t.image.cols;
    std::vector<cv::Rect> holes;
    const int64_t count = rng.randint(min_holes_, max_holes_);
    for (int64_t n = 0; n < count; ++n) {
      const auto hole_height = static_cast<int>(rng.randint(min_height_, max_height_));
      const auto hole_width = static_cast<int>(rng.randint(min_width_, max_width_));
      if (hole_height > height || hole_width > width)
        throw core::DataError(fmt::format("CoarseDropout: a {}x{} hole does not fit the {}x{} image",
                                          hole_height, hole_width, height, width));
      const auto y1 = static_cast<int>(rng.randint(0, height - hole_height));
      const auto x1 = static_cast<int>(rng.randint(0, width - hole_width));
      holes.emplace_back(x1, y1, hole_width, hole_height);
    }
    t.image = fn::coarse_dropout(t.image, holes, fill_value_);
  }

 private:
  int max_holes_, max_height_, max_width_, min_holes_, min_height_, min_width_;
  double fill_value_;
};

// Reads a per-channel value list for a one-channel image: one number.
double single_channel_value(OpParams& params, const char* key, std::vector<double> fallback) {
  const std::vector<double> values = params.numbers(key, std::move(fallback));
  if (values.size() != 1)
    params.fail(key, fmt::format(
        "{} values given, but images are one grey channel when augmented; give one value "
        "(per-channel statistics for 3-channel encoders go in data.mean / data.std)",
        values.size()));
  return values[0];
}

class Normalize : public Transform {
 public:
  explicit Normalize(OpParams& params)
      : Transform("Normalize", read_probability(params, 1.0)),
        mean_(single_channel_value(params, "mean", {0.485, 0.456, 0.406})),
        std_(single_channel_value(params, "std", {0.229, 0.224, 0.225})),
        max_pixel_value_(params.number("max_pixel_value", 255.0, positive())) {
    if (!(std_ > 0.0)) params.fail("std", "must be > 0");
  }

 protected:
  void apply(Target& t, core::Rng&) const override {
    t.image = fn::normalize(t.image, mean_, std_, max_pixel_value_);
  }

 private:
  double mean_, std_, max_pixel_value_;
};

class ToFloat : public Transform {
 public:
  explicit ToFloat(OpParams& params)
      : Transform("ToFloat", read_probability(params, 1.0)), max_value_(params.optional_number("max_value")) {
    if (max_value_ && !(*max_value_ > 0.0)) params.fail("max_value", "must be > 0");
  }

 protected:
  void apply(Target& t, core::Rng&) const override {
    // Without max_value, the largest value of the image's type: 255 for 8-bit, 1 for float.
    const double max_value = max_value_.value_or(t.image.depth() == CV_8U ? 255.0 : 1.0);
    t.image = fn::to_float(t.image, max_value);
  }

 private:
  std::optional<double> max_value_;
};

}  // namespace

void register_pixel_ops(core::Registry<OpFactory>& registry) {
  using Kind = BrightnessContrast::Kind;
  registry.add("RandomBrightnessContrast", [](OpParams& p) {
    return std::make_shared<BrightnessContrast>("RandomBrightnessContrast", Kind::kBoth, p);
  });
  registry.add("RandomBrightness", [](OpParams& p) {
    return std::make_shared<BrightnessContrast>("RandomBrightness", Kind::kBrightness, p);
  });
  registry.add("RandomContrast", [](OpParams& p) {
    return std::make_shared<BrightnessContrast>("RandomContrast", Kind::kContrast, p);
  });
  registry.add("RandomGamma", [](OpParams& p) { return std::make_shared<RandomGamma>(p); });
  registry.add("CLAHE", [](OpParams& p) { return std::make_shared<Clahe>(p); });
  registry.add("GaussNoise", [](OpParams& p) { return std::make_shared<GaussNoise>(p); });
  registry.add("Blur", [](OpParams& p) { return std::make_shared<Blur>(p); });
  registry.add("CoarseDropout", [](OpParams& p) { return std::make_shared<CoarseDropout>(p); });
  registry.add("Normalize", [](OpParams& p) { return std::make_shared<Normalize>(p); });
  registry.add("ToFloat", [](OpParams& p) { return std::make_shared<ToFloat>(p); });
}

}  // namespace pneumo::augment
