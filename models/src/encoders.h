// Constructors of the encoder families (one source file each).
#pragma once

#include <memory>

#include "pneumo/models/encoder.h"

namespace pneumo::models {

enum class ResNetKind { kResNet18, kResNet34, kResNet50 };

std::shared_ptr<Encoder> make_resnet(ResNetKind kind, int in_channels, int depth);
std::shared_ptr<Encoder> make_vgg19(bool batch_norm, int in_channels, int depth);
std::shared_ptr<Encoder> make_densenet121_encoder(int in_channels, int depth);
// variant 0..4: EfficientNet-B0..B4
std::shared_ptr<Encoder> make_efficientnet(int variant, int in_channels, int depth);

}  // namespace pneumo::models
