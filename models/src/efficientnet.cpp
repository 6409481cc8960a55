// torchvision's EfficientNet-B0..B4 (`features.N` names; the final 1x1 head convolution and the
// classifier are left out, as segmentation encoders do) cut into stages at each halving:
// input, features 0-1 (1/2), 2 (1/4), 3 (1/8), 4-5 (1/16), 6-7 (1/32).
#include <cmath>

#include "encoders.h"
#include "layers.h"

namespace pneumo::models {

namespace {

namespace nn = torch::nn;

// torchvision's _make_divisible(v, 8).
int64_t make_divisible(double v, int64_t divisor = 8) {
  int64_t rounded = std::max<int64_t>(divisor, static_cast<int64_t>(v + divisor / 2.0) / divisor * divisor);
  if (rounded < 0.9 * v) rounded += divisor;
  return rounded;
}

// Conv2dNormActivation: Sequential(conv without bias, BatchNorm2d[, SiLU]); a Sequential with
// a plain forward, so that it can sit inside another Sequential.
class ConvNormImpl : public nn::SequentialImpl {
 public:
  using nn::SequentialImpl::SequentialImpl;
  torch::Tensor forward(torch::Tensor x) { return nn::SequentialImpl::forward(std::move(x)); }
};
TORCH_MODULE(ConvNorm);

ConvNorm conv_norm(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t groups = 1,
                   bool activation = true) {
  ConvNorm seq(nn::Conv2d(nn::Conv2dOptions(in, out, kernel)
                                    .stride(stride)
                                    .padding((kernel - 1) / 2)
                                    .groups(groups)
                                    .bias(false)),
                     batch_norm(out));
  if (activation) seq->push_back(nn::SiLU());
  return seq;
}

class SqueezeExcitationImpl : public nn::Module {
 public:
  SqueezeExcitationImpl(int64_t channels, int64_t squeezed) {
    fc1_ = register_module("fc1", conv(channels, squeezed, 1, 1, 0, true));
    fc2_ = register_module("fc2", conv(squeezed, channels, 1, 1, 0, true));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const torch::Tensor scale = torch::sigmoid(fc2_(torch::silu(fc1_(torch::adaptive_avg_pool2d(x, {1, 1})))));
    return x * scale;
  }

 private:
  nn::Conv2d fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(SqueezeExcitation);

// MBConv: [expand 1x1] -> depthwise kxk -> squeeze-excite -> project 1x1, with a residual
// (and stochastic depth while training) when shape allows.
class MBConvImpl : public nn::Module {
 public:
  MBConvImpl(int64_t in, int64_t out, int64_t expand_ratio, int64_t kernel, int64_t stride, double drop_prob)
      : residual_(stride == 1 && in == out), drop_prob_(drop_prob) {
    const int64_t expanded = make_divisible(static_cast<double>(in * expand_ratio));
    block_ = register_module("block", nn::Sequential());
    if (expanded != in) add(conv_norm(in, expanded, 1));
    add(conv_norm(expanded, expanded, kernel, stride, expanded));
    add(SqueezeExcitation(expanded, std::max<int64_t>(1, in / 4)));
    add(conv_norm(expanded, out, 1, 1, 1, false));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor y = x;
    for (auto& layer : layers_) y = layer.forward(y);
    if (!residual_) return y;
    if (is_training() && drop_prob_ > 0.0) {  // torchvision's StochasticDepth, mode "row"
      const double survival = 1.0 - drop_prob_;
      torch::Tensor keep = torch::empty({y.size(0), 1, 1, 1}, y.options()).bernoulli_(survival);
      y = y * keep / survival;
    }
    return y + x;
  }

 private:
  template <class M>
  void add(M module) {
    block_->push_back(module);
    layers_.emplace_back(module);
  }

  bool residual_;
  double drop_prob_;
  nn::Sequential block_{nullptr};
  std::vector<nn::AnyModule> layers_;
};
TORCH_MODULE(MBConv);

struct Variant {
  double width, depth;
};

class EfficientNetEncoder : public Encoder {
 public:
  EfficientNetEncoder(Variant v, int in_channels, int depth)
      : Encoder(channels(v, in_channels), depth), in_channels_(in_channels) {
    struct Stage {
      int64_t expand, kernel, stride, in, out, layers;
    };
    const Stage stages[7] = {{1, 3, 1, 32, 16, 1},  {6, 3, 2, 16, 24, 2},  {6, 5, 2, 24, 40, 2},
                             {6, 3, 2, 40, 80, 3},  {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4},
                             {6, 3, 1, 192, 320, 1}};
    int64_t total_blocks = 0;
    for (const Stage& s : stages) total_blocks += static_cast<int64_t>(std::ceil(s.layers * v.depth));
    features_ = register_module("features", std::make_shared<nn::Module>());
    stem_ = features_->register_module("0", conv_norm(in_channels, make_divisible(32 * v.width), 3, 2));
    int64_t block_id = 0;
    for (int i = 0; i < 7; ++i) {
      const Stage& s = stages[i];
      nn::Sequential stage;
      const int64_t layers = static_cast<int64_t>(std::ceil(s.layers * v.depth));
      const int64_t out = make_divisible(s.out * v.width);
      int64_t in = make_divisible(s.in * v.width);
      for (int64_t b = 0; b < layers; ++b) {
        const double drop = 0.2 * static_cast<double>(block_id++) / static_cast<double>(total_blocks);
        stage->push_back(MBConv(in, out, s.expand, s.kernel, b == 0 ? s.stride : 1, drop));
        in = out;
      }
      stages_.push_back(features_->register_module(std::to_string(i + 1), stage));
    }
  }

  std::vector<torch::Tensor> compute_features(const torch::Tensor& x) override {
    check_input(x, in_channels_);
    std::vector<torch::Tensor> features = {x};
    // Stages of features: {0, 1}, {2}, {3}, {4, 5}, {6, 7} (index 0 is the stem).
    const std::vector<std::vector<int>> groups = {{0, 1}, {2}, {3}, {4, 5}, {6, 7}};
    torch::Tensor y = x;
    for (int s = 0; s < depth(); ++s) {
      for (int f : groups[s]) y = f == 0 ? stem_->forward(y) : stages_[f - 1]->forward(y);
      features.push_back(y);
    }
    return features;
  }

 private:
  static std::vector<int64_t> channels(Variant v, int in_channels) {
    return {in_channels, make_divisible(16 * v.width), make_divisible(24 * v.width), make_divisible(40 * v.width),
            make_divisible(112 * v.width), make_divisible(320 * v.width)};
  }

  int in_channels_;
  std::shared_ptr<nn::Module> features_;
  ConvNorm stem_{nullptr};
  std::vector<nn::Sequential> stages_;
};

}  // namespace

std::shared_ptr<Encoder> make_efficientnet(int variant, int in_channels, int depth) {
  const Variant variants[5] = {{1.0, 1.0}, {1.0, 1.1}, {1.1, 1.2}, {1.2, 1.4}, {1.4, 1.8}};
  return std::make_shared<EfficientNetEncoder>(variants[variant], in_channels, depth);
}

}  // namespace pneumo::models
