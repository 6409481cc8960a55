// One forward pass as training and validation run it, and the experiment's loss on its output.
#pragma once

#include <torch/types.h>

#include "pneumo/data/loader.h"
#include "pneumo/models/network.h"
#include "pneumo/train/mixed_precision.h"
#include "pneumo/train/train_section.h"

namespace pneumo::train {

// The network's forward pass under the run's mixed precision (outputs back in float32), on
// channels-last images when the run keeps its weights that way.
struct Forward {
  MixedPrecision precision;
  bool channels_last = false;

  models::ModelOutput operator()(models::Network& model, const torch::Tensor& images) const;
};

// The experiment's loss on one batch: for segmenters the mask terms (+ extra masks) and the
// auxiliary head's BCE, for the classifier BCE with label smoothing and class weights.
torch::Tensor experiment_loss(const models::ModelOutput& out, const data::Batch& batch, bool segmenter,
                              const LossSection& loss);

}  // namespace pneumo::train
