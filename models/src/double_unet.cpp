#include "pneumo/models/double_unet.h"

#include <fmt/format.h>

#include "blocks.h"
#include "layers.h"
#include "pneumo/core/error.h"

namespace pneumo::models {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

namespace {

torch::Tensor upsample2(const torch::Tensor& x) {
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .scale_factor(std::vector<double>{2, 2})
                               .mode(torch::kBilinear)
                               .align_corners(false));
}

// squeeze_excite_block (ratio 8, no biases): x * sigmoid(fc2(relu(fc1(mean(x)))))
class SqueezeExciteImpl : public nn::Module {
 public:
  explicit SqueezeExciteImpl(int64_t channels) {
    fc1_ = register_module("fc1", nn::Linear(nn::LinearOptions(channels, std::max<int64_t>(channels / 8, 1)).bias(false)));
    fc2_ = register_module("fc2", nn::Linear(nn::LinearOptions(std::max<int64_t>(channels / 8, 1), channels).bias(false)));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const torch::Tensor s = torch::sigmoid(fc2_(torch::relu(fc1_(x.mean({2, 3})))));
    return x * s.unsqueeze(-1).unsqueeze(-1);
  }

 private:
  nn::Linear fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(SqueezeExcite);

// conv_block: (conv 3x3, BN, ReLU) x 2, then squeeze-excite.
class ConvBlockImpl : public nn::Module {
 public:
  ConvBlockImpl(int64_t in, int64_t out) {
    conv1_ = register_module("conv1", conv(in, out, 3, 1, 1, true));
    bn1_ = register_module("bn1", batch_norm(out));
    conv2_ = register_module("conv2", conv(out, out, 3, 1, 1, true));
    bn2_ = register_module("bn2", batch_norm(out));
    se_ = register_module("se", SqueezeExcite(out));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return se_(torch::relu(bn2_(conv2_(torch::relu(bn1_(conv1_(x)))))));
  }

 private:
  nn::Conv2d conv1_{nullptr}, conv2_{nullptr};
  BatchNorm2d bn1_{nullptr}, bn2_{nullptr};
  SqueezeExcite se_{nullptr};
};
TORCH_MODULE(ConvBlock);

// Atrous spatial pyramid pooling: image pooling, 1x1, and 3x3 at dilations 6, 12, 18, each with
// BN and ReLU, concatenated and projected by a 1x1.
class AsppImpl : public nn::Module {
 public:
  AsppImpl(int64_t in, int64_t filters) {
    pool_conv_ = register_module("pool_conv", conv(in, filters, 1, 1, 0, true));
    pool_bn_ = register_module("pool_bn", batch_norm(filters));
    const int64_t dilations[4] = {1, 6, 12, 18};
    for (int i = 0; i < 4; ++i) {
      const int64_t k = i == 0 ? 1 : 3;
      branches_.push_back(register_module(
          "branch" + std::to_string(i + 1),
          nn::Conv2d(nn::Conv2dOptions(in, filters, k).dilation(dilations[i]).padding(i == 0 ? 0 : dilations[i]).bias(false))));
      bns_.push_back(register_module("bn" + std::to_string(i + 1), batch_norm(filters)));
    }
    project_ = register_module("project", conv(5 * filters, filters, 1));
    project_bn_ = register_module("project_bn", batch_norm(filters));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    std::vector<torch::Tensor> parts;
    torch::Tensor pooled = torch::relu(pool_bn_(pool_conv_(x.mean({2, 3}, true))));
    parts.push_back(pooled.expand({-1, -1, x.size(2), x.size(3)}));
    for (size_t i = 0; i < branches_.size(); ++i) parts.push_back(torch::relu(bns_[i](branches_[i](x))));
    return torch::relu(project_bn_(project_(torch::cat(parts, 1))));
  }

