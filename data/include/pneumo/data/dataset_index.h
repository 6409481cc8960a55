// The dataset index: which labelled images exist on disk and where.
//
// Labels come from a SIIM label table; images are found by searching a folder recursively for
// `<ImageId>.dcm`, so Kaggle's nested `dicom-images-train/<study>/<series>/<uid>.dcm` layout
// and a flat folder both work. Mismatches are reported, never silently dropped.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "pneumo/data/labels.h"

namespace pneumo::data {

struct IndexEntry {
  std::string image_id;
  std::filesystem::path file;
  bool positive = false;  // any label row of the image has runs
};

struct DatasetIndex {
  std::vector<IndexEntry> entries;  // labelled images found on disk, in label-file order
  std::vector<std::string> labels_without_image;            // ImageIds with no file
  std::vector<std::filesystem::path> images_without_label;  // .dcm files with no label row
  int64_t files_scanned = 0;                                // .dcm files under the folder

  int64_t positive_count() const;
  std::vector<bool> positives() const;  // per entry
};

// Searches `image_dir` recursively for files ending in `.dcm` (any case) and matches their
// names without extension to the label table's ImageIds. Throws DataError when the folder is
// missing, when two files carry the same ImageId (naming both), or when no labelled image is
// found at all.
DatasetIndex build_dataset_index(const LabelTable& labels,
                                 const std::filesystem::path& image_dir);

}  // namespace pneumo::data
