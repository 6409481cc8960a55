// torchvision's ResNet as segmentation_models_pytorch's encoder: names conv1, bn1,
// layer1..layer4 (fc and avgpool removed); stages input, conv1-bn1-relu, maxpool+layer1,
// layer2, layer3, layer4.
#include "encoders.h"
#include "layers.h"

namespace pneumo::models {

namespace {

namespace nn = torch::nn;

class BasicBlockImpl : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 1;

  BasicBlockImpl(int64_t in, int64_t planes, int64_t stride) {
    conv1_ = register_module("conv1", conv(in, planes, 3, stride, 1));
    bn1_ = register_module("bn1", batch_norm(planes));
    conv2_ = register_module("conv2", conv(planes, planes, 3, 1, 1));
    bn2_ = register_module("bn2", batch_norm(planes));
    if (stride != 1 || in != planes)
      downsample_ = register_module("downsample", nn::Sequential(conv(in, planes, 1, stride), batch_norm(planes)));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor out = torch::relu(bn1_(conv1_(x)));
    out = bn2_(conv2_(out));
    return torch::relu(out + (downsample_ ? downsample_->forward(x) : x));
  }

 private:
  nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
  nn::Sequential downsample_{nullptr};
};
TORCH_MODULE(BasicBlock);

class BottleneckImpl : public nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;

  BottleneckImpl(int64_t in, int64_t planes, int64_t stride) {
    conv1_ = register_module("conv1", conv(in, planes, 1));
    bn1_ = register_module("bn1", batch_norm(planes));
    conv2_ = register_module("conv2", conv(planes, planes, 3, stride, 1));
    bn2_ = register_module("bn2", batch_norm(planes));
    conv3_ = register_module("conv3", conv(planes, planes * kExpansion, 1));
    bn3_ = register_module("bn3", batch_norm(planes * kExpansion));
    if (stride != 1 || in != planes * kExpansion)
      downsample_ = register_module(
          "downsample", nn::Sequential(conv(in, planes * kExpansion, 1, stride), batch_norm(planes * kExpansion)));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor out = torch::relu(bn1_(conv1_(x)));
    out = torch::relu(bn2_(conv2_(out)));
    out = bn3_(conv3_(out));
    return torch::relu(out + (downsample_ ? downsample_->forward(x) : x));
  }

 private:
  nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  BatchNorm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr};
  nn::Sequential downsample_{nullptr};
};
TORCH_MODULE(Bottleneck);

class ResNetEncoder : public Encoder {
 public:
  ResNetEncoder(ResNetKind kind, int in_channels, int depth)
      : Encoder(kind == ResNetKind::kResNet50 ? std::vector<int64_t>{in_channels, 64, 256, 512, 1024, 2048}
                                              : std::vector<int64_t>{in_channels, 64, 64, 128, 256, 512},
                depth),
        in_channels_(in_channels) {
    const std::vector<int64_t> blocks =
        kind == ResNetKind::kResNet18 ? std::vector<int64_t>{2, 2, 2, 2} : std::vector<int64_t>{3, 4, 6, 3};
    conv1_ = register_module("conv1", conv(in_channels, 64, 7, 2, 3));
    bn1_ = register_module("bn1", batch_norm(64));
    int64_t in = 64;
    const int64_t planes[4] = {64, 128, 256, 512};
    for (int i = 0; i < 4; ++i) {
      nn::Sequential layer;
      for (int64_t b = 0; b < blocks[i]; ++b) {
        const int64_t stride = (i > 0 && b == 0) ? 2 : 1;
        if (kind == ResNetKind::kResNet50) {
          layer->push_back(Bottleneck(in, planes[i], stride));
          in = planes[i] * BottleneckImpl::kExpansion;
        } else {
          layer->push_back(BasicBlock(in, planes[i], stride));
          in = planes[i];
        }
      }
      layers_.push_back(register_module("layer" + std::to_string(i + 1), layer));
    }
  }

  std::vector<torch::Tensor> compute_features(const torch::Tensor& x) override {
    check_input(x, in_channels_);
    std::vector<torch::Tensor> features = {x};
    torch::Tensor y = x;
    for (int stage = 1; stage <= depth(); ++stage) {
      if (stage == 1) y = torch::relu(bn1_(conv1_(y)));
      if (stage == 2) y = layers_[0]->forward(torch::max_pool2d(y, 3, 2, 1));
      if (stage >= 3) y = layers_[stage - 2]->forward(y);
      features.push_back(y);
    }
    return features;
  }

 private:
  int in_channels_;
  nn::Conv2d conv1_{nullptr};
  BatchNorm2d bn1_{nullptr};
  std::vector<nn::Sequential> layers_;
};

}  // namespace

std::shared_ptr<Encoder> make_resnet(ResNetKind kind, int in_channels, int depth) {
  return std::make_shared<ResNetEncoder>(kind, in_channels, depth);
}

}  // namespace pneumo::models
