#include "pneumo/data/masks.h"

#include <algorithm>
#include <unordered_set>

#include <fmt/format.h>
#include <opencv2/imgproc.hpp>

#include "pneumo/core/error.h"
#include "pneumo/data/image_io.h"

namespace pneumo::data {

namespace fs = std::filesystem;

MaskFolder::MaskFolder(fs::path folder, const std::vector<std::string>& image_ids, MissingMask missing)
    : folder_(std::move(folder)) {
  std::error_code ec;
  if (!fs::is_directory(folder_, ec))
    throw core::DataError(fmt::format("{}: mask folder not found (data.masks)", folder_.string()));
  std::unordered_set<std::string> images(image_ids.begin(), image_ids.end());
  for (const auto& entry : fs::directory_iterator(folder_, fs::directory_options::skip_permission_denied, ec)) {
    const fs::path& p = entry.path();
    if (p.extension() == ".png" && images.count(p.stem().string()) == 0) masks_without_image_.push_back(p.stem().string());
  }
  if (ec) throw core::DataError(fmt::format("{}: cannot list: {}", folder_.string(), ec.message()));
  std::sort(masks_without_image_.begin(), masks_without_image_.end());
  for (const std::string& id : image_ids) {
    const fs::path file = file_of(id);
    const bool exists = fs::is_regular_file(file, ec);
    if (!exists && missing == MissingMask::kError)
      throw core::DataError(fmt::format("image '{}' has no mask {}; expected one <ImageId>.png per image, or "
                                        "data.missing_mask: negative to take images without a mask as negatives",
                                        id, file.string()));
    entries_[id] = {exists, exists && cv::countNonZero(read_mask_png(file)) > 0};
    missing_ += exists ? 0 : 1;
  }
}

bool MaskFolder::is_positive(const std::string& image_id) const {
  const auto it = entries_.find(image_id);
  return it != entries_.end() && it->second.positive;
}

cv::Mat MaskFolder::mask(const std::string& image_id, int height, int width) const {
  const auto it = entries_.find(image_id);
  if (it == entries_.end() || !it->second.has_file) return cv::Mat::zeros(height, width, CV_8UC1);
  cv::Mat mask = read_mask_png(file_of(image_id));
  if (mask.rows == height && mask.cols == width) return mask;
  cv::Mat resized;
  cv::resize(mask, resized, cv::Size(width, height), 0, 0, cv::INTER_NEAREST);
  return resized;
}

}  // namespace pneumo::data
