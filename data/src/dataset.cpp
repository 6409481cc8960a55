#include "pneumo/data/dataset.h"

#include <fmt/format.h>
#include <opencv2/imgproc.hpp>

#include "pneumo/core/error.h"

namespace pneumo::data {

Dataset::Dataset(std::shared_ptr<const MaskSource> masks, DatasetIndex index, Preprocessor preprocessor,
                 std::vector<std::string> classes)
    : masks_(std::move(masks)),
      classes_(std::move(classes)),
      index_(std::move(index)),
      preprocessor_(std::move(preprocessor)) {
  if (!masks_ && classes_.empty()) throw core::Error("dataset: neither masks nor classes");
  for (const IndexEntry& e : index_.entries)
    if (e.targets.size() != classes_.size())
      throw core::Error(fmt::format("dataset: {} has {} class targets for {} classes", e.image_id, e.targets.size(),
                                    classes_.size()));
}

const MaskSource& Dataset::masks() const {
  if (!masks_) throw core::UsageError("this dataset is an image-level class table: it has no masks");
  return *masks_;
}

Dataset::Dataset(LabelTable labels, DatasetIndex index, Preprocessor preprocessor)
    : Dataset(std::make_shared<const LabelTable>(std::move(labels)), std::move(index), std::move(preprocessor)) {}

Sample Dataset::load(int64_t index) const {
  if (index < 0 || index >= size())
    throw core::Error(fmt::format("dataset index {} outside 0..{}", index, size() - 1));
  const IndexEntry& entry = index_.entries[static_cast<size_t>(index)];
  PreparedImage prepared = preprocessor_.prepare(entry.file);

  Sample sample;
  sample.index = index;
  sample.image_id = entry.image_id;
  sample.image = std::move(prepared.pixels);
  sample.label = entry.positive ? 1.0f : 0.0f;
  sample.targets = entry.targets;
  if (entry.positive && masks_) {
    const cv::Mat native = masks_->mask(entry.image_id, prepared.native_rows, prepared.native_columns);
    if (native.size() == sample.image.size())
      sample.mask = native;
    else
      cv::resize(native, sample.mask, sample.image.size(), 0, 0, cv::INTER_NEAREST);
  } else {
    sample.mask = cv::Mat::zeros(sample.image.size(), CV_8UC1);
  }
  return sample;
}

}  // namespace pneumo::data
