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

// Returns an empty string when the structure is sound, otherwise the reason it is not.
std::string check_dicom_structure(std::string_view bytes);

}  // namespace pneumo::data::detail
