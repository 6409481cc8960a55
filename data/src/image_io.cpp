#include "pneumo/data/image_io.h"

#include <utility>
#include <vector>

#include <fmt/format.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"

namespace pneumo::data {

namespace fs = std::filesystem;

cv::Mat read_grey_image(const fs::path& file) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec))
    throw core::DataError(fmt::format("{}: no such file", file.string()));
  cv::Mat image = cv::imread(file.string(), cv::IMREAD_GRAYSCALE);
  if (image.empty())
    throw core::DataError(fmt::format("{}: not a readable image (expected PNG or JPEG)",
                                      file.string()));
  return image;
}

namespace {

uint32_t big_endian(std::string_view b, size_t at, int bytes) {
  uint32_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(b[at + static_cast<size_t>(i)]);
  return v;
}

// Width and height from a PNG's IHDR or a JPEG's start-of-frame segment, or
// {0, 0} when the header cannot be read (then the bytes are not a PNG/JPEG we accept).
std::pair<int64_t, int64_t> header_size(std::string_view b) {
  if (b.size() >= 24 && b.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8) && b.substr(12, 4) == "IHDR")
    return {big_endian(b, 16, 4), big_endian(b, 20, 4)};
  if (b.size() < 4 || static_cast<unsigned char>(b[0]) != 0xFF || static_cast<unsigned char>(b[1]) != 0xD8) return {0, 0};
  size_t at = 2;
  while (at + 4 <= b.size()) {
    if (static_cast<unsigned char>(b[at]) != 0xFF) return {0, 0};
    const unsigned marker = static_cast<unsigned char>(b[at + 1]);
    if (marker == 0xFF) {  // fill byte
      ++at;
      continue;
    }
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {  // no length
      at += 2;
      continue;
    }
    if (marker == 0xD9 || marker == 0xDA) return {0, 0};  // image ends or scan starts before a frame header
    const size_t length = big_endian(b, at + 2, 2);
    const bool frame = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (frame) {
      if (length < 7 || at + 9 > b.size()) return {0, 0};
      return {big_endian(b, at + 7, 2), big_endian(b, at + 5, 2)};
    }
    if (length < 2) return {0, 0};
    at += 2 + length;
  }
  return {0, 0};
}

}  // namespace

cv::Mat decode_grey_image(std::string_view bytes, const std::string& name, int64_t max_pixels) {
  const auto [width, height] = header_size(bytes);
  if (width <= 0 || height <= 0)
    throw core::DataError(fmt::format("{}: not a readable image (expected DICOM, PNG or JPEG)", name));
  if (width > max_pixels || height > max_pixels || width * height > max_pixels)  // each side first: no overflow
    throw core::DataError(fmt::format("{}: claims {}x{} pixels; at most {} pixels are accepted", name, width,
                                      height, max_pixels));
  const cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data()));
  cv::Mat image = cv::imdecode(encoded, cv::IMREAD_GRAYSCALE);
  if (image.empty())
    throw core::DataError(fmt::format("{}: not a readable image (a corrupt or truncated PNG/JPEG)", name));
  return image;
}

void write_png(const fs::path& file, const cv::Mat& image) {
  std::vector<uchar> bytes;
  if (!cv::imencode(".png", image, bytes))
    throw core::IoError(fmt::format("{}: PNG encoding failed", file.string()));
  core::write_file_atomic(file, std::string_view(reinterpret_cast<const char*>(bytes.data()),
                                                 bytes.size()));
}

}  // namespace pneumo::data
