#include "pneumo/data/labels.h"

#include <fmt/format.h>
#include <opencv2/core.hpp>

#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"
#include "pneumo/data/rle.h"

namespace pneumo::data {

namespace {

std::string_view strip(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Limits that keep a wrong or hostile file from exhausting memory.
constexpr uint64_t kMaxLabelFileBytes = uint64_t{2} << 30;
constexpr size_t kMaxRowBytes = size_t{64} << 20;

}  // namespace

LabelTable LabelTable::read_csv(const std::filesystem::path& file) {
  std::string text;
  try {
    text = core::read_text_file(file, kMaxLabelFileBytes);
  } catch (const core::IoError& e) {
    throw core::DataError(fmt::format("cannot read label file: {}", e.what()));
  }
  std::string_view rest(text);
  if (rest.substr(0, 3) == "\xEF\xBB\xBF") rest.remove_prefix(3);  // UTF-8 byte-order mark

  LabelTable table;
  table.source_ = file;
  for (int line = 1; !rest.empty(); ++line) {
    const size_t newline = rest.find('\n');
    const std::string_view raw = rest.substr(0, newline);
    rest.remove_prefix(newline == std::string_view::npos ? rest.size() : newline + 1);
    if (raw.size() > kMaxRowBytes)
      throw core::DataError(fmt::format("{}:{}: a row of {} MiB; expected at most {} MiB (a 1024x1024 mask's "
                                        "longest encoding is about 7 MiB)",
                                        file.string(), line, raw.size() >> 20, kMaxRowBytes >> 20));
    const std::string_view row = strip(raw);
    if (row.empty()) continue;
    const size_t comma = row.find(',');
    if (comma == std::string_view::npos)
      throw core::DataError(fmt::format("{}:{}: expected 'ImageId,EncodedPixels'; got '{:.60}'",
                                        file.string(), line, row));
    const std::string_view id = strip(row.substr(0, comma));
    const std::string_view rle = strip(row.substr(comma + 1));
    if (line == 1 && id == "ImageId") continue;  // header
    if (id.empty())
      throw core::DataError(fmt::format("{}:{}: empty ImageId", file.string(), line));
    if (const std::string problem = rle_syntax_error(rle); !problem.empty())
      throw core::DataError(fmt::format("{}:{}: image {}: malformed EncodedPixels: {}",
                                        file.string(), line, id, problem));
    const std::string key(id);
    auto [it, inserted] = table.rows_.try_emplace(key);
    if (inserted) table.ids_.push_back(key);
    it->second.push_back({rle.empty() ? "-1" : std::string(rle), line});
    ++table.row_count_;
  }
  return table;
}

const std::vector<LabelRow>& LabelTable::rows(const std::string& image_id) const {
  const auto it = rows_.find(image_id);
  if (it == rows_.end())
    throw core::DataError(fmt::format("{}: no label rows for image '{}'", source_.string(),
                                      image_id));
  return it->second;
}

bool LabelTable::is_positive(const std::string& image_id) const {
  for (const auto& row : rows(image_id))
    if (row.rle != "-1") return true;
  return false;
}

cv::Mat LabelTable::mask(const std::string& image_id, int height, int width) const {
  cv::Mat mask(height, width, CV_8UC1, cv::Scalar(0));
  for (const auto& row : rows(image_id)) {
    try {
      decode_rle_into(row.rle, mask);
    } catch (const core::DataError& e) {
      throw core::DataError(fmt::format("{}:{}: image {}: {}", source_.string(), row.line,
                                        image_id, e.what()));
    }
  }
  return mask;
}

}  // namespace pneumo::data
