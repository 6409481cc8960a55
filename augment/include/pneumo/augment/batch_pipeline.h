// Spatial augmentation of whole batches on the training device (a GPU, or the CPU), for
// machines whose few CPU cores cannot keep up with per-sample warps in the loader.
//
//   augment:
//     train: [{OneOf: {...contrast, gamma...}}]       # per sample, loader threads (Pipeline)
//     on_device: [HorizontalFlip, ShiftScaleRotate, ElasticTransform]   # per batch, here
//
// Ops: HorizontalFlip, VerticalFlip, ShiftScaleRotate and ElasticTransform, with
// Albumentations 0.4.x's parameters, defaults, probabilities and formulas (as Pipeline's), run
// through grid_sample (tensor_warp.h) on the batch's device; interpolation linear or nearest,
// border constant, replicate, reflect or reflect_101. Each sample draws its decisions and
// parameters from its own Rng, in the order Pipeline draws them, seeded from (seed, epoch,
// sample id), so a sample is augmented the same in any batch and with any batch size. Only
// ElasticTransform's noise field differs from the loader's: it is drawn on the device from a
// generator seeded per sample, instead of numpy's RandomState (its affine step is numpy's).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "pneumo/core/config_node.h"
#include "pneumo/core/random.h"

namespace pneumo::augment {

class BatchOp;

class BatchPipeline {
 public:
  BatchPipeline() = default;  // empty: leaves batches unchanged

  // From a YAML list of ops (Pipeline's syntax) or a string naming a file holding one; null
  // gives an empty pipeline. Throws ConfigError with file:line:column for an op that cannot
  // run on the device (naming the ones that can), or an unsupported interpolation or border.
  static BatchPipeline from_config(const core::ConfigNode& node, const std::string& path);

  bool empty() const { return ops_.empty(); }
  size_t size() const { return ops_.size(); }

  // Augments a batch in place on its device. images: [N, C, H, W] float, normalised as the
  // loader's batches are, (grey / 255 - mean[c]) / std[c] (`mean`, `std`: one value or one per
  // channel), so fill values are grey levels; masks: [N, 1, H, W] float or undefined. `samples`:
  // one id per sample (the dataset index). Throws DataError for images or masks that do not fit.
  void apply(at::Tensor& images, at::Tensor& masks, const std::vector<int64_t>& samples, uint64_t seed,
             int64_t epoch, const std::vector<double>& mean, const std::vector<double>& std) const;

  // The Rng a sample's draws come from in apply(). A loader Pipeline of the same ops applied
  // with it draws the same decisions and parameters (ElasticTransform's noise aside).
  static core::Rng sample_rng(uint64_t seed, int64_t epoch, int64_t sample);

  // The op names the device accepts, sorted.
  static std::vector<std::string> op_names();

 private:
  std::vector<std::shared_ptr<const BatchOp>> ops_;
};

}  // namespace pneumo::augment
