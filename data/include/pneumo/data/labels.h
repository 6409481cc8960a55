// SIIM label tables (`ImageId,EncodedPixels`) in all the forms they are found: with or
// without a header, a space before values, UTF-8 BOM, CRLF line ends, several rows per image.
#pragma once

#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "pneumo/data/masks.h"

namespace pneumo::data {

struct LabelRow {
  std::string rle;  // "-1" or "gap length ..."
  int line = 0;     // 1-based line in the file, for messages
};

class LabelTable : public MaskSource {
 public:
  // Reads and syntax-checks every row. Throws DataError naming file and line for a malformed
  // row (missing comma, empty ImageId, bad RLE).
  static LabelTable read_csv(const std::filesystem::path& file);

  const std::filesystem::path& source() const { return source_; }
  // Image ids in order of first appearance.
  const std::vector<std::string>& image_ids() const { return ids_; }
  bool contains(const std::string& image_id) const { return rows_.count(image_id) != 0; }
  const std::vector<LabelRow>& rows(const std::string& image_id) const;
  size_t row_count() const { return row_count_; }
  // True when any row of the image has runs.
  bool is_positive(const std::string& image_id) const override;

  // The union of the image's rows as a [height, width] 0/255 mask. A run outside the image is
  // a DataError naming the file and line.
  cv::Mat mask(const std::string& image_id, int height, int width) const override;
  std::string describe() const override { return source_.string(); }

 private:
  std::filesystem::path source_;
  std::vector<std::string> ids_;
  std::unordered_map<std::string, std::vector<LabelRow>> rows_;
  size_t row_count_ = 0;
};

}  // namespace pneumo::data
