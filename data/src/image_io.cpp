#include "pneumo/data/image_io.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <fstream>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"

namespace pneumo::data {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMaxImageFileBytes = uint64_t{1} << 30;

// 16-bit grey as a DICOM without a window is read: its min..max stretched to 0..255.
cv::Mat stretch_to_8bit(const cv::Mat& grey16) {
  double low = 0, high = 0;
  cv::minMaxLoc(grey16, &low, &high);
  const double range = high > low ? high - low : 1.0;
  cv::Mat unit, out;
  grey16.convertTo(unit, CV_64F, 1.0 / range, -low / range);
  unit.convertTo(out, CV_8U, 255.0);  // rounds and saturates
  return out;
}

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

std::string lower_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

}  // namespace

PngHeader parse_png_header(std::string_view b, const std::string& name) {
  if (b.size() < 33 || b.substr(0, 8) != std::string_view("\x89PNG\r\n\x1a\n", 8) || b.substr(12, 4) != "IHDR")
    throw core::DataError(fmt::format("{}: not a PNG file (no PNG signature followed by an IHDR chunk)", name));
  PngHeader h;
  const uint32_t width = big_endian(b, 16, 4), height = big_endian(b, 20, 4);
  if (width == 0 || height == 0 || width > (1u << 16) || height > (1u << 16))
    throw core::DataError(fmt::format("{}: PNG header says {}x{}; expected 1..65536 on each side", name, width, height));
  h.width = static_cast<int>(width);
  h.height = static_cast<int>(height);
  h.bits = static_cast<unsigned char>(b[24]);
  const auto colour_type = static_cast<unsigned char>(b[25]);
  h.grey = colour_type == 0 || colour_type == 4;
  return h;
}

PngHeader read_png_header(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw core::DataError(fmt::format("{}: cannot be opened", file.string()));
  std::array<char, 33> head{};
  in.read(head.data(), head.size());
  return parse_png_header(std::string_view(head.data(), static_cast<size_t>(in.gcount())), file.string());
}

bool is_png_or_jpeg(const fs::path& file) {
  const std::string ext = lower_extension(file);
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

bool is_image_file(const fs::path& file) { return is_png_or_jpeg(file) || lower_extension(file) == ".dcm"; }

cv::Mat read_mask_png(const fs::path& file) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) throw core::DataError(fmt::format("{}: no such mask file", file.string()));
  std::string bytes;
  try {
    bytes = core::read_text_file(file, kMaxImageFileBytes);
  } catch (const core::IoError& e) {
    throw core::DataError(e.what());
  }
  return decode_mask_png(bytes, file.string());
}

cv::Mat decode_mask_png(std::string_view bytes, const std::string& name, int64_t max_pixels) {
  const auto [width, height] = header_size(bytes);
  if (width <= 0 || height <= 0 || width > max_pixels || height > max_pixels || width * height > max_pixels)
    throw core::DataError(fmt::format("{}: not a readable mask (expected a PNG of at most {} pixels)", name, max_pixels));
  const cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data()));
  const cv::Mat mask = cv::imdecode(encoded, cv::IMREAD_UNCHANGED);
  if (mask.empty()) throw core::DataError(fmt::format("{}: not a readable mask (a corrupt or truncated PNG)", name));
  if (mask.type() != CV_8UC1)
    throw core::DataError(fmt::format("{}: a mask with {} channel(s) of {} bits; expected one 8-bit grey channel",
                                      name, mask.channels(), 8 * static_cast<int>(mask.elemSize1())));
  cv::Mat other = (mask != 0) & (mask != 1) & (mask != 255);
  if (const int count = cv::countNonZero(other); count > 0) {
    cv::Point at;
    cv::minMaxLoc(other, nullptr, nullptr, nullptr, &at);
    throw core::DataError(fmt::format("{}: mask value {} at x={}, y={} ({} pixels besides 0, 1 and 255); expected "
                                      "0 outside and 1 or 255 inside",
                                      name, static_cast<int>(mask.at<uchar>(at)), at.x, at.y, count));
  }
  return mask != 0;  // 0 / 255
}

cv::Mat decode_grey_image(std::string_view bytes, const std::string& name, int64_t max_pixels) {
  const auto [width, height] = header_size(bytes);
  if (width <= 0 || height <= 0)
    throw core::DataError(fmt::format("{}: not a readable image (expected DICOM, PNG or JPEG)", name));
  if (width > max_pixels || height > max_pixels || width * height > max_pixels)  // each side first: no overflow
    throw core::DataError(fmt::format("{}: claims {}x{} pixels; at most {} pixels are accepted", name, width,
                                      height, max_pixels));
  const cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data()));
  cv::Mat image = cv::imdecode(encoded, cv::IMREAD_GRAYSCALE | cv::IMREAD_ANYDEPTH);
  if (image.empty())
    throw core::DataError(fmt::format("{}: not a readable image (a corrupt or truncated PNG/JPEG)", name));
  if (image.depth() == CV_16U) return stretch_to_8bit(image);
  if (image.depth() != CV_8U)
    throw core::DataError(fmt::format("{}: {}-bit samples; expected an 8- or 16-bit PNG or JPEG", name,
                                      8 * static_cast<int>(image.elemSize1())));
  return image;
}

cv::Mat read_grey_image(const fs::path& file, int64_t max_pixels) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec))
    throw core::DataError(fmt::format("{}: no such file", file.string()));
  std::string bytes;
  try {
    bytes = core::read_text_file(file, kMaxImageFileBytes);
  } catch (const core::IoError& e) {
    throw core::DataError(e.what());
  }
  return decode_grey_image(bytes, file.string(), max_pixels);
}

void write_png(const fs::path& file, const cv::Mat& image) {
  std::vector<uchar> bytes;
  if (!cv::imencode(".png", image, bytes))
    throw core::IoError(fmt::format("{}: PNG encoding failed", file.string()));
  core::write_file_atomic(file, std::string_view(reinterpret_cast<const char*>(bytes.data()),
                                                 bytes.size()));
}

}  // namespace pneumo::data
