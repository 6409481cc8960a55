// What inference reads: DICOM or PNG/JPEG files, folders searched recursively, or the images
// of a SIIM label table.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

namespace pneumo::infer {

struct InputFile {
  std::string id;  // file name without extension (the SIIM ImageId for .dcm files)
  std::filesystem::path path;
};

// Files are taken as given (any of .dcm .png .jpg .jpeg, any case); folders are searched
// recursively for them. The result is sorted by path. Throws UsageError for a path that does
// not exist or a file of another kind, DataError when two inputs share an id (naming both).
std::vector<InputFile> collect_inputs(const std::vector<std::filesystem::path>& paths);

// The images of a label table found under `images` (as training finds them), in label order;
// labels without a file are a DataError listing the first few.
std::vector<InputFile> labelled_inputs(const std::filesystem::path& labels, const std::filesystem::path& images);

struct InputImage {
  InputFile file;
  cv::Mat pixels;  // native size, CV_8UC1
  std::optional<double> pixel_spacing_mm[2];  // row, column spacing when the DICOM says
};

// Reads one input as training reads its DICOMs (`window`: "none" or "file"). Throws DataError
// naming the file.
InputImage read_input(const InputFile& file, const std::string& window);

}  // namespace pneumo::infer
