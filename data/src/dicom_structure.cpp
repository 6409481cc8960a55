#include "dicom_structure.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>
#include <zlib.h>

namespace pneumo::data::detail {

namespace {

constexpr uint32_t kUndefinedLength = 0xFFFFFFFF;

struct Cursor {
  std::string_view bytes;
  size_t offset = 0;
  bool big_endian = false;

  bool has(size_t n) const { return offset <= bytes.size() && bytes.size() - offset >= n; }
  uint16_t u16() {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + offset);
    offset += 2;
    return big_endian ? static_cast<uint16_t>(p[0] << 8 | p[1])
                      : static_cast<uint16_t>(p[1] << 8 | p[0]);
  }
  uint32_t u32() {
    const uint32_t a = u16(), b = u16();
    return big_endian ? (a << 16 | b) : (b << 16 | a);
  }
};

bool has_long_length(const char vr[2]) {
  static const char* const kLong[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                      "SV", "UC", "UN", "UR", "UT", "UV"};
  for (const char* l : kLong)
    if (vr[0] == l[0] && vr[1] == l[1]) return true;
  return false;
}

// The value representations of PS3.5 table 6.2-1 (GDCM aborts on others in the meta group).
bool is_vr(const char vr[2]) {
  static const char* const kVrs[] = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO",
                                     "LT", "OB", "OD", "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ",
                                     "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"};
  for (const char* v : kVrs)
    if (vr[0] == v[0] && vr[1] == v[1]) return true;
  return false;
}

struct WalkResult {
  std::string error;
  std::string transfer_syntax;  // from the meta group
  uint64_t meta_group_end = 0;  // from (0002,0000), when present
  size_t meta_group_length_at = 0;  // the byte offset of (0002,0000)'s value, 0 when absent
  size_t transfer_syntax_at = 0, transfer_syntax_end = 0;  // (0002,0010) from its tag to its value's end
  bool number_of_frames = false;
  bool frame_increment_pointer = false;
  bool pixel_data = false;  // (7FE0,0008/0009/0010) at the top level
};

bool starts_with_item(const Cursor& c, uint32_t length) {
  if (length < 8 || !c.has(4)) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(c.bytes.data() + c.offset);
  return c.big_endian ? (p[0] == 0xFF && p[1] == 0xFE && p[2] == 0xE0 && p[3] == 0x00)
                      : (p[0] == 0xFE && p[1] == 0xFF && p[2] == 0x00 && p[3] == 0xE0);
}

constexpr int kMaxNesting = 64;

// (0028,xxxx) attributes of the image pixel module that GDCM's image reader takes as US:
// samples per pixel, image dimensions (retired), planar configuration, rows, columns, bits
// allocated, bits stored, high bit, pixel representation.
bool is_us_image_attribute(uint16_t element) {
  switch (element) {
    case 0x0002: case 0x0005: case 0x0006: case 0x0010: case 0x0011:
    case 0x0100: case 0x0101: case 0x0102: case 0x0103:
      return true;
    default:
      return false;
  }
}

bool is_jpeg_syntax(const std::string& ts) {  // the IJG-decoded ones: baseline, extended, lossless
  return ts == "1.2.840.10008.1.2.4.50" || ts == "1.2.840.10008.1.2.4.51" || ts == "1.2.840.10008.1.2.4.57" ||
         ts == "1.2.840.10008.1.2.4.70";
}

