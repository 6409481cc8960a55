// segmentation_models_pytorch's decoder pieces, with its module names.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace pneumo::models {

// Conv2dReLU: Sequential(conv 3x3, BatchNorm2d or Identity, ReLU); the conv has a bias only
// without batch norm.
torch::nn::Sequential conv_relu(int64_t in, int64_t out, bool batch_norm, int64_t kernel = 3,
                                int64_t padding = 1);

// Concurrent spatial and channel squeeze & excitation (Roy et al. 2018), smp's SCSEModule:
// x * cSE(x) + x * sSE(x).
class SCSEImpl : public torch::nn::Module {
 public:
  SCSEImpl(int64_t channels, int64_t reduction = 16);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Sequential cse_{nullptr}, sse_{nullptr};
};
TORCH_MODULE(SCSE);

// smp's Attention wrapper: holds `attention` (SCSE) or nothing.
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const std::string& type, int64_t channels);
  torch::Tensor forward(const torch::Tensor& x) { return scse_ ? scse_(x) : x; }

 private:
  SCSE scse_{nullptr};
};
TORCH_MODULE(Attention);

// How a decoder block doubles the resolution.
enum class Upsampling { kNearest, kBilinear, kTransposed };
Upsampling parse_upsampling(const std::string& name);

// smp's DecoderBlock: upsample x2, concatenate the skip, attention1, conv1, conv2, attention2.
// Transposed upsampling adds a learned 2x2 stride-2 `up` convolution (no smp equivalent).
class DecoderBlockImpl : public torch::nn::Module {
 public:
  DecoderBlockImpl(int64_t in, int64_t skip, int64_t out, bool batch_norm, const std::string& attention,
                   Upsampling upsampling);
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& skip = {});

 private:
  Upsampling upsampling_;
  torch::nn::ConvTranspose2d up_{nullptr};
  torch::nn::Sequential conv1_{nullptr}, conv2_{nullptr};
  Attention attention1_{nullptr}, attention2_{nullptr};
};
TORCH_MODULE(DecoderBlock);

// What U-Net and UNet++ share, as segmentation_models_pytorch builds it: the encoder's channels
// without the first map, deepest first; plain `decoder` and `decoder.blocks` containers (they
// only give the blocks smp's names); and, for VGG encoders, smp's two-conv `decoder.center`.
// Checks that decoder_channels has one entry per encoder stage.
struct SmpDecoderScaffold {
  std::vector<int64_t> encoder_channels;  // deepest first
  std::shared_ptr<torch::nn::Module> blocks;
  std::vector<torch::nn::Sequential> center;
};
SmpDecoderScaffold smp_decoder_scaffold(torch::nn::Module& net, const std::vector<int64_t>& encoder_out_channels,
                                        const std::string& encoder_name, const std::vector<int64_t>& decoder_channels,
                                        bool batch_norm);

// smp's ClassificationHead: Sequential(pool, flatten, dropout, linear); `linear` is index 3.
torch::nn::Sequential classification_head(int64_t in, int64_t classes, double dropout = 0.0);

}  // namespace pneumo::models
