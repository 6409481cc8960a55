// The parts of a TrainingState that live in LibTorch objects rather than in the trainer: the
// optimiser's state and the random generators. Captured into the state before each checkpoint
// and put back on resume.
#pragma once

#include <memory>
#include <string>

#include <torch/optim/optimizer.h>

#include "pneumo/models/network.h"
#include "pneumo/train/checkpoint.h"
#include "pneumo/train/train_section.h"

namespace pneumo::train {

// The optimiser train.optimizer names, with two parameter groups: the network's encoder
// parameters (their own learning rate through encoder_lr_multiplier), then the rest.
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerSection& section, models::Network& net);

std::string optimizer_bytes(torch::optim::Optimizer& optimizer);
void restore_optimizer(torch::optim::Optimizer& optimizer, const std::string& bytes);

// The CPU generator's state and one per visible GPU.
void capture_random_state(TrainingState& state);
// Puts them back; warns when the checkpoint's GPU count differs from this machine's.
void restore_random_state(const TrainingState& state);

}  // namespace pneumo::train
