// What every network returns, so training and inference treat classifiers and segmenters
// alike, and what every network says about its encoder.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

namespace pneumo::models {

struct ModelOutput {
  torch::Tensor masks;                      // [N, classes, H, W] logits; undefined for classifiers
  std::vector<torch::Tensor> extra_masks;   // deep supervision / earlier stages, same shape
  torch::Tensor logits;                     // classifier logits, or a segmenter's auxiliary head
};

class Network : public torch::nn::Module {
 public:
  virtual ModelOutput forward(const torch::Tensor& x) = 0;
  virtual bool is_segmenter() const { return true; }

  // The pretrained encoder, the module `model.encoder.weights` loads into; null when the
  // network has none (the plain Attention U-Net).
  virtual std::shared_ptr<torch::nn::Module> encoder() = 0;
  // The parameters of the downsampling path, which train.optimizer's encoder_lr_multiplier
  // and freeze_encoder_epochs apply to: encoder()'s unless a network says otherwise.
  virtual std::vector<torch::Tensor> encoder_parameters();
  // Loads an encoder weights file (e.g. torchvision's ImageNet weights) into encoder(): every
  // encoder tensor must be present, a source's classifier head is ignored. Throws
  // CheckpointError naming the file when it does not fit, ConfigError when there is no encoder.
  virtual void load_encoder_weights(const std::string& file);
};

// The image-level pneumothorax logit [N] a network gives: a segmenter's auxiliary head, or
// the classifier's output (its one class, or class 7, Pneumothorax, of the 14 ChestX-ray14
// findings); undefined when the network has none.
torch::Tensor pneumothorax_logit(const ModelOutput& out, bool segmenter);

// Moves every 4-D parameter and buffer of `module` (convolution weights) to channels-last
// (NHWC) memory order (to_channels_last); the values are unchanged. Do it before building the
// optimiser.
void use_channels_last(torch::nn::Module& module);

// `x` (4-D) with NHWC strides; other tensors as they are. Unlike x.contiguous(ChannelsLast),
// also where a dimension of size 1 makes both orders contiguous (one-channel images, a stem's
// weights on one input channel): contiguous() keeps their NCHW strides, from which PyTorch
// infers NCHW, and the stem's convolution and max-pooling (20x slower there) then run in NCHW,
// and every later use of their output is converted.
torch::Tensor to_channels_last(const torch::Tensor& x);

}  // namespace pneumo::models
