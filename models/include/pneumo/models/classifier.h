// The CheXNet-style classifier: torchvision's DenseNet121 (`features.*`, `classifier.*`) with
// one pneumothorax logit or the 14 ChestX-ray14 labels (Pneumothorax is index 7), and global
// average pooling or average+max pooling concatenated.
#pragma once

#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include "pneumo/models/network.h"

namespace pneumo::models {

struct ClassifierOptions {
  int in_channels = 3;
  int64_t classes = 1;         // 1 (pneumothorax), 14 for the CheXNet head, or one per class of a table
  std::string pooling = "avg";  // avg | avgmax
};

// ChestX-ray14's label order, as CheXNet's head outputs them.
constexpr int kChexnetPneumothoraxIndex = 7;

class DenseNet121FeaturesImpl;

class ClassifierImpl : public Network {
 public:
  explicit ClassifierImpl(const ClassifierOptions& options);
  // Logits [N, classes].
  torch::Tensor logits(const torch::Tensor& x);
  ModelOutput forward(const torch::Tensor& x) override { return {{}, {}, logits(x)}; }
  bool is_segmenter() const override { return false; }
  std::shared_ptr<torch::nn::Module> encoder() override;  // the DenseNet121 `features`
  // torchvision's DenseNet121 files name the encoder `features.*` (CheXNet's
  // `densenet121.features.*`): loaded into the whole classifier, its head ignored.
  void load_encoder_weights(const std::string& file) override;
  // The pneumothorax logit [N]: the only output, or index 7 of the 14.
  torch::Tensor pneumothorax_logit(const torch::Tensor& logits) const;

 private:
  ClassifierOptions options_;
  std::shared_ptr<DenseNet121FeaturesImpl> features_;
  torch::nn::Linear classifier_{nullptr};
};
TORCH_MODULE(Classifier);

}  // namespace pneumo::models
