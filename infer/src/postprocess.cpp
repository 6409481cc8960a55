#include "pneumo/infer/postprocess.h"

#include <opencv2/imgproc.hpp>

#include "pneumo/core/config_node.h"
#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"

namespace pneumo::infer {

cv::Mat postprocess(const cv::Mat& probability, const PostprocessSection& options, std::optional<double> gate) {
  if (probability.type() != CV_32FC1)
    throw core::Error("postprocess: expected a CV_32FC1 probability map");
  cv::Mat mask = cv::Mat::zeros(probability.size(), CV_8UC1);
  if (gate && *gate < options.classifier_threshold) return mask;
  if (options.min_area > 0 && cv::countNonZero(probability > options.top_threshold) < options.min_area) return mask;
  mask = probability > options.threshold;  // 255 where true
  if (options.min_component_area > 0) {
    cv::Mat labels, stats, centroids;
    const int count = cv::connectedComponentsWithStats(mask, labels, stats, centroids, 8, CV_32S);
    for (int c = 1; c < count; ++c)
      if (stats.at<int>(c, cv::CC_STAT_AREA) < options.min_component_area) mask.setTo(0, labels == c);
  }
  return mask;
}

PostprocessSection read_postprocess(const std::filesystem::path& file) {
  const core::ConfigNode root = core::load_yaml_file(file);
  const core::ConfigNode* node = root.find("postprocess");
  if (node == nullptr)
    throw core::ConfigError(file.string() + ": no postprocess: section; expected the thresholds pneumo tune writes");
  return core::read_section<PostprocessSection>(*node, "postprocess");
}

void write_postprocess(const std::filesystem::path& file, const PostprocessSection& options) {
  core::ConfigNode root = core::ConfigNode::map();
  root.set("postprocess", core::write_section(options));
  core::write_file_atomic(file, core::to_yaml(root, true));
}

}  // namespace pneumo::infer
