// Where an image's segmentation target comes from: a SIIM label table (run-length-encoded
// rows, labels.h) or a folder of mask PNGs, one `<ImageId>.png` per image (MaskFolder). The
// dataset, the loader and the evaluation read either through MaskSource.
#pragma once

#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

#include <opencv2/core/mat.hpp>

namespace pneumo::data {

class MaskSource {
 public:
  virtual ~MaskSource() = default;
  // The table or folder, for messages.
  virtual std::string describe() const = 0;
  virtual bool is_positive(const std::string& image_id) const = 0;
  // The image's mask as a [height, width] 0/255 CV_8UC1 (the image's own size). Throws
  // DataError naming the file (and line) when it cannot be made.
  virtual cv::Mat mask(const std::string& image_id, int height, int width) const = 0;
};

// What an image without a mask file is (data.missing_mask).
enum class MissingMask { kError, kNegative };

// A folder of `<ImageId>.png` masks: 0 outside, 1 or 255 inside, any size (resized to the image
// with nearest neighbour).
class MaskFolder : public MaskSource {
 public:
  // Reads the mask of every image id once, to know which are positive. An id without a mask
  // file is a DataError naming the image and the file expected, unless `missing` is
  // kNegative; a mask with other values is a DataError naming it (read_mask_png).
  MaskFolder(std::filesystem::path folder, const std::vector<std::string>& image_ids, MissingMask missing);

  std::string describe() const override { return folder_.string(); }
  bool is_positive(const std::string& image_id) const override;
  cv::Mat mask(const std::string& image_id, int height, int width) const override;

  const std::filesystem::path& folder() const { return folder_; }
  // Mask files whose name matches no image.
  const std::vector<std::string>& masks_without_image() const { return masks_without_image_; }
  int64_t missing_masks() const { return missing_; }  // images taken as negatives

 private:
  std::filesystem::path file_of(const std::string& image_id) const { return folder_ / (image_id + ".png"); }

  std::filesystem::path folder_;
  struct Entry {
    bool has_file = false;
    bool positive = false;
  };
  std::unordered_map<std::string, Entry> entries_;  // by image id
  std::vector<std::string> masks_without_image_;
  int64_t missing_ = 0;
};

}  // namespace pneumo::data
