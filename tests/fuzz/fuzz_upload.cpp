// What pneumo serve's decoder does with an upload's bytes: PNG/JPEG through the header check
// and OpenCV, and the in-memory DICOM reader (the same structure check and GDCM as files); the
// mask-folder reader on the same bytes; and what the input gate reads of a PNG/JPEG header, then
// its decision on whatever decoded.
#include <cstdint>
#include <string>

#include "pneumo/core/error.h"
#include "pneumo/data/dicom.h"
#include "pneumo/data/image_io.h"
#include "pneumo/data/input_gate.h"

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
    const pneumo::data::DicomImage dicom = pneumo::data::decode_dicom(bytes, "upload");
    if (dicom.pixels.empty()) __builtin_trap();
    pneumo::data::InputFacts facts;  // the gate on a decoded header: any value it holds
    facts.photometric = dicom.meta.photometric;
    facts.bits_stored = dicom.meta.bits_stored;
    facts.dicom = dicom.meta;
    pneumo::data::GateSection gate;
    gate.photometric = {"MONOCHROME2"};
    gate.bits_stored = {8};
    (void)pneumo::data::check_input(gate, facts, dicom.pixels, 64).str();
  } catch (const pneumo::core::Error&) {
  }
  try {
    const pneumo::data::InputFacts facts = pneumo::data::encoded_image_facts(bytes, "upload");
    if (facts.photometric.empty()) __builtin_trap();
  } catch (const pneumo::core::Error&) {
  }
  return 0;
}
