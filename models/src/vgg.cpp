// torchvision's VGG19 (with or without batch norm) as segmentation_models_pytorch's encoder:
// names features.N (classifier removed); stages split at the max-pools, so the first feature
// map is the full-resolution 64-channel one and the last is the fifth pool.
#include "encoders.h"
#include "layers.h"

namespace pneumo::models {

namespace {

namespace nn = torch::nn;

class VggEncoder : public Encoder {
 public:
  VggEncoder(bool batch_norm_layers, int in_channels, int depth)
      : Encoder({64, 128, 256, 512, 512, 512}, depth), in_channels_(in_channels) {
    const int kPool = 0;
    const std::vector<int> config = {64, 64, kPool, 128, 128, kPool, 256, 256, 256, 256, kPool,
                                     512, 512, 512, 512, kPool, 512, 512, 512, 512, kPool};
    features_ = register_module("features", nn::Sequential());
    int64_t in = in_channels;
    for (int v : config) {
      if (v == kPool) {
        stage_ends_.push_back(features_->size());
        add(nn::MaxPool2d(nn::MaxPool2dOptions(2).stride(2)));
        continue;
      }
      add(nn::Conv2d(nn::Conv2dOptions(in, v, 3).padding(1)));
      if (batch_norm_layers) add(batch_norm(v));
      add(nn::ReLU(nn::ReLUOptions(true)));
      in = v;
    }
  }

  std::vector<torch::Tensor> compute_features(const torch::Tensor& x) override {
    check_input(x, in_channels_);
    std::vector<torch::Tensor> features;
    torch::Tensor y = x;
    size_t layer = 0;
    // Stage 0 ends before the first pool; stage k (1..5) starts with pool k.
    for (int stage = 0; stage <= depth(); ++stage) {
      const size_t end = stage < 5 ? stage_ends_[stage] : features_->size();
      for (; layer < end; ++layer) y = layers_[layer].forward(y);
      features.push_back(y);
    }
    return features;
  }

 private:
  int in_channels_;
  template <class M>
  void add(M module) {
    features_->push_back(module);
    layers_.emplace_back(module);
  }

  nn::Sequential features_{nullptr};
  std::vector<nn::AnyModule> layers_;  // the same modules, for stage-wise forward
  std::vector<size_t> stage_ends_;  // index of each max-pool in features
};

}  // namespace

std::shared_ptr<Encoder> make_vgg19(bool batch_norm_layers, int in_channels, int depth) {
  return std::make_shared<VggEncoder>(batch_norm_layers, in_channels, depth);
}

}  // namespace pneumo::models
