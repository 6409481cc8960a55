// Weight averaging: the equal average of several checkpoints of one network (the SWA idea
// applied after training, `pneumo average`), and the BatchNorm statistics such an average
// needs recomputed over training data.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "pneumo/data/dataset.h"
#include "pneumo/data/loader.h"

namespace pneumo::models {
class Network;
}

namespace pneumo::train {

// Resets every BatchNorm layer's running statistics and recomputes them as the plain average
// over one pass of `indices` (train mode, no gradients, no augmentation in `loader`). Returns
// the number of BatchNorm layers.
int recompute_batchnorm(models::Network& network, const data::Dataset& dataset, const std::vector<int64_t>& indices,
                        const data::LoaderOptions& loader, const c10::Device& device);

struct AverageOptions {
  std::vector<std::filesystem::path> checkpoints;
  std::filesystem::path out;
  bool recompute_batchnorm = true;  // over the training folds of the first checkpoint's config
  std::string device = "auto";
};

struct AverageSummary {
  int checkpoints = 0;
  int batchnorm_layers = 0;       // recomputed
  int64_t batchnorm_images = 0;   // images used for it
};

// Throws CheckpointError when the checkpoints hold different networks (naming the first
// difference), UsageError for fewer than two, and writes `out` atomically.
AverageSummary average_checkpoints(const AverageOptions& options);

}  // namespace pneumo::train
