// Validation at the training resolution: loss, the Kaggle Dice, IoU and the image-level AUC over
// the validation fold, split over the processes of a data-parallel run and summed.
#pragma once

#include <cstdint>
#include <vector>

#include <c10/core/Device.h>

#include "forward.h"
#include "pneumo/data/dataset.h"
#include "pneumo/data/loader.h"
#include "pneumo/train/checkpoint.h"

namespace pneumo::train {

class DataParallel;

class Validator {
 public:
  // `loader`: the run's loader options with the validation transform; `parallel` may be null
  // (one process).
  Validator(const data::Dataset& dataset, std::vector<int64_t> indices, data::LoaderOptions loader, c10::Device device,
            Forward forward, const TrainSection& train, bool segmenter, DataParallel* parallel);

  // Fills result's val_loss, val_dice, val_iou (NaN for classifiers) and val_auc; with a class
  // table also val_class_auc, val_auc then being their mean.
  void validate(models::Network& model, int epoch, EpochResult& result) const;

 private:
  // This process's sums over its share of the fold.
  struct Sums {
    double loss = 0, dice = 0, iou = 0;
    int64_t images = 0;
    std::vector<double> scores;
    std::vector<int> labels;
    std::vector<double> class_scores;  // class tables: [images, classes] row-major probabilities
    std::vector<float> class_targets;  // and their targets (NaN: ignored)
  };
  void add_batch(models::Network& model, const data::Batch& batch, Sums& sums) const;
  void add_up_processes(Sums& sums) const;

  const data::Dataset& dataset_;
  std::vector<int64_t> indices_;  // this process's share
  data::LoaderOptions loader_;
  c10::Device device_;
  Forward forward_;
  const TrainSection& train_;
  bool segmenter_;
  DataParallel* parallel_;
};

}  // namespace pneumo::train