// The header of a JPEG stream, up to its first scan, as libjpeg reads it. GDCM's JPEG codecs
// abort the process (an assertion) when libjpeg warns while reading it, and on colour layouts
// other than 1 or 3 components; those are refused here. Returns the problem, or empty (also
// when the header continues past this fragment: not judged).
std::string check_jpeg_header(std::string_view jpeg) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(jpeg[i]); };
  if (jpeg.size() < 4 || byte(0) != 0xFF || byte(1) != 0xD8) return "a JPEG fragment that does not start with SOI";
  size_t i = 2;
  while (i + 4 <= jpeg.size()) {
    if (byte(i) != 0xFF)
      return fmt::format("stray bytes before a JPEG marker at byte {} of the stream (libjpeg warns, and GDCM's "
                         "codec aborts on warnings)", i);
    const unsigned char marker = byte(i + 1);
    if (marker == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (marker == 0x00 || marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01)
      return fmt::format("an unexpected JPEG marker 0x{:02X} in the stream header", marker);
    const size_t length = static_cast<size_t>(byte(i + 2)) << 8 | byte(i + 3);
    if (length < 2) return "a JPEG marker segment with a length below 2";
    if (i + 2 + length > jpeg.size()) return {};  // continues in the next fragment
    const bool frame = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (frame) {
      if (length < 8) return "a JPEG frame header too short";
      const unsigned precision = byte(i + 4);  // GDCM's codec asserts (aborts) on other sample precisions
      if (precision != 8 && precision != 12 && precision != 16)
        return fmt::format("a JPEG frame of {} bits per sample; expected 8, 12 or 16", precision);
      const unsigned components = byte(i + 9);
      if (components != 1 && components != 3)
        return fmt::format("a JPEG frame with {} components; expected 1 (grey) or 3 (colour)", components);
    }
    if (marker == 0xE0 && length >= 16 && jpeg.compare(i + 4, 5, std::string_view("JFIF\0", 5)) == 0 && byte(i + 9) != 1)
      return fmt::format("a JFIF segment of version {}.{}; libjpeg warns on versions other than 1.x (and GDCM's "
                         "codec aborts on warnings)", byte(i + 9), byte(i + 10));
    if (marker == 0xEE && length >= 14 && jpeg.compare(i + 4, 5, "Adobe") == 0 && byte(i + 15) > 2)
      return fmt::format("an Adobe JPEG segment with colour transform {}; expected 0, 1 or 2", byte(i + 15));
    if (marker == 0xDA || marker == 0xD9) return {};  // the first scan: the header is over
    i += 2 + length;
  }
  return {};
}

