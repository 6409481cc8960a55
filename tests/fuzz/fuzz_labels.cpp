// The SIIM label CSV and RLE: parsing, masks of every image at a small size, and the encoder
// giving back what the decoder read.
#include <cstdint>

#include <opencv2/core.hpp>

#include "fuzz_input.h"
#include "pneumo/core/error.h"
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
  return 0;
}
