// Encoders: torchvision architectures with torchvision's state_dict names, cut into stages as
// segmentation_models_pytorch does, so weights move between pneumo and Python unchanged.
//
// forward_features(x) returns depth + 1 feature maps, finest first: the input itself (or, for
// VGG, the full-resolution features), then one map per halving of resolution.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>

namespace pneumo::models {

struct EncoderOptions {
  std::string name = "resnet34";  // see encoder_names()
  int in_channels = 3;            // 1 for grey X-rays (3-channel weights are summed on load)
  int depth = 5;                  // stages used, 1..5
};

class Encoder : public torch::nn::Module {
 public:
  // compute_features(x), each stage's map offered to a FeatureTap alive on this thread.
  std::vector<torch::Tensor> forward_features(const torch::Tensor& x);
  // Channels of each feature map forward_features returns (depth + 1 entries).
  const std::vector<int64_t>& out_channels() const { return out_channels_; }
  int depth() const { return depth_; }

 protected:
  Encoder(std::vector<int64_t> all_channels, int depth);
  // The depth + 1 feature maps (see the top of this file).
  virtual std::vector<torch::Tensor> compute_features(const torch::Tensor& x) = 0;
  // Checks the input's channels and size (divisible by 2^depth), naming what was expected.
  void check_input(const torch::Tensor& x, int in_channels) const;

 private:
  std::vector<int64_t> out_channels_;
  int depth_;
};

// resnet18, resnet34, resnet50, vgg19, vgg19_bn, densenet121, efficientnet-b0..b4. Throws ConfigError for an unknown
// name (with the known ones), a depth outside 1..5 or in_channels other than 1 or 3.
std::shared_ptr<Encoder> make_encoder(const EncoderOptions& options);
std::vector<std::string> encoder_names();

}  // namespace pneumo::models
