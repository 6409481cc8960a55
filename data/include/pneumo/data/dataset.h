// A labelled dataset: the index, its label table (or mask folder, or image-level class table)
// and the preprocessing, giving one training sample (image at the experiment's size, its mask
// at the same size, its label and class targets) per entry.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "pneumo/data/dataset_index.h"
#include "pneumo/data/labels.h"
#include "pneumo/data/preprocess.h"

namespace pneumo::data {

struct Sample {
  int64_t index = 0;  // position in the dataset index
  std::string image_id;
  cv::Mat image;  // [H, W] CV_8UC1 (or CV_32FC1 in 0..1 after a float transform)
  cv::Mat mask;   // [H, W] CV_8UC1, 255 inside the pneumothorax, 0 outside
  float label = 0.0f;  // 1 when the image has any mask pixel in its labels (or any class is 1)
  std::vector<float> targets;  // class tables: per class 1, 0 or NaN (ignored); else empty
};

class Dataset {
 public:
  // `masks` null and `classes` named for an image-level class table (masks are then empty).
  Dataset(std::shared_ptr<const MaskSource> masks, DatasetIndex index, Preprocessor preprocessor,
          std::vector<std::string> classes = {});
  Dataset(LabelTable labels, DatasetIndex index, Preprocessor preprocessor);

  int64_t size() const { return static_cast<int64_t>(index_.entries.size()); }
  const DatasetIndex& index() const { return index_; }
  // Whether the dataset has segmentation targets (a label table or mask folder).
  bool has_masks() const { return masks_ != nullptr; }
  // The label table or mask folder the masks come from (has_masks()).
  const MaskSource& masks() const;
  // The class table's classes in target order; empty without one.
  const std::vector<std::string>& classes() const { return classes_; }
  std::shared_ptr<const MaskSource> shared_masks() const { return masks_; }
  const Preprocessor& preprocessor() const { return preprocessor_; }

  // Thread-safe. The mask is made at the image's native size (the union of its label rows, or
  // its mask file resized with nearest neighbour), then resized to the experiment's size with
  // nearest neighbour (as Albumentations resizes masks). Throws DataError naming the file, or
  // the label file and line.
  Sample load(int64_t index) const;

 private:
  std::shared_ptr<const MaskSource> masks_;
  std::vector<std::string> classes_;
  DatasetIndex index_;
  Preprocessor preprocessor_;
};

}  // namespace pneumo::data
