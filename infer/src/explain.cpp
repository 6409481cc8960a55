#include "pneumo/infer/explain.h"

#include <fmt/format.h>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include "grad_cam.h"
#include "pneumo/core/error.h"

namespace pneumo::infer {

void check_explain_options(const ExplainOptions& options) {
  if (options.method != "gradcam" && options.method != "gradcam++")
    throw core::UsageError(fmt::format("explanation method '{}': expected gradcam or gradcam++", options.method));
  if (options.stage < 0 || options.stage > 5)
    throw core::UsageError(fmt::format("explanation stage {}: expected 1..5 (or 0: the deepest)", options.stage));
}

torch::Tensor class_activation_map(const torch::Tensor& features, const torch::Tensor& gradients,
                                   const std::string& method) {
  const torch::Tensor a = features.to(torch::kFloat64), g = gradients.to(torch::kFloat64);
  torch::Tensor weights;
  if (method == "gradcam") {
    weights = g.mean({2, 3}, /*keepdim=*/true);
  } else {
    const torch::Tensor g2 = g * g, g3 = g2 * g;
    const torch::Tensor denominator = 2 * g2 + a.sum({2, 3}, true) * g3;
    const torch::Tensor alpha =
        torch::where(denominator != 0, g2 / torch::where(denominator != 0, denominator, torch::ones_like(denominator)),
                     torch::zeros_like(g2));
    weights = (alpha * torch::relu(g)).sum({2, 3}, true);
  }
  return torch::relu((weights * a).sum(1));
}

cv::Mat draw_explanation(const cv::Mat& image, const cv::Mat& map) {
  if (image.type() != CV_8UC1 || map.type() != CV_32FC1 || image.size() != map.size())
    throw core::Error("draw_explanation: expected a CV_8UC1 image and a CV_32FC1 map of its size");
  cv::Mat out, m8, heat;
  cv::cvtColor(image, out, cv::COLOR_GRAY2BGR);
  map.convertTo(m8, CV_8U, 255.0);
  cv::applyColorMap(m8, heat, cv::COLORMAP_JET);
  for (int y = 0; y < out.rows; ++y) {
    cv::Vec3b* o = out.ptr<cv::Vec3b>(y);
    const cv::Vec3b* h = heat.ptr<cv::Vec3b>(y);
    const float* p = map.ptr<float>(y);
    for (int x = 0; x < out.cols; ++x) {
      if (p[x] <= 0.05f) continue;
      const float alpha = 0.5f * std::min(1.0f, p[x]);
      for (int c = 0; c < 3; ++c) o[x][c] = cv::saturate_cast<uint8_t>((1 - alpha) * o[x][c] + alpha * h[x][c]);
    }
  }
  return out;
}

}  // namespace pneumo::infer