// Walks elements from the cursor to `end`. Top-level tags of interest are noted. The values of
// sequences and items with a defined length are walked too (`nesting` deep), so that no length
// anywhere exceeds its container: GDCM allocates whatever a length declares, and aborts on
// item tags where elements belong. `sequence_value`: the range holds items, not elements.
void walk(Cursor& c, size_t end, bool explicit_vr, WalkResult& result, bool meta_only,
          bool sequence_value = false, int nesting = 0) {
  if (nesting > kMaxNesting) {
    result.error = fmt::format("sequences nested more than {} deep", kMaxNesting);
    return;
  }
  // Undefined-length sequences, items and encapsulated pixel data currently open; true for
  // pixel data, whose items are compressed fragments rather than elements.
  std::vector<bool> open;
  int fragments = 0;  // items seen inside encapsulated pixel data (the first is the offset table)
  while (c.offset < end) {
    const size_t depth = open.size();
    const size_t start = c.offset;
    if (!c.has(8) || end - c.offset < 8) {
      result.error = fmt::format("truncated inside an element header at byte {}", start);
      return;
    }
    const uint16_t group = c.u16();
    const uint16_t element = c.u16();
    if (meta_only && group != 0x0002) {
      c.offset = start;
      return;
    }
    uint32_t length = 0;
    char vr[2] = {0, 0};
    bool is_item = false;
    if (group == 0xFFFE) {  // item and delimiters carry no VR
      if (depth == 0 && !sequence_value && !meta_only) {  // GDCM asserts (aborts the process) on these
        result.error = fmt::format("an item or delimiter tag (FFFE,{:04X}) at byte {} outside any sequence",
                                   element, start);
        return;
      }
      if (element != 0xE000 && element != 0xE00D && element != 0xE0DD) {  // GDCM then guesses (see tests/fuzz)
        result.error = fmt::format("an unknown item tag (FFFE,{:04X}) at byte {}; expected (FFFE,E000), (FFFE,E00D) "
                                   "or (FFFE,E0DD)", element, start);
        return;
      }
      if (element == 0xE00D && !open.empty() && open.back()) {  // pixel data holds fragments, not items
        result.error = fmt::format("an item delimiter (FFFE,E00D) at byte {} inside encapsulated pixel data", start);
        return;
      }
      length = c.u32();
      if (element == 0xE00D || element == 0xE0DD) {
        if (length != 0) {  // PS3.5 7.5; GDCM reads such a delimiter's "value" (gigabytes, see tests/fuzz)
          result.error = fmt::format("a delimiter (FFFE,{:04X}) at byte {} declares length {}; delimiters have length 0",
                                     element, start, length);
          return;
        }
        if (!open.empty()) open.pop_back();
        continue;
      }
      if (element == 0xE000 && length == kUndefinedLength) {
        open.push_back(false);
        continue;
      }
      is_item = element == 0xE000 && (open.empty() || !open.back());  // not a pixel-data fragment
      if (element == 0xE000 && !open.empty() && open.back() && ++fragments == 2 &&
          is_jpeg_syntax(result.transfer_syntax) && c.has(length) && length <= end - c.offset) {
        // The first fragment after the offset table starts the first frame's JPEG stream.
        if (const std::string problem = check_jpeg_header(c.bytes.substr(c.offset, length)); !problem.empty()) {
          result.error = fmt::format("pixel data at byte {}: {}", start, problem);
          return;
        }
      }
    } else if (explicit_vr) {
      std::memcpy(vr, c.bytes.data() + c.offset, 2);
      c.offset += 2;
      if (!is_vr(vr)) {
        result.error = fmt::format("element ({:04X},{:04X}) at byte {} has no valid VR", group,
                                   element, start);
        return;
      }
      if (has_long_length(vr)) {
        if (!c.has(6)) {
          result.error = fmt::format("truncated inside element ({:04X},{:04X})", group, element);
          return;
        }
        c.offset += 2;
        length = c.u32();
      } else {
        length = c.u16();
      }
    } else {
      length = c.u32();
    }
    if (nesting == 0 && depth == 0 && group == 0x7FE0 && (element == 0x0008 || element == 0x0009 || element == 0x0010))
      result.pixel_data = true;
    if (nesting == 0 && depth == 0 && group == 0x0028 && element == 0x0008) result.number_of_frames = true;
    if (nesting == 0 && depth == 0 && group == 0x0028 && element == 0x0009) result.frame_increment_pointer = true;
    if (length == kUndefinedLength) {  // a sequence or encapsulated pixel data: its items follow
      const bool is_pixel_data_tag = group == 0x7FE0 && element == 0x0010;
      const bool sequence = vr[0] == 'S' && vr[1] == 'Q', unknown = vr[0] == 'U' && vr[1] == 'N';
      const bool ob_ow = vr[0] == 'O' && (vr[1] == 'B' || vr[1] == 'W');
      // GDCM asserts on anything else: sequences and UN anywhere, OB/OW/UN for encapsulated pixel data.
      if (explicit_vr && group != 0xFFFE && (is_pixel_data_tag ? !(ob_ow || unknown) : !(sequence || unknown))) {
        result.error = fmt::format("element ({:04X},{:04X}) at byte {} has an undefined length with VR {}{}; "
                                   "expected SQ or UN, or OB/OW for pixel data",
                                   group, element, start, vr[0], vr[1]);
        return;
      }
      const bool pixel_data = is_pixel_data_tag || (explicit_vr && vr[0] == 'O' && (vr[1] == 'B' || vr[1] == 'W'));
      open.push_back(pixel_data);
      continue;
    }
    if (!c.has(length) || length > end - c.offset) {
      result.error = fmt::format("truncated: element ({:04X},{:04X}) at byte {} declares {} "
                                 "bytes but its {} ends {} bytes later",
                                 group, element, start, length, nesting == 0 ? "file" : "sequence",
                                 std::min(end, c.bytes.size()) - c.offset);
      return;
    }
    if (group == 0x0002 && element == 0x0000 && length == 4) {
      Cursor value = c;
      result.meta_group_end = c.offset + 4 + value.u32();
      result.meta_group_length_at = c.offset;
    }
    // GDCM reads the image's US attributes through gdcm::Attribute, which asserts (aborts the
    // process) when an explicit VR says otherwise.
    if (explicit_vr && nesting == 0 && depth == 0 && group == 0x0028 && is_us_image_attribute(element) &&
        !(vr[0] == 'U' && vr[1] == 'S')) {
      result.error = fmt::format("element (0028,{:04X}) at byte {} has VR {}{}; expected US", element, start,
                                 vr[0], vr[1]);
      return;
    }
    // GDCM asserts that a sequence item's elements add up to an even length; DICOM values have
    // even lengths.
    const bool inside_item = (nesting > 0 && !sequence_value) || (!open.empty() && !open.back());
    if (group != 0xFFFE && inside_item && length != kUndefinedLength && length % 2 != 0) {
      result.error = fmt::format("element ({:04X},{:04X}) at byte {} inside a sequence item has the odd length {}; "
                                 "DICOM values have even lengths",
                                 group, element, start, length);
      return;
    }
    if (nesting == 0 && depth == 0 && group == 0x0028 && length == 2) {  // values GDCM asserts on
      Cursor value = c;
      const uint16_t v = value.u16();
      if (element == 0x0002 && v != 1 && v != 3 && v != 4) {
        result.error = fmt::format("Samples per Pixel (0028,0002) is {}; expected 1, 3 or 4", v);
        return;
      }
      if (element == 0x0100 && v != 1 && (v == 0 || v % 8 != 0 || v > 64)) {
        result.error = fmt::format("Bits Allocated (0028,0100) is {}; expected 1 or a multiple of 8 up to 64", v);
        return;
      }
      if (element == 0x0100 && is_jpeg_syntax(result.transfer_syntax) && v != 8 && v != 16) {  // GDCM asserts
        result.error = fmt::format("Bits Allocated (0028,0100) is {} with JPEG pixel data; expected 8 or 16", v);
        return;
      }
      if (element == 0x0006 && v > 1) {
        result.error = fmt::format("Planar Configuration (0028,0006) is {}; expected 0 or 1", v);
        return;
      }
    }
    if (group == 0x0002 && element == 0x0010) {
      std::string uid(c.bytes.substr(c.offset, length));
      while (!uid.empty() && (uid.back() == '\0' || uid.back() == ' ')) uid.pop_back();
      result.transfer_syntax = uid;
      result.transfer_syntax_at = start;
      result.transfer_syntax_end = c.offset + length;
    }
    const bool is_sequence = !meta_only && !is_item &&
                             ((explicit_vr && vr[0] == 'S' && vr[1] == 'Q') || (!explicit_vr && starts_with_item(c, length)));
    if (is_item || is_sequence) {  // walk the value: an item's elements, or a sequence's items
      Cursor inner = c;
      walk(inner, c.offset + length, explicit_vr, result, false, /*sequence_value=*/is_sequence, nesting + 1);
      if (!result.error.empty()) return;
    }
    c.offset += length;
  }
  if (!open.empty() && !meta_only)
    result.error = "truncated: a sequence or encapsulated pixel data is not closed";
}

