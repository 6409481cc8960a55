// The DICOM reader: our structure check, GDCM's parser and codecs, the libjpeg-turbo path and
// the grey mapping, with every output option.
#include <cstdint>

#include "fuzz_input.h"
#include "pneumo/core/error.h"
#include "pneumo/data/dicom.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto file = pneumo::fuzz::input_file(data, size, ".dcm");
  using Options = pneumo::data::DicomReadOptions;
  Options options[3];
  options[1].output = Options::Output::kFloat32;
  options[1].window = Options::Window::kFromFile;
  options[2].fast_jpeg = false;
  options[2].multi_frame = Options::MultiFrame::kError;
  try {
    if (pneumo::data::read_dicom_header(file).rows <= 0) __builtin_trap();  // a header read gives a size
  } catch (const pneumo::core::Error&) {
  }
  for (const Options& o : options) {
    try {
      const pneumo::data::DicomImage image = pneumo::data::read_dicom(file, o);
      if (image.pixels.empty()) __builtin_trap();  // success must give pixels
    } catch (const pneumo::core::Error&) {
      return 0;  // a clear refusal is the right answer to bad input
    }
  }
  return 0;
}
