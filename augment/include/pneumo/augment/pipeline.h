// Augmentation pipelines: Albumentations 0.4.x transforms (names, parameters, defaults,
// probabilities and formulas) applied to an image and its mask together, configured in YAML
// with the structure of Albumentations' Compose:
//
//   - HorizontalFlip: {p: 0.5}
//   - OneOf:
//       p: 0.3
//       transforms: [RandomContrast, RandomGamma, {RandomBrightness: {limit: 0.1}}]
//   - ToFloat: {max_value: 255}
//
// Every random choice draws from the core::Rng it is given; the loader seeds one per sample
// from (seed, epoch, sample index), so results do not depend on thread count.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "pneumo/core/config_node.h"
#include "pneumo/core/random.h"

namespace pneumo::augment {

// What a transform changes: the image (CV_8UC1, or CV_32FC1 after ToFloat/Normalize) and its
// mask (CV_8UC1, may be empty). Spatial transforms move both; pixel transforms only the image.
struct Target {
  cv::Mat image;
  cv::Mat mask;
};

// Every op's `p` and `always_apply`.
struct Probability {
  double p = 1.0;
  bool always_apply = false;
};

class Transform {
 public:
  Transform(std::string name, Probability probability)
      : name_(std::move(name)), p_(probability.p), always_apply_(probability.always_apply) {}
  virtual ~Transform() = default;

  // Albumentations' __call__: applies when forced, when always_apply, or with probability p
  // (one uniform draw, made in every case but force).
  void operator()(Target& target, core::Rng& rng, bool force = false) const;

  const std::string& name() const { return name_; }
  double p() const { return p_; }

 protected:
  virtual void apply(Target& target, core::Rng& rng) const = 0;

 private:
  std::string name_;
  double p_;
  bool always_apply_;
};

using TransformPtr = std::shared_ptr<const Transform>;

class Pipeline {
 public:
  Pipeline() = default;  // empty: leaves samples unchanged

  // From a YAML list of ops (as above), or a string naming a YAML file holding such a list
  // (relative to the file the string came from). Null gives an empty pipeline. `path` names
  // the node in errors ("augment.train"). Throws ConfigError with file:line:column for an
  // unknown op or parameter (listing the valid ones) or an invalid value.
  static Pipeline from_config(const core::ConfigNode& node, const std::string& path);
  static Pipeline from_file(const std::filesystem::path& file);

  bool empty() const { return transforms_.empty(); }
  size_t size() const { return transforms_.size(); }

  // Applies every transform in order (each with its own probability). Throws DataError
  // naming the op when an image does not suit it (a crop larger than the image, CLAHE on
  // a float image).
  void apply(Target& target, core::Rng& rng) const;
  void apply(cv::Mat& image, cv::Mat& mask, core::Rng& rng) const;

 private:
  std::vector<TransformPtr> transforms_;
};

// When `node` names a pipeline file (a string), that file's list of ops (keeping its
// file:line:column locations); otherwise `node` itself. Experiments inline their pipeline files
// this way, so a resolved config (and a run's config.yaml) holds the ops actually used.
core::ConfigNode inline_pipeline_file(const core::ConfigNode& node);

// The op names a pipeline accepts, sorted.
std::vector<std::string> op_names();

}  // namespace pneumo::augment
