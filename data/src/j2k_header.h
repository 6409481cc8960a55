// A check of a JPEG 2000 codestream's headers (ISO/IEC 15444-1 annex A), run on the first
// frame of a DICOM with a JPEG 2000 transfer syntax (each fragment that starts a frame) before
// GDCM hands it to OpenJPEG.
//
// OpenJPEG (not built with sanitizers in Debian) was seen to read out of bounds on a codestream
// whose tile-part header was damaged (tests/fuzz/regressions/dicom/jpeg2000-*). This walk reads
// the main header and the first tile-part header marker by marker and refuses what the standard
// does not allow: unknown or misplaced markers, segments longer than the stream, image and tile
// sizes that do not add up, coding and quantization parameters out of their ranges, and an image
// whose size or components differ from what the DICOM header says (GDCM copies the decoded
// image into a buffer sized from the DICOM header). It does not decode anything.
#pragma once

#include <string>
#include <string_view>

namespace pneumo::data::detail {

// What the DICOM header says the frame is; 0 where it does not say.
struct J2kExpectation {
  int rows = 0, columns = 0, samples_per_pixel = 0;
};

// The problem, or empty. A stream whose headers continue past `codestream` (a frame split over
// fragments) is judged as far as it goes.
std::string check_j2k_header(std::string_view codestream, const J2kExpectation& expected);

bool is_j2k_syntax(const std::string& transfer_syntax);

}  // namespace pneumo::data::detail