// Raw deflate (RFC 1951, no zlib header), as DICOM's deflated transfer syntax stores the data
// set. Bounded, so a small file cannot expand without limit.
std::string inflate_raw(std::string_view in, std::string& out) {
  constexpr size_t kMaxInflated = size_t{1} << 30;
  z_stream z{};
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return "zlib could not start";
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(std::min<size_t>(in.size(), UINT32_MAX));
  char buffer[1 << 16];
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(buffer);
    z.avail_out = sizeof buffer;
    rc = inflate(&z, Z_NO_FLUSH);
    out.append(buffer, sizeof buffer - z.avail_out);
    if (out.size() > kMaxInflated) {
      inflateEnd(&z);
      return "inflates to more than 1 GiB";
    }
    if (rc == Z_BUF_ERROR && z.avail_in == 0) break;  // input ended before the stream did
  }
  inflateEnd(&z);
  if (rc != Z_STREAM_END) return "the compressed stream is damaged or truncated";
  return {};
}

}  // namespace

namespace {

constexpr const char* kImplicitLittleEndian = "1.2.840.10008.1.2";

std::string check_structure(std::string_view bytes, StructureCheck& check) {
  if (bytes.size() < 132 || bytes.substr(128, 4) != "DICM")
    return "is not a DICOM Part 10 file (no 128-byte preamble followed by 'DICM')";
  Cursor c{bytes, 132, false};
  WalkResult result;
  walk(c, bytes.size(), /*explicit_vr=*/true, result, /*meta_only=*/true);
  if (!result.error.empty()) return "file meta information: " + result.error;
  if (result.meta_group_end > bytes.size())
    return fmt::format("truncated: the file meta information declares {} bytes but the file "
                       "has {}", result.meta_group_end, bytes.size());
  if (c.offset >= bytes.size()) return "has no data set after the file meta information";

  const std::string& ts = result.transfer_syntax;
  check.transfer_syntax = ts;
  if (ts == "1.2.840.10008.1.2.1.99") {  // deflated explicit VR little endian: walk the inflated data set
    std::string inflated;
    if (const std::string problem = inflate_raw(bytes.substr(c.offset), inflated); !problem.empty())
      return "deflated data set: " + problem;
    Cursor d{inflated, 0, false};
    WalkResult data_set;
    walk(d, inflated.size(), /*explicit_vr=*/true, data_set, /*meta_only=*/false);
    if (!data_set.error.empty()) return "deflated data set: " + data_set.error;
    return data_set.pixel_data ? std::string() : "has no pixel data (7FE0,0010); expected a DICOM image";
  }
  bool explicit_vr = ts != kImplicitLittleEndian;
  c.big_endian = ts == "1.2.840.10008.1.2.2";
  // Some writers encode the data set implicitly whatever the header says (pydicom and GDCM both
  // accept that): believe the first element's bytes.
  if (explicit_vr && c.has(6) && !is_vr(bytes.data() + c.offset + 4)) {
    explicit_vr = false;
    check.implicit_vr_mislabelled = !c.big_endian && result.transfer_syntax_end != 0;
  }
  walk(c, bytes.size(), explicit_vr, result, /*meta_only=*/false);
  if (!result.error.empty()) return result.error;
  // GDCM's image reader aborts (an assertion) on some data sets without pixel data.
  if (!result.pixel_data) return "has no pixel data (7FE0,0010); expected a DICOM image";
  if (result.frame_increment_pointer && !result.number_of_frames)
    return "has a Frame Increment Pointer (0028,0009) but no Number of Frames (0028,0008); "
           "expected both or neither";
  return {};
}

}  // namespace

