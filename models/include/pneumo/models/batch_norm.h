// Synchronised BatchNorm for data-parallel training (PyTorch's SyncBatchNorm): each process
// holds a share of the batch, and every BatchNorm layer normalises with the mean and variance
// of the whole batch instead of its share's.
#pragma once

#include <functional>
#include <optional>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

namespace pneumo::models {

// Sums a tensor over all processes of the run, in place (an all-reduce). Every process calls
// it the same number of times in the same order.
using SumAcrossProcesses = std::function<void(at::Tensor&)>;

// Makes every BatchNorm layer of `model` normalise training batches with whole-batch
// statistics gathered with `sum` (in the forward pass, and their gradients in the backward
// pass); the running statistics are then those of the whole batch, as on one process. An empty
// `sum` goes back to per-process statistics. Evaluation (running statistics) is unchanged.
// `rank` and `world` place this process among them. Returns the number of layers.
int synchronise_batchnorm(torch::nn::Module& model, SumAcrossProcesses sum, int rank = 0, int world = 1);

// Restarts the running statistics of every BatchNorm layer of `model` and sets how they
// average: a momentum, or nullopt for the plain average over all batches seen (SWA's
// recomputation). Returns the number of layers.
int reset_batchnorm_statistics(torch::nn::Module& model, std::optional<double> momentum);
// Sets only the averaging (PyTorch's default momentum is 0.1).
int set_batchnorm_momentum(torch::nn::Module& model, std::optional<double> momentum);

}  // namespace pneumo::models
