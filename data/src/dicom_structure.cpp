#include "dicom_structure.h"

#include <cstdint>
#include <algorithm>
#include <cstring>

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

bool is_vr(const char vr[2]) {
  return vr[0] >= 'A' && vr[0] <= 'Z' && vr[1] >= 'A' && vr[1] <= 'Z';
}

struct WalkResult {
  std::string error;
  std::string transfer_syntax;  // from the meta group
  uint64_t meta_group_end = 0;  // from (0002,0000), when present
  bool number_of_frames = false;
  bool frame_increment_pointer = false;
};

// Walks elements from the cursor to `end`. Top-level tags of interest are noted.
void walk(Cursor& c, size_t end, bool explicit_vr, WalkResult& result, bool meta_only) {
  int depth = 0;  // undefined-length sequences/items currently open
  while (c.offset < end) {
    const size_t start = c.offset;
    if (!c.has(8)) {
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
    if (group == 0xFFFE) {  // item and delimiters carry no VR
      if (depth == 0 && !meta_only) {  // GDCM asserts (aborts the process) on these
        result.error = fmt::format("an item or delimiter tag (FFFE,{:04X}) at byte {} outside any sequence",
                                   element, start);
        return;
      }
      length = c.u32();
      if (element == 0xE00D || element == 0xE0DD) {
        if (depth > 0) --depth;
        continue;
      }
      if (element == 0xE000 && length == kUndefinedLength) {
        ++depth;
        continue;
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
    if (depth == 0 && group == 0x0028 && element == 0x0008) result.number_of_frames = true;
    if (depth == 0 && group == 0x0028 && element == 0x0009) result.frame_increment_pointer = true;
    if (length == kUndefinedLength) {
      ++depth;  // a sequence or encapsulated pixel data: its items follow in the stream
      continue;
    }
    if (!c.has(length)) {
      result.error = fmt::format("truncated: element ({:04X},{:04X}) at byte {} declares {} "
                                 "bytes but the file ends {} bytes later",
                                 group, element, start, length, c.bytes.size() - c.offset);
      return;
    }
    if (group == 0x0002 && element == 0x0000 && length == 4) {
      Cursor value = c;
      result.meta_group_end = c.offset + 4 + value.u32();
    }
    if (group == 0x0002 && element == 0x0010) {
      std::string uid(c.bytes.substr(c.offset, length));
      while (!uid.empty() && (uid.back() == '\0' || uid.back() == ' ')) uid.pop_back();
      result.transfer_syntax = uid;
    }
    c.offset += length;
  }
  if (depth > 0 && !meta_only)
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

std::string check_dicom_structure(std::string_view bytes) {
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
  if (ts == "1.2.840.10008.1.2.1.99") {  // deflated explicit VR little endian: walk the inflated data set
    std::string inflated;
    if (const std::string problem = inflate_raw(bytes.substr(c.offset), inflated); !problem.empty())
      return "deflated data set: " + problem;
    Cursor d{inflated, 0, false};
    WalkResult data_set;
    walk(d, inflated.size(), /*explicit_vr=*/true, data_set, /*meta_only=*/false);
    return data_set.error.empty() ? std::string() : "deflated data set: " + data_set.error;
  }
  bool explicit_vr = ts != "1.2.840.10008.1.2";
  c.big_endian = ts == "1.2.840.10008.1.2.2";
  // Some writers encode the data set implicitly whatever the header says (GDCM and pydicom
  // both accept that): believe the first element's bytes.
  if (explicit_vr && c.has(6)) explicit_vr = is_vr(bytes.data() + c.offset + 4);
  walk(c, bytes.size(), explicit_vr, result, /*meta_only=*/false);
  if (!result.error.empty()) return result.error;
  if (result.frame_increment_pointer && !result.number_of_frames)
    return "has a Frame Increment Pointer (0028,0009) but no Number of Frames (0028,0008); "
           "expected both or neither";
  return {};
}

}  // namespace pneumo::data::detail
