// Turning a probability map into the answer: the SIIM winners' triplet rule, removal of small
// components and the classifier gate, at the image's own resolution.
//
// An image is called positive when its gate probability (classifier or auxiliary head, when
// the ensemble has one) reaches `classifier_threshold` and at least `min_area` pixels exceed
// `top_threshold`; its mask is then every pixel above `threshold` (the bottom threshold), less
// connected components smaller than `min_component_area`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>

#include <opencv2/core/mat.hpp>

#include "pneumo/core/config_schema.h"

namespace pneumo::infer {

struct PostprocessSection {
  double threshold = 0.5;
  double top_threshold = 0.5;
  int64_t min_area = 0;
  int64_t min_component_area = 0;
  double classifier_threshold = 0.5;

  template <class V>
  void visit(V& v) {
    v("threshold", threshold, "bottom threshold: pixels above it form the mask", core::in_range(0.0, 1.0));
    v("top_threshold", top_threshold, "pixels above it count towards min_area", core::in_range(0.0, 1.0));
    v("min_area", min_area, "pixels above top_threshold needed to call an image positive (native resolution)",
      core::at_least<int64_t>(0));
    v("min_component_area", min_component_area, "drop connected mask components smaller than this (pixels)",
      core::at_least<int64_t>(0));
    v("classifier_threshold", classifier_threshold,
      "image probability (classifier or auxiliary head) below which the mask is emptied", core::in_range(0.0, 1.0));
  }
};

// `probability`: CV_32FC1 in 0..1. `gate`: the image-level probability, when there is one.
// Returns a CV_8UC1 mask of the same size, 255 inside.
cv::Mat postprocess(const cv::Mat& probability, const PostprocessSection& options, std::optional<double> gate);

// postprocess.yaml, the file `pneumo tune` writes next to the checkpoints and predict reads.
PostprocessSection read_postprocess(const std::filesystem::path& file);
void write_postprocess(const std::filesystem::path& file, const PostprocessSection& options);

}  // namespace pneumo::infer
