// One forward pass as training and validation run it, and the experiment's loss on its output.
#pragma once

#include <vector>

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
  // The classifier loss's positive weight per class (train.loss.class_weights, or from the
  // training fold's label frequencies with class_balance: chexnet); empty: none.
  std::vector<double> class_weights;

  models::ModelOutput operator()(models::Network& model, const torch::Tensor& images) const;
};

// The experiment's loss on one batch: for segmenters the mask terms (+ extra masks) and the
// auxiliary head's BCE; for the classifier BCE with label smoothing and `class_weights`, on
// every logit against the batch's class targets (ignored targets masked out) when the data is a
// class table, else on the pneumothorax logit.
torch::Tensor experiment_loss(const models::ModelOutput& out, const data::Batch& batch, bool segmenter,
                              const LossSection& loss, const std::vector<double>& class_weights);

}  // namespace pneumo::train
