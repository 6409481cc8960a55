// The dataset index: which labelled images exist on disk and where.
//
// Images are found by searching a folder recursively for `<ImageId>.dcm`, `.png`, `.jpg` or
// `.jpeg` (any case), so Kaggle's nested `dicom-images-train/<study>/<series>/<uid>.dcm`
// layout, a flat folder and PNG repacks all work. With a SIIM label table the table lists the
// images; with a mask folder every image in the folder is one. Mismatches are reported, never
// silently dropped. With an image-level class table (class_table.h) the table lists the images,
// found by id under the folder or by the table's path column; a row without its image is an
// error naming the row.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "pneumo/data/class_table.h"
#include "pneumo/data/labels.h"

namespace pneumo::data {

struct IndexEntry {
  std::string image_id;
  std::filesystem::path file;
  bool positive = false;  // any label row of the image has runs (or its mask has pixels, or a class is 1)
  std::string patient;    // the patient's id, when data.group_by asks for it (else empty)
  std::vector<float> targets;  // class tables only: per class 1, 0 or NaN (ignored)
};

struct DatasetIndex {
  std::vector<IndexEntry> entries;  // labelled images found on disk, in label-file order
  std::vector<std::string> labels_without_image;            // ImageIds with no file
  std::vector<std::filesystem::path> images_without_label;  // image files with no label row
  int64_t files_scanned = 0;                                // image files under the folder

  int64_t positive_count() const;
  std::vector<bool> positives() const;  // per entry
  // What folds are stratified by, per entry, and the number of strata. Binary labels: 0 for
  // positives, 1 for negatives. Class targets: the rank of the entry's rarest positive class
  // (0 the rarest class of the index), the class count for entries with no positive class.
  std::vector<int> strata() const;
  int strata_count() const;
};

// Searches `image_dir` recursively for image files (see above) and matches their names without
// extension to the label table's ImageIds. Throws DataError when the folder is missing, when
// two files carry the same ImageId (naming both), or when no labelled image is found at all.
DatasetIndex build_dataset_index(const LabelTable& labels,
                                 const std::filesystem::path& image_dir);

// Every image file under `image_dir`, in path order, each positive when `masks` says so (a mask
// folder made for these images' ids: image_ids_in). Throws DataError as above, or when the
// folder holds no image.
std::vector<std::string> image_ids_in(const std::filesystem::path& image_dir);
DatasetIndex build_dataset_index(const MaskFolder& masks, const std::filesystem::path& image_dir);

// The rows of an image-level table, each found by its path column (under `image_dir`, else
// beside the table) or by its id under `image_dir` (searched as above). A row whose image is
// not there is a DataError naming the table, the line and the places looked in. Patients come
// from the table when it names them.
DatasetIndex build_dataset_index(const ClassTable& table, const std::filesystem::path& image_dir);

}  // namespace pneumo::data
