// What inference reads: DICOM or PNG/JPEG files, folders searched recursively, or the images
// of a SIIM label table.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "pneumo/data/data_section.h"
#include "pneumo/data/input_gate.h"
#include "pneumo/data/labels.h"

namespace pneumo::infer {

struct InputFile {
  std::string id;  // file name without extension (the SIIM ImageId for .dcm files)
  std::filesystem::path path;
};

// Files are taken as given (any of .dcm .png .jpg .jpeg, any case); folders are searched
// recursively for them. The result is sorted by path. Throws UsageError for a path that does
// not exist or a file of another kind, DataError when two inputs share an id (naming both).
std::vector<InputFile> collect_inputs(const std::vector<std::filesystem::path>& paths);

// Images with ground truth: a label table's images, or the validation fold of a run.
struct LabelledSet {
  std::vector<InputFile> inputs;
  std::shared_ptr<const data::MaskSource> masks;  // a label table or a mask folder; null for a class table
  std::vector<std::string> classes;               // a class table's classes; else empty
  std::unordered_map<std::string, std::vector<float>> targets;  // by image id: per class 1, 0 or NaN
  std::string description;  // for reports: where the set came from
};

// `labels` + `images`, or when both are empty, the validation fold of `run` (its config's
// data section: the label table or mask folder, the images and data.fold, and its folds.csv). Throws UsageError when neither
// is available.
LabelledSet labelled_set(const std::filesystem::path& labels, const std::filesystem::path& images,
                         const std::filesystem::path& run);

// Every image under `images` with its mask from the folder `masks` (<ImageId>.png, as
// data.masks reads them; an image without a mask file is an error naming both).
LabelledSet mask_folder_set(const std::filesystem::path& masks, const std::filesystem::path& images);

// The images of an image-level class table, read as `model_data` (a classifier's data section:
// table_format, classes, uncertain, blank) says, restricted to `split_list` when given (e.g.
// ChestX-ray14's test_list.txt).
LabelledSet class_set(const std::filesystem::path& table, const std::filesystem::path& images,
                      const std::filesystem::path& split_list, const data::DataSection& model_data);

struct InputImage {
  InputFile file;
  cv::Mat pixels;  // native size, CV_8UC1
  std::optional<double> pixel_spacing_mm[2];  // row, column spacing when the DICOM says
  data::InputFacts facts;  // photometric, bits stored and the DICOM header (the input gate's view)
};

// Reads one input as training reads its DICOMs (`window`: "none" or "file"). Throws DataError
// naming the file.
InputImage read_input(const InputFile& file, const std::string& window);

// The same for bytes in memory (an upload): PNG and JPEG are recognised by their signatures,
// anything else is read as DICOM. `file.path` is left empty; `file.id` names it in errors.
// Throws DataError.
InputImage decode_input(std::string bytes, const std::string& id, const std::string& window);

}  // namespace pneumo::infer
