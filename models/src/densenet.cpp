#include "densenet.h"

#include <string>

#include "encoders.h"
#include "layers.h"

namespace pneumo::models {

namespace {

namespace nn = torch::nn;

constexpr int64_t kGrowth = 32;
constexpr int64_t kBottleneck = 4;  // bn_size
const int64_t kBlockLayers[4] = {6, 12, 24, 16};

class DenseLayerImpl : public nn::Module {
 public:
  explicit DenseLayerImpl(int64_t in) {
    norm1_ = register_module("norm1", batch_norm(in));
    conv1_ = register_module("conv1", conv(in, kBottleneck * kGrowth, 1));
    norm2_ = register_module("norm2", batch_norm(kBottleneck * kGrowth));
    conv2_ = register_module("conv2", conv(kBottleneck * kGrowth, kGrowth, 3, 1, 1));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return conv2_(torch::relu(norm2_(conv1_(torch::relu(norm1_(x))))));
  }

 private:
  BatchNorm2d norm1_{nullptr}, norm2_{nullptr};
  nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
};
TORCH_MODULE(DenseLayer);

class DenseBlockImpl : public nn::Module {
 public:
  DenseBlockImpl(int64_t layers, int64_t in) {
    for (int64_t i = 0; i < layers; ++i)
      layers_.push_back(register_module("denselayer" + std::to_string(i + 1), DenseLayer(in + i * kGrowth)));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    std::vector<torch::Tensor> features = {x};
    for (auto& layer : layers_) features.push_back(layer(torch::cat(features, 1)));
    return torch::cat(features, 1);
  }

 private:
  std::vector<DenseLayer> layers_;
};
TORCH_MODULE(DenseBlock);

class TransitionImpl : public nn::Module {
 public:
  TransitionImpl(int64_t in, int64_t out) {
    norm_ = register_module("norm", batch_norm(in));
    conv_ = register_module("conv", conv(in, out, 1));
  }
  // (output, the activation after the ReLU)
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& x) {
    torch::Tensor skip = torch::relu(norm_(x));
    return {torch::avg_pool2d(conv_(skip), 2, 2), skip};
  }

 private:
  BatchNorm2d norm_{nullptr};
  nn::Conv2d conv_{nullptr};
};
TORCH_MODULE(Transition);

}  // namespace

DenseNet121FeaturesImpl::DenseNet121FeaturesImpl(int64_t in_channels) {
  conv0_ = register_module("conv0", conv(in_channels, 64, 7, 2, 3));
  norm0_ = register_module("norm0", batch_norm(64));
  int64_t channels = 64;
  for (int b = 0; b < 4; ++b) {
    blocks_.push_back(register_module("denseblock" + std::to_string(b + 1), DenseBlock(kBlockLayers[b], channels)));
    channels += kBlockLayers[b] * kGrowth;
    if (b < 3) {
      transitions_.push_back(register_module("transition" + std::to_string(b + 1), Transition(channels, channels / 2)));
      channels /= 2;
    }
  }
  norm5_ = register_module("norm5", batch_norm(channels));
}

std::pair<torch::Tensor, torch::Tensor> DenseNet121FeaturesImpl::stage(int index, torch::Tensor x) {
  if (index == 1) {
    x = torch::relu(norm0_(conv0_(x)));
    return {x, x};
  }
  if (index == 2) x = torch::max_pool2d(x, 3, 2, 1);
  x = std::static_pointer_cast<DenseBlockImpl>(blocks_[index - 2])->forward(x);
  if (index == 5) {
    x = norm5_(x);
    return {x, x};
  }
  return std::static_pointer_cast<TransitionImpl>(transitions_[index - 2])->forward(x);
}

torch::Tensor DenseNet121FeaturesImpl::forward(torch::Tensor x) {
  for (int s = 1; s <= 5; ++s) x = stage(s, x).first;
  return x;
}

namespace {

class DenseNetEncoder : public Encoder {
 public:
  DenseNetEncoder(int in_channels, int depth)
      : Encoder({in_channels, 64, 256, 512, 1024, 1024}, depth), in_channels_(in_channels) {
    features_ = register_module("features", DenseNet121Features(in_channels));
  }

  std::vector<torch::Tensor> compute_features(const torch::Tensor& x) override {
    check_input(x, in_channels_);
    std::vector<torch::Tensor> features = {x};
    torch::Tensor y = x;
    for (int s = 1; s <= depth(); ++s) {
      auto [out, skip] = features_->stage(s, y);
      features.push_back(skip);
      y = out;
    }
    return features;
  }

 private:
  int in_channels_;
  DenseNet121Features features_{nullptr};
};

}  // namespace

std::shared_ptr<Encoder> make_densenet121_encoder(int in_channels, int depth) {
  return std::make_shared<DenseNetEncoder>(in_channels, depth);
}

}  // namespace pneumo::models
