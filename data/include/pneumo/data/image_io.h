// Reading and writing ordinary image files (PNG, JPEG) with errors that name the file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include <opencv2/core/mat.hpp>

namespace pneumo::data {

// A PNG or JPEG as an 8-bit single-channel image: colour converted to grey, 16-bit grey
// stretched from its min..max to 0..255 (as a DICOM without a VOI window). `name` stands for the
// source in errors. The header's dimensions are checked before decoding: more than
// `max_pixels` is refused (a small file can claim a huge image). Throws DataError.
cv::Mat decode_grey_image(std::string_view bytes, const std::string& name, int64_t max_pixels = int64_t{1} << 26);

// The same for a file. Throws DataError naming it.
cv::Mat read_grey_image(const std::filesystem::path& file, int64_t max_pixels = int64_t{1} << 26);

// What a PNG's IHDR chunk says, nothing decoded.
struct PngHeader {
  int width = 0, height = 0;
  int bits = 8;       // per sample: 1, 2, 4, 8 or 16
  bool grey = true;   // colour type grey or grey + alpha
};
// From the first 33 bytes or more of a PNG; `name` stands for the source in errors. Throws
// DataError when they are not a PNG signature followed by an IHDR chunk of 1..65536 per side.
PngHeader parse_png_header(std::string_view bytes, const std::string& name);
// The same, reading only the head of a file.
PngHeader read_png_header(const std::filesystem::path& file);

// Whether a file's name ends in .dcm, .png, .jpg or .jpeg (any case): the images pneumo reads.
bool is_image_file(const std::filesystem::path& file);
// Whether its name says PNG or JPEG (.png, .jpg, .jpeg); the other image files are DICOM.
bool is_png_or_jpeg(const std::filesystem::path& file);

// A mask file (PNG, any size): 0 outside, 1 or 255 inside, returned as 0/255 CV_8UC1. Any
// other value, or a colour or 16-bit image, is a DataError naming the file and the value.
cv::Mat read_mask_png(const std::filesystem::path& file);
// The same for bytes in memory (`name` stands for them); at most `max_pixels` (header checked first).
cv::Mat decode_mask_png(std::string_view bytes, const std::string& name, int64_t max_pixels = int64_t{1} << 26);

// Writes a PNG atomically (temporary file, then rename). Throws IoError.
void write_png(const std::filesystem::path& file, const cv::Mat& image);

}  // namespace pneumo::data
