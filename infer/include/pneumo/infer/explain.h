// Explanations: where in the image the model looked when it answered. Grad-CAM (Selvaraju et
// al., 2017) and Grad-CAM++ (Chattopadhay et al., 2018) of the image-level answer on one encoder
// stage, for predict --explain, the web page and the REST answer (?explain=true).
//
// Per member that is a network (an exported TorchScript file has no stages to look into and is
// left out, with a notice): the gradient of its target with respect to the stage's feature map
// A (channels k) weighs the channels,
//   Grad-CAM    w_k = mean over positions of dT/dA_k
//   Grad-CAM++  w_k = sum over positions of a_k * relu(dT/dA_k), a_k = g^2 / (2 g^2 + sum(A_k) g^3)
// and the map is relu(sum_k w_k A_k), scaled to its maximum, resized to the image. The members'
// maps are averaged with their weights and scaled to a maximum of 1 again.
// The target T: the pneumothorax logit (classifier, class table's Pneumothorax, or the
// segmenter's auxiliary head); for a segmenter without one, the sum of the mask logits over the
// pixels it calls positive (all pixels when it calls none), as Seg-Grad-CAM does.
// Test-time flips are not explained (the map is the unflipped image's).
#pragma once

#include <string>

#include <opencv2/core/mat.hpp>

namespace pneumo::infer {

struct ExplainOptions {
  std::string method = "gradcam";  // or "gradcam++"
  int stage = 0;                   // encoder stage 1..5 (1/2^stage of the input); 0: each encoder's deepest
};

// Throws UsageError for an unknown method or a stage outside 0..5.
void check_explain_options(const ExplainOptions& options);

// The X-ray (CV_8UC1) in colour with the map (CV_32FC1, 0..1, same size) blended in as a heat
// map where it exceeds 0.05.
cv::Mat draw_explanation(const cv::Mat& image, const cv::Mat& map);

}  // namespace pneumo::infer
