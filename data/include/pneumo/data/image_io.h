// Reading and writing ordinary image files (PNG, JPEG) with errors that name the file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include <opencv2/core/mat.hpp>

namespace pneumo::data {

// An 8-bit single-channel image (colour converted to grey). Throws DataError.
cv::Mat read_grey_image(const std::filesystem::path& file);

// The same for PNG or JPEG bytes in memory; `name` stands for the source in errors. The
// header's dimensions are checked before decoding: more than `max_pixels` is refused (a small
// file can claim a huge image).
cv::Mat decode_grey_image(std::string_view bytes, const std::string& name, int64_t max_pixels = int64_t{1} << 26);

// Writes a PNG atomically (temporary file, then rename). Throws IoError.
void write_png(const std::filesystem::path& file, const cv::Mat& image);

}  // namespace pneumo::data