 private:
  nn::Conv2d pool_conv_{nullptr}, project_{nullptr};
  BatchNorm2d pool_bn_{nullptr}, project_bn_{nullptr};
  std::vector<nn::Conv2d> branches_;
  std::vector<BatchNorm2d> bns_;
};
TORCH_MODULE(Aspp);

constexpr int64_t kAsppFilters = 64;
const int64_t kDecoderFilters[4] = {256, 128, 64, 32};
const int64_t kEncoder2Filters[4] = {32, 64, 128, 256};

std::shared_ptr<nn::Module> blocks_module(const std::vector<std::pair<int64_t, int64_t>>& in_out) {
  auto m = std::make_shared<nn::Module>();
  for (size_t i = 0; i < in_out.size(); ++i)
    m->register_module(std::to_string(i), ConvBlock(in_out[i].first, in_out[i].second));
  return m;
}

torch::Tensor block(nn::Module& blocks, size_t i, const torch::Tensor& x) {
  return std::dynamic_pointer_cast<ConvBlockImpl>(blocks.named_children()[std::to_string(i)])->forward(x);
}

}  // namespace

DoubleUNetImpl::DoubleUNetImpl(const DoubleUNetOptions& options) {
  if (options.encoder != "vgg19" && options.encoder != "vgg19_bn")
    throw core::ConfigError(fmt::format("double_unet encoder '{}': expected vgg19 or vgg19_bn", options.encoder));
  // VGG19 stages 0..4: block1_conv2, block2_conv2, block3_conv4, block4_conv4 (skips) and
  // block5_conv4 (the encoder's output), at 1, 1/2, 1/4, 1/8 and 1/16 of the input.
  encoder1_ = register_module("encoder1", make_encoder({options.encoder, options.in_channels, 4}));
  const auto& c = encoder1_->out_channels();  // 64, 128, 256, 512, 512
  aspp1_ = register_module("aspp1", Aspp(c[4], kAsppFilters).ptr());
  std::vector<std::pair<int64_t, int64_t>> d1, e2, d2;
  int64_t in = kAsppFilters;
  for (int i = 0; i < 4; ++i) {
    d1.emplace_back(in + c[3 - i], kDecoderFilters[i]);
    in = kDecoderFilters[i];
  }
  decoder1_ = register_module("decoder1", blocks_module(d1));
  output1_ = register_module("output1", conv(kDecoderFilters[3], options.classes, 1, 1, 0, true));
  in = options.in_channels;
  for (int i = 0; i < 4; ++i) {
    e2.emplace_back(in, kEncoder2Filters[i]);
    in = kEncoder2Filters[i];
  }
  encoder2_ = register_module("encoder2", blocks_module(e2));
  aspp2_ = register_module("aspp2", Aspp(kEncoder2Filters[3], kAsppFilters).ptr());
  in = kAsppFilters;
  for (int i = 0; i < 4; ++i) {
    d2.emplace_back(in + c[3 - i] + kEncoder2Filters[3 - i], kDecoderFilters[i]);
    in = kDecoderFilters[i];
  }
  decoder2_ = register_module("decoder2", blocks_module(d2));
  output2_ = register_module("output2", conv(kDecoderFilters[3], options.classes, 1, 1, 0, true));
  if (options.aux_head)
    classification_head_ = register_module("classification_head", classification_head(c[4], 1));
}

std::vector<torch::Tensor> DoubleUNetImpl::encoder_parameters() {
  std::vector<torch::Tensor> out = encoder1_->parameters();
  for (const auto& p : encoder2_->parameters()) out.push_back(p);
  return out;
}

ModelOutput DoubleUNetImpl::forward(const torch::Tensor& x) {
  if (x.dim() == 4 && (x.size(2) % 16 || x.size(3) % 16))
    throw core::ModelError(fmt::format("input of shape {}; expected H and W divisible by 16", shape_string(x)));
  const std::vector<torch::Tensor> f = encoder1_->forward_features(x);
  ModelOutput out;
  if (classification_head_) out.logits = classification_head_->forward(f[4]);
  auto& aspp1 = *std::dynamic_pointer_cast<AsppImpl>(aspp1_);
  auto& aspp2 = *std::dynamic_pointer_cast<AsppImpl>(aspp2_);

  torch::Tensor y = aspp1.forward(f[4]);
  for (size_t i = 0; i < 4; ++i) y = block(*decoder1_, i, torch::cat({upsample2(y), f[3 - i]}, 1));
  const torch::Tensor mask1 = output1_(y);

  y = x * torch::sigmoid(mask1.narrow(1, 0, 1));
  std::vector<torch::Tensor> skips2;
  for (size_t i = 0; i < 4; ++i) {
    y = block(*encoder2_, i, y);
    skips2.push_back(y);
    y = torch::max_pool2d(y, 2, 2);
  }
  y = aspp2.forward(y);
  for (size_t i = 0; i < 4; ++i) y = block(*decoder2_, i, torch::cat({upsample2(y), f[3 - i], skips2[3 - i]}, 1));
  out.masks = output2_(y);
  out.extra_masks.push_back(mask1);
  return out;
}

}  // namespace pneumo::models
