// A structural check of a DICOM Part 10 byte stream, run before GDCM sees the file.
//
// Debian's GDCM is built with assertions, and truncated or inconsistent files reach them and
// abort the whole process. This walk reads only element headers: it checks the preamble and
// 'DICM' prefix, that every element's declared length fits inside the file (sequences, items
// and encapsulated pixel fragments included), and a few header combinations known to abort
// GDCM. It does not interpret values; GDCM still does all the real parsing.
#pragma once

#include <string>
#include <string_view>

namespace pneumo::data::detail {

struct StructureCheck {
  std::string problem;  // empty when the structure is sound, otherwise the reason it is not
  std::string transfer_syntax;  // (0002,0010) as the file gives it
  // The transfer syntax says explicit VR little endian (native or compressed) but the data set
  // is encoded with implicit VR, as some writers do. GDCM then guesses the encoding element by
  // element, and a wrong guess can allocate gigabytes for a 4 KB file; such bytes go to GDCM
  // relabelled (below), and the file's own transfer syntax is restored after parsing.
  bool implicit_vr_mislabelled = false;
};

StructureCheck check_dicom_structure(std::string_view bytes);

// The same file with its transfer syntax (0002,0010) replaced by Implicit VR Little Endian and
// the meta group length adjusted. Only for bytes whose check said `implicit_vr_mislabelled`.
std::string relabel_as_implicit_vr(std::string_view bytes);

}  // namespace pneumo::data::detail
