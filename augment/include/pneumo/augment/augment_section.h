// The `augment:` section of an experiment file: one pipeline for training samples and one
// for validation (usually empty), run per sample in the loader, and the spatial ops run on each
// training batch on the training device (batch_pipeline.h); each a list of ops or the path of a
// file holding one.
#pragma once

#include "pneumo/augment/batch_pipeline.h"
#include "pneumo/augment/pipeline.h"
#include "pneumo/core/config_node.h"

namespace pneumo::augment {

struct AugmentSection {
  core::ConfigNode train;       // null: no augmentation
  core::ConfigNode validation;  // null: none
  core::ConfigNode on_device;   // null: none

  template <class V>
  void visit(V& v) {
    v("train", train,
      "ops applied to training samples (Albumentations 0.4.x names and parameters), or a "
      "pipeline file (configs/augment/)");
    v("validation", validation, "ops applied to validation samples (usually none)");
    v("on_device", on_device,
      "spatial ops applied to each training batch on the training device after `train` "
      "(HorizontalFlip, VerticalFlip, ShiftScaleRotate, ElasticTransform; for few CPU cores), "
      "or a pipeline file");
  }

  Pipeline train_pipeline() const { return Pipeline::from_config(train, "augment.train"); }
  Pipeline validation_pipeline() const {
    return Pipeline::from_config(validation, "augment.validation");
  }
  BatchPipeline device_pipeline() const { return BatchPipeline::from_config(on_device, "augment.on_device"); }
};

}  // namespace pneumo::augment
