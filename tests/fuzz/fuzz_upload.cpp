// What pneumo serve's decoder does with an upload's bytes: PNG/JPEG through the header check
// and OpenCV, and the in-memory DICOM reader (the same structure check and GDCM as files); and
// the mask-folder reader on the same bytes.
#include <cstdint>
#include <string>

#include "pneumo/core/error.h"
#include "pneumo/data/dicom.h"
#include "pneumo/data/image_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    // A small pixel cap keeps each execution fast; the check itself is what is fuzzed.
    if (pneumo::data::decode_grey_image(bytes, "upload", int64_t{1} << 22).empty()) __builtin_trap();
  } catch (const pneumo::core::Error&) {
  }
  try {  // the mask folders' reader (data.masks): PNG header check, OpenCV, the value check
    if (pneumo::data::decode_mask_png(bytes, "mask", int64_t{1} << 22).empty()) __builtin_trap();
  } catch (const pneumo::core::Error&) {
  }
  try {
    if (pneumo::data::decode_dicom(bytes, "upload").pixels.empty()) __builtin_trap();
  } catch (const pneumo::core::Error&) {
  }
  return 0;
}
