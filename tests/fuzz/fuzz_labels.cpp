// The SIIM label CSV and RLE: parsing, masks of every image at a small size, and the encoder
// giving back what the decoder read; and the same input as an image-level class table in every
// layout and cell policy (every row a target per class: 1, 0 or NaN).
#include <array>
#include <cstdint>

#include <opencv2/core.hpp>

#include "fuzz_input.h"
#include "pneumo/core/error.h"
#include "pneumo/data/class_table.h"
#include "pneumo/data/labels.h"
#include "pneumo/data/rle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  // The RLE alone, at a size taken from the input.
  const int height = 1 + (size > 0 ? data[0] % 48 : 0), width = 1 + (size > 1 ? data[1] % 48 : 0);
  try {
    const cv::Mat mask = pneumo::data::decode_rle(text, height, width);
    const cv::Mat again = pneumo::data::decode_rle(pneumo::data::encode_rle(mask), height, width);
    if (cv::countNonZero(mask != again) != 0) __builtin_trap();  // encode(decode(x)) must decode to the same mask
    if (!pneumo::data::rle_syntax_error(text).empty()) __builtin_trap();  // it decoded, so the syntax was fine
  } catch (const pneumo::core::Error&) {
  }
  // The whole input as a label file.
  try {
    const auto table = pneumo::data::LabelTable::read_csv(pneumo::fuzz::input_file(data, size, ".csv"));
    for (const std::string& id : table.image_ids()) {
      try {
        table.mask(id, 32, 32);
      } catch (const pneumo::core::Error&) {
      }
    }
  } catch (const pneumo::core::Error&) {
  }
  // The whole input as a class table, its layout and policies chosen by its last byte.
  using pneumo::data::CellPolicy;
  pneumo::data::ClassTableOptions options;
  const uint8_t pick = size > 0 ? data[size - 1] : 0;
  options.format = std::array<const char*, 4>{"auto", "generic", "chestxray14", "chexpert"}[pick % 4];
  options.uncertain = std::array<CellPolicy, 3>{CellPolicy::kIgnore, CellPolicy::kOnes, CellPolicy::kZeros}[(pick / 4) % 3];
  options.blank = (pick / 12) % 2 ? CellPolicy::kIgnore : CellPolicy::kZeros;
  try {
    const auto table = pneumo::data::ClassTable::read(pneumo::fuzz::input_file(data, size, ".csv"), options);
    for (const auto& row : table.rows()) {
      if (row.targets.size() != table.classes().size() || row.image_id.empty()) __builtin_trap();
      for (float t : row.targets)
        if (!(t == 0.0f || t == 1.0f || t != t)) __builtin_trap();  // 1, 0 or NaN only
    }
  } catch (const pneumo::core::Error&) {
  }
  return 0;
}
