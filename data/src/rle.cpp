#include "pneumo/data/rle.h"

#include <charconv>

#include <fmt/format.h>
#include <opencv2/core.hpp>

#include "pneumo/core/error.h"

namespace pneumo::data {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view strip(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool is_empty_marker(std::string_view rle) {
  rle = strip(rle);
  return rle == "-1" || rle.empty();
}

// Calls visit(value) for each whitespace-separated token; returns the first problem, if any.
template <class Visit>
std::string for_each_number(std::string_view text, Visit visit) {
  size_t count = 0;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_space(text[i])) ++i;
    if (i == text.size()) break;
    size_t end = i;
    while (end < text.size() && !is_space(text[end])) ++end;
    const std::string_view token = text.substr(i, end - i);
    if (token.front() == '-') return fmt::format("negative value '{}' (value {})", token, count + 1);
    uint64_t value = 0;
    auto [stop, ec] = std::from_chars(token.data(), token.data() + token.size(), value);
    if (ec != std::errc() || stop != token.data() + token.size())
      return fmt::format("value {} '{}' is not a non-negative integer", count + 1, token);
    visit(value);
    ++count;
    i = end;
  }
  if (count % 2 != 0)
    return fmt::format("odd number of values ({}); expected pairs of 'gap length'", count);
  return {};
}

}  // namespace

std::string rle_syntax_error(std::string_view rle) {
  if (is_empty_marker(rle)) return {};
  return for_each_number(rle, [](uint64_t) {});
}

void decode_rle_into(std::string_view rle, cv::Mat& mask) {
  if (mask.type() != CV_8UC1 || mask.empty())
    throw core::DataError("decode_rle_into: expected a non-empty 8-bit single-channel mask");
  if (is_empty_marker(rle)) return;
  const uint64_t height = static_cast<uint64_t>(mask.rows);
  const uint64_t width = static_cast<uint64_t>(mask.cols);
  const uint64_t total = height * width;
  uint64_t position = 0;
  uint64_t pending_gap = 0;
  bool have_gap = false;
  size_t pair = 0;
  std::string range_error;
  const std::string syntax = for_each_number(rle, [&](uint64_t value) {
    if (!range_error.empty()) return;
    if (!have_gap) {
      pending_gap = value;
      have_gap = true;
      return;
    }
    have_gap = false;
    ++pair;
    const uint64_t start = position + pending_gap;
    if (start < position || start > total || value > total - start) {
      range_error = fmt::format("run {} (gap {}, length {}) ends past the last pixel of a {}x{} "
                                "mask ({} pixels)",
                                pair, pending_gap, value, width, height, total);
      return;
    }
    // Column-major flat index k is pixel (row k % height, column k / height).
    for (uint64_t k = start; k < start + value; ++k)
      mask.ptr<uchar>(static_cast<int>(k % height))[k / height] = 255;
    position = start + value;
  });
  if (!syntax.empty()) throw core::DataError(syntax);
  if (!range_error.empty()) throw core::DataError(range_error);
}

cv::Mat decode_rle(std::string_view rle, int height, int width) {
  if (height <= 0 || width <= 0)
    throw core::DataError(fmt::format("mask size {}x{} is invalid; expected positive sizes",
                                      width, height));
  cv::Mat mask(height, width, CV_8UC1, cv::Scalar(0));
  decode_rle_into(rle, mask);
  return mask;
}

std::string encode_rle(const cv::Mat& mask) {
  if (mask.type() != CV_8UC1)
    throw core::DataError("encode_rle: expected an 8-bit single-channel mask");
  cv::Mat transposed;
  cv::transpose(mask, transposed);  // column-major pixels, contiguous
  const uchar* flat = transposed.ptr<uchar>();
  const size_t total = transposed.total();
  std::string out;
  size_t previous_end = 0;
  for (size_t i = 0; i < total;) {
    if (flat[i] == 0) {
      ++i;
      continue;
    }
    const size_t start = i;
    while (i < total && flat[i] != 0) ++i;  // the run may end at the very last pixel
    if (!out.empty()) out += ' ';
    out += fmt::format("{} {}", start - previous_end, i - start);
    previous_end = i;
  }
  return out.empty() ? "-1" : out;
}

}  // namespace pneumo::data
