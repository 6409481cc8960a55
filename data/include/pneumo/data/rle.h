// The SIIM-ACR run-length encoding of masks, exactly as the competition defined it:
// column-major pixel order (flat index = x * height + y), pairs "gap length" where the first
// gap counts from pixel 0 and every later gap from the end of the previous run; "-1" for an
// empty mask. Unlike the competition's reference encoder, a run touching the last pixel is kept.
#pragma once

#include <string>
#include <string_view>

#include <opencv2/core/mat.hpp>

namespace pneumo::data {

// A [height, width] CV_8UC1 mask, 255 inside the runs and 0 elsewhere.
cv::Mat decode_rle(std::string_view rle, int height, int width);

// Adds the runs of `rle` to an existing CV_8UC1 mask (union; several label rows per image).
// Throws DataError for malformed text (odd count, negative or non-numeric values) or a run
// that leaves the image; the mask may then already hold the runs before the bad one.
void decode_rle_into(std::string_view rle, cv::Mat& mask);

// Encodes every non-zero pixel of a CV_8UC1 mask; "-1" when there is none.
std::string encode_rle(const cv::Mat& mask);

// Syntax check without an image size: "-1", or an even count of non-negative integers.
// Returns an empty string when valid, else the reason.
std::string rle_syntax_error(std::string_view rle);

}  // namespace pneumo::data
