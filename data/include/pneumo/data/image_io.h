// Reading and writing ordinary image files (PNG, JPEG) with errors that name the file.
#pragma once

#include <filesystem>

#include <opencv2/core/mat.hpp>

namespace pneumo::data {

// An 8-bit single-channel image (colour converted to grey). Throws DataError.
cv::Mat read_grey_image(const std::filesystem::path& file);

// Writes a PNG atomically (temporary file, then rename). Throws IoError.
void write_png(const std::filesystem::path& file, const cv::Mat& image);

}  // namespace pneumo::data
