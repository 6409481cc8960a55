#include "pneumo/data/image_io.h"

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

void write_png(const fs::path& file, const cv::Mat& image) {
  std::vector<uchar> bytes;
  if (!cv::imencode(".png", image, bytes))
    throw core::IoError(fmt::format("{}: PNG encoding failed", file.string()));
  core::write_file_atomic(file, std::string_view(reinterpret_cast<const char*>(bytes.data()),
                                                 bytes.size()));
}

}  // namespace pneumo::data