StructureCheck check_dicom_structure(std::string_view bytes) {
  StructureCheck check;
  check.problem = check_structure(bytes, check);
  return check;
}

std::string relabel_as_implicit_vr(std::string_view bytes) {
  Cursor c{bytes, 132, false};
  WalkResult meta;
  walk(c, bytes.size(), /*explicit_vr=*/true, meta, /*meta_only=*/true);
  if (!meta.error.empty() || meta.transfer_syntax_end == 0)
    throw std::logic_error("relabel_as_implicit_vr: the file meta information has no transfer syntax");
  // (0002,0010) UI, a 16-bit length, the UID padded with NUL to an even length.
  std::string element("\x02\x00\x10\x00UI", 6);
  const std::string uid = std::string(kImplicitLittleEndian) + '\0';
  element += static_cast<char>(uid.size() & 0xFF);
  element += static_cast<char>(uid.size() >> 8);
  element += uid;
  std::string out(bytes.substr(0, meta.transfer_syntax_at));
  out += element;
  out += bytes.substr(meta.transfer_syntax_end);
  if (meta.meta_group_length_at != 0) {
    const int64_t growth = static_cast<int64_t>(element.size()) -
                           static_cast<int64_t>(meta.transfer_syntax_end - meta.transfer_syntax_at);
    Cursor value{bytes, meta.meta_group_length_at, false};
    const auto group_length = static_cast<uint32_t>(value.u32() + growth);
    const size_t at = meta.meta_group_length_at < meta.transfer_syntax_at ? meta.meta_group_length_at
                                                                           : meta.meta_group_length_at + growth;
    for (int i = 0; i < 4; ++i) out[at + i] = static_cast<char>(group_length >> (8 * i) & 0xFF);
  }
  return out;
}

}  // namespace pneumo::data::detail
