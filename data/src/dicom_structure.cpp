#include "dicom_structure.h"

#include "j2k_header.h"

#include <algorithm>
#include <string_view>
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
  int rows = 0, columns = 0, samples_per_pixel = 0;  // (0028,0010/0011/0002), 0 when absent
  int bits_allocated = 0, bits_stored = 0;           // (0028,0100/0101), 0 when absent
  std::string photometric;  // (0028,0004) without its padding
  std::vector<std::string> sop_classes;  // (0002,0002) and (0008,0016), without their padding
};

bool starts_with_item(const Cursor& c, uint32_t length) {
  if (length < 8 || !c.has(4)) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(c.bytes.data() + c.offset);
  return c.big_endian ? (p[0] == 0xFF && p[1] == 0xFE && p[2] == 0xE0 && p[3] == 0x00)
                      : (p[0] == 0xFE && p[1] == 0xFF && p[2] == 0x00 && p[3] == 0xE0);
}

constexpr int kMaxNesting = 64;

// Attributes GDCM's image reader takes through gdcm::Attribute, which asserts (aborts the
// process) when an explicit VR says otherwise: the image pixel module's US attributes (samples
// per pixel, image dimensions (retired), planar configuration, rows, columns, bits allocated,
// bits stored, high bit, pixel representation) and those a scan of every VR on every element
// of SIIM and pydicom files found (tools/fuzz/dicom_mutations.py, 2026-12-04). The VR they
// must have, or null.
const char* required_vr(uint16_t group, uint16_t element) {
  if (group >= 0x6000 && group <= 0x601E && group % 2 == 0) {  // overlay planes (a VR scan found these)
    switch (element) {
      case 0x0010: case 0x0011: case 0x0051: case 0x0100: case 0x0102: return "US";
      case 0x0050: return "SS";  // Overlay Origin
      case 0x0015: return "IS";  // Number of Frames in Overlay
      default: return nullptr;
    }
  }
  const uint32_t tag = static_cast<uint32_t>(group) << 16 | element;
  switch (tag) {
    case 0x00280002: case 0x00280005: case 0x00280006: case 0x00280010: case 0x00280011:
    case 0x00280100: case 0x00280101: case 0x00280102: case 0x00280103:
      return "US";
    case 0x00180088:  // Spacing Between Slices
    case 0x00181164:  // Imager Pixel Spacing (CR, DX, MG: GDCM's spacing by SOP class)
    case 0x00182010:  // Nominal Scanned Pixel Spacing (Secondary Capture; found by fuzz_upload)
    case 0x00200032:  // Image Position (Patient)
    case 0x00200037:  // Image Orientation (Patient)
    case 0x00280030:  // Pixel Spacing
    case 0x00281052:  // Rescale Intercept
    case 0x00281053:  // Rescale Slope
      return "DS";
    case 0x00280008: return "IS";  // Number of Frames
    case 0x00280009: return "AT";  // Frame Increment Pointer
    case 0x00282110: return "CS";  // Lossy Image Compression
    case 0x3004000C: return "DS";  // Grid Frame Offset Vector (RT Dose: GDCM's Z spacing)
    default: return nullptr;
  }
}

constexpr const char* kRleLossless = "1.2.840.10008.1.2.5";

// A DS value (PS3.5 6.2): a decimal number, optionally signed, with a fraction and an exponent,
// space-padded (and NUL-padded, as some writers do).
bool is_decimal_string(std::string_view s) {
  while (!s.empty() && (s.front() == ' ')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.remove_suffix(1);
  size_t i = 0;
  const auto digits = [&] {
    const size_t from = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    return i - from;
  };
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  size_t mantissa = digits();
  if (i < s.size() && s[i] == '.') {
    ++i;
    mantissa += digits();
  }
  if (mantissa == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (digits() == 0) return false;
  }
  return i == s.size();
}

bool is_jpeg_ls_syntax(const std::string& ts) { return ts == "1.2.840.10008.1.2.4.80" || ts == "1.2.840.10008.1.2.4.81"; }

// A UI value without its padding: NUL or space at the end, as the standard pads it, and with
// `leading`, at the start too.
std::string unpadded_uid(std::string_view uid, bool leading = false) {
  const auto padding = [](char c) { return c == '\0' || c == ' '; };
  while (!uid.empty() && padding(uid.back())) uid.remove_suffix(1);
  while (leading && !uid.empty() && padding(uid.front())) uid.remove_prefix(1);
  return std::string(uid);
}

// The transfer syntaxes GDCM decodes and pneumo reads (PS3.5 A.4 and PS3.6 table A-1).
bool is_known_transfer_syntax(const std::string& ts) {
  static const char* const kKnown[] = {
      "1.2.840.10008.1.2",       "1.2.840.10008.1.2.1",     "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
      "1.2.840.10008.1.2.4.50",  "1.2.840.10008.1.2.4.51",  "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
      "1.2.840.10008.1.2.4.80",  "1.2.840.10008.1.2.4.81",  "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
      "1.2.840.10008.1.2.4.92",  "1.2.840.10008.1.2.4.93",  "1.2.840.10008.1.2.5"};
  for (const char* known : kKnown)
    if (ts == known) return true;
  return false;
}

bool is_jpeg_syntax(const std::string& ts) {  // the IJG-decoded ones: baseline, extended, lossless
  return ts == "1.2.840.10008.1.2.4.50" || ts == "1.2.840.10008.1.2.4.51" || ts == "1.2.840.10008.1.2.4.57" ||
         ts == "1.2.840.10008.1.2.4.70";
}

// The header of a JPEG stream, up to its first scan, as libjpeg reads it. GDCM's JPEG codecs
// abort the process (an assertion) when libjpeg warns while reading it, and on colour layouts
// other than 1 or 3 components; those are refused here. Returns the problem, or empty (also
// when the header continues past this fragment: not judged).
std::string check_jpeg_header(std::string_view jpeg, bool jpeg_ls, int rows, int columns, int samples,
                              int bits_allocated) {
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
    if (frame || marker == 0xF7) {  // SOFn, or JPEG-LS's SOF55
      if (length < 8) return "a JPEG frame header too short";
      const unsigned precision = byte(i + 4);  // GDCM's codec asserts (aborts) on other sample precisions
      if (!jpeg_ls && precision != 8 && precision != 12 && precision != 16)
        return fmt::format("a JPEG frame of {} bits per sample; expected 8, 12 or 16", precision);
      if (jpeg_ls && (precision < 2 || precision > 16))
        return fmt::format("a JPEG-LS frame of {} bits per sample; expected 2 to 16", precision);
      // GDCM's JPEG-LS path asserts when the samples do not fill the declared bytes.
      if (jpeg_ls && bits_allocated != 0 && bits_allocated != (precision <= 8 ? 8 : 16))
        return fmt::format("a JPEG-LS frame of {} bits per sample where Bits Allocated (0028,0100) is {}; expected {}",
                           precision, bits_allocated, precision <= 8 ? 8 : 16);
      const unsigned components = byte(i + 9);
      if (components != 1 && components != 3)
        return fmt::format("a JPEG frame with {} components; expected 1 (grey) or 3 (colour)", components);
      // GDCM decodes into a buffer sized from the DICOM header and asserts when the stream's frame
      // is larger (JPEG-LS; dicom_mutations.py found it); any difference is a damaged file.
      const int height = byte(i + 5) << 8 | byte(i + 6), width = byte(i + 7) << 8 | byte(i + 8);
      if ((rows > 0 && height != 0 && height != rows) || (columns > 0 && width != columns))
        return fmt::format("a JPEG frame of {}x{} where the DICOM header says {}x{} (columns x rows)", width, height,
                           columns, rows);
      if (samples > 0 && static_cast<int>(components) != samples)
        return fmt::format("a JPEG frame with {} components where the DICOM header says {} samples per pixel",
                           components, samples);
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

// The header of one RLE frame (PS3.5 G.5): 1 to 15 segments, as many as the samples' bytes
// (Samples per Pixel x Bits Allocated / 8, when the header says), the first at byte 64, each
// after the one before, all inside the fragment.
std::string check_rle_header(std::string_view frame, int samples, int bits_allocated) {
  if (frame.size() <= 64) return fmt::format("{} bytes, no data after the 64-byte RLE header", frame.size());
  const auto u32 = [&](size_t i) {
    uint32_t v = 0;
    for (int k = 3; k >= 0; --k) v = v << 8 | static_cast<unsigned char>(frame[i + static_cast<size_t>(k)]);
    return v;
  };
  const uint32_t segments = u32(0);
  if (segments < 1 || segments > 15) return fmt::format("{} segments; expected 1 to 15", segments);
  if (samples > 0 && bits_allocated >= 8 && segments != static_cast<uint32_t>(samples * bits_allocated / 8))
    return fmt::format("{} segments where Samples per Pixel {} and Bits Allocated {} make {}", segments, samples,
                       bits_allocated, samples * bits_allocated / 8);
  if (u32(4) != 64) return fmt::format("the first segment at byte {}; expected 64", u32(4));
  for (uint32_t s = 1; s < segments; ++s) {
    const uint32_t at = u32(4 + 4 * s), before = u32(4 * s);
    if (at <= before || at >= frame.size())
      return fmt::format("segment {} at byte {} (after byte {}, in a frame of {} bytes)", s + 1, at, before,
                         frame.size());
  }
  return {};
}

// One element header as the walk reads it.
struct Element {
  size_t start = 0;  // byte offset of its tag
  uint16_t group = 0, element = 0;
  char vr[2] = {0, 0};  // explicit VR only
  uint32_t length = 0;
  bool is_item = false;  // a sequence item (not a pixel-data fragment)

  bool is(uint16_t g, uint16_t e) const { return group == g && element == e; }
  bool vr_is(const char* v) const { return vr[0] == v[0] && vr[1] == v[1]; }
};

// Values of the image pixel module GDCM asserts on (aborting the process) when they are not
// what DICOM allows; each is refused with the rule's message.
enum class Syntaxes { kAll, kJpeg, kJpeg2000OrLs, kRle };

bool is_jpeg2000_or_ls_syntax(const std::string& ts) { return is_j2k_syntax(ts) || is_jpeg_ls_syntax(ts); }

struct ValueRule {
  uint16_t element;    // (0028,element), US
  Syntaxes syntaxes;   // the transfer syntaxes it applies to
  bool (*accepts)(uint16_t value);
  const char* message;  // with {} for the value
};

const ValueRule kPixelModuleRules[] = {
    {0x0002, Syntaxes::kAll, [](uint16_t v) { return v == 1 || v == 3 || v == 4; },
     "Samples per Pixel (0028,0002) is {}; expected 1, 3 or 4"},
    {0x0100, Syntaxes::kAll, [](uint16_t v) { return v == 1 || (v != 0 && v % 8 == 0 && v <= 64); },
     "Bits Allocated (0028,0100) is {}; expected 1 or a multiple of 8 up to 64"},
    {0x0100, Syntaxes::kJpeg, [](uint16_t v) { return v == 8 || v == 16; },
     "Bits Allocated (0028,0100) is {} with JPEG pixel data; expected 8 or 16"},
    // GDCM's PixelFormat asserts on Bits Allocated 1 with JPEG 2000 (dicom_mutations.py found it).
    {0x0100, Syntaxes::kJpeg2000OrLs, [](uint16_t v) { return v == 8 || v == 16; },
     "Bits Allocated (0028,0100) is {} with JPEG 2000 or JPEG-LS pixel data; expected 8 or 16"},
    // GDCM's RLE codec asserts on other sizes.
    {0x0100, Syntaxes::kRle, [](uint16_t v) { return v == 8 || v == 16 || v == 32; },
     "Bits Allocated (0028,0100) is {} with RLE pixel data; expected 8, 16 or 32"},
    {0x0006, Syntaxes::kAll, [](uint16_t v) { return v <= 1; }, "Planar Configuration (0028,0006) is {}; expected 0 or 1"},
};

// The Photometric Interpretations pneumo decodes (PS3.3 C.7.6.3.1.2). GDCM asserts (aborts the
// process) on PALETTE COLOR without its palette (tools/fuzz/dicom_mutations.py found it), and
// pneumo would read a palette image's indices as grey levels anyway.
bool is_supported_photometric(const std::string& p) {
  static const char* const kSupported[] = {"MONOCHROME1", "MONOCHROME2", "RGB",     "YBR_FULL",
                                           "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT"};
  for (const char* s : kSupported)
    if (p == s) return true;
  return false;
}

// The SOP classes whose geometry GDCM reads from the shared and per-frame functional groups
// (ImageHelper: spacing, origin, orientation), checking that nested structure with assertions
// (fuzz_dicom, 2026-12-04, after 542,329 executions: a Segmentation from pydicom's liver files
// without a usable Image Orientation (Patient) made ComputeZSpacingFromIPP assert). None is a
// chest radiograph; their name with its article, or null.
const char* functional_group_class(const std::string& uid) {
  if (uid == "1.2.840.10008.5.1.4.1.1.2.1") return "an Enhanced CT Image";
  if (uid == "1.2.840.10008.5.1.4.1.1.4.1") return "an Enhanced MR Image";
  if (uid == "1.2.840.10008.5.1.4.1.1.77.1.5.4") return "an Ophthalmic Tomography Image";
  if (uid == "1.2.840.10008.5.1.4.1.1.66.4") return "a Segmentation";
  return nullptr;
}

// What the data set as a whole must be, beyond its elements' structure.
std::string check_data_set(const WalkResult& r) {
  // GDCM's image reader aborts (an assertion) on some data sets without pixel data.
  if (!r.pixel_data) return "has no pixel data (7FE0,0010); expected a DICOM image";
  // Type 1 in the image pixel module. Without them GDCM sizes its buffers from the compressed
  // stream's own header while it reads the file (fuzz_upload: a file without Columns took
  // 2.4 GB and a minute under AddressSanitizer).
  // Type 1 too; GDCM's PixelFormat asserts when Bits Allocated is missing (fuzz_dicom and
  // fuzz_upload, both from a mutated tag).
  if (r.bits_allocated == 0 || r.bits_stored == 0 || r.samples_per_pixel == 0)
    return fmt::format("has no {} (or 0); expected the image pixel module's Samples per Pixel (0028,0002), Bits "
                       "Allocated (0028,0100) and Bits Stored (0028,0101)",
                       r.samples_per_pixel == 0 ? "Samples per Pixel (0028,0002)"
                       : r.bits_allocated == 0  ? "Bits Allocated (0028,0100)"
                                                : "Bits Stored (0028,0101)");
  if (r.rows == 0 || r.columns == 0)
    return fmt::format("has {} Rows (0028,0010) and {} Columns (0028,0011); expected both, above 0",
                       r.rows == 0 ? "no" : std::to_string(r.rows), r.columns == 0 ? "no" : std::to_string(r.columns));
  for (const std::string& sop_class : r.sop_classes)
    if (const char* name = functional_group_class(sop_class))
      return fmt::format("is {} object (SOP Class {}); pneumo reads projection radiographs, not multi-frame "
                         "objects with functional groups",
                         name, sop_class);
  if (r.frame_increment_pointer && !r.number_of_frames)
    return "has a Frame Increment Pointer (0028,0009) but no Number of Frames (0028,0008); "
           "expected both or neither";
  if (!r.photometric.empty() && !is_supported_photometric(r.photometric))
    return fmt::format("has the Photometric Interpretation (0028,0004) '{}'; pneumo reads MONOCHROME1, MONOCHROME2, "
                       "RGB and the YBR ones (chest radiographs are MONOCHROME1/2)",
                       r.photometric);
  // PS3.3 C.7.6.3.1.2. GDCM takes the samples from the photometric interpretation in places and
  // from (0028,0002) in others; its JPEG 2000 codec asserts when they differ.
  const int samples = r.photometric.rfind("MONOCHROME", 0) == 0 ? 1 : 3;
  if (!r.photometric.empty() && r.samples_per_pixel != 0 && r.samples_per_pixel != samples)
    return fmt::format("has {} Samples per Pixel (0028,0002) with the Photometric Interpretation {}; expected {}",
                       r.samples_per_pixel, r.photometric, samples);
  // PS3.5 8.2: YBR_FULL_422 is for native and JPEG pixel data; GDCM's RLE codec asserts on it.
  if (r.photometric == "YBR_FULL_422" && (r.transfer_syntax == kRleLossless || is_jpeg2000_or_ls_syntax(r.transfer_syntax)))
    return fmt::format("has the Photometric Interpretation YBR_FULL_422 with the transfer syntax {}; YBR_FULL_422 is "
                       "for native and JPEG pixel data",
                       r.transfer_syntax);
  if (r.bits_stored != 0 && r.bits_allocated != 0 && r.bits_stored > r.bits_allocated)
    return fmt::format("has Bits Stored (0028,0101) {} above Bits Allocated (0028,0100) {}", r.bits_stored,
                       r.bits_allocated);
  // GDCM clears bits above Bits Stored only in 8- and 16-bit samples and asserts on others.
  if (r.bits_allocated > 16 && r.bits_stored != 0 && r.bits_stored != r.bits_allocated)
    return fmt::format("has Bits Stored (0028,0101) {} in samples of {} bits; pneumo reads samples of more than 16 bits "
                       "only when Bits Stored equals Bits Allocated",
                       r.bits_stored, r.bits_allocated);
  // GDCM's codecs assert that colour samples fill their bits (dicom_mutations.py found it).
  if (r.samples_per_pixel == 3 && r.bits_stored != 0 && r.bits_allocated != 0 && r.bits_stored != r.bits_allocated)
    return fmt::format("has colour samples of {} bits stored in {}; expected Bits Stored (0028,0101) equal to Bits "
                       "Allocated (0028,0100) for colour",
                       r.bits_stored, r.bits_allocated);
  return {};
}

// Walks elements from the cursor to `end`. Top-level tags of interest are noted. The values of
// sequences and items with a defined length are walked too (`nesting` deep), so that no length
// anywhere exceeds its container: GDCM allocates whatever a length declares, and aborts on
// item tags where elements belong. `sequence_value`: the range holds items, not elements.
// Each check names the GDCM failure it prevents.
class Walker {
 public:
  Walker(Cursor& c, size_t end, bool explicit_vr, WalkResult& result, bool meta_only, bool sequence_value, int nesting)
      : c_(c), end_(end), explicit_vr_(explicit_vr), result_(result), meta_only_(meta_only),
        sequence_value_(sequence_value), nesting_(nesting) {}

  void run() {
    if (nesting_ > kMaxNesting) return fail(fmt::format("sequences nested more than {} deep", kMaxNesting));
    while (c_.offset < end_) {
      Element e;
      e.start = c_.offset;
      if (!c_.has(8) || end_ - c_.offset < 8)
        return fail(fmt::format("truncated inside an element header at byte {}", e.start));
      e.group = c_.u16();
      e.element = c_.u16();
      if (meta_only_ && e.group != 0x0002) {
        c_.offset = e.start;
        return;
      }
      if (in_pixel_data() && e.group != 0xFFFE)  // GDCM stops reading there and asserts (fuzz_dicom)
        return fail(fmt::format("element ({:04X},{:04X}) at byte {} inside encapsulated pixel data; expected a "
                                "fragment (FFFE,E000) or the sequence delimiter (FFFE,E0DD)",
                                e.group, e.element, e.start));
      const Next next = e.group == 0xFFFE ? read_item_tag(e) : read_header(e);
      if (next == Next::kStop) return;
      if (next == Next::kNextElement) continue;
      note_top_level(e);
      if (!check_vr(e)) return;
      if (top_level() && e.is(0x0008, 0x0010) && e.length == kUndefinedLength)
        return fail(fmt::format("Recognition Code (0008,0010) at byte {} has an undefined length; expected a short "
                                "text (ACR-NEMA's)",
                                e.start));
      if (e.length == kUndefinedLength) {
        if (!open_undefined(e)) return;
        continue;
      }
      if (!check_value(e)) return;
      if (e.is_item || is_sequence(e)) {  // walk the value: an item's elements, or a sequence's items
        Cursor inner = c_;
        Walker(inner, c_.offset + e.length, explicit_vr_, result_, false, !e.is_item, nesting_ + 1).run();
        if (!result_.error.empty()) return;
      }
      c_.offset += e.length;
    }
    if (!open_.empty() && !meta_only_) fail("truncated: a sequence or encapsulated pixel data is not closed");
  }

 private:
  enum class Next { kValue, kNextElement, kStop };

  void fail(std::string why) { result_.error = std::move(why); }
  bool top_level() const { return nesting_ == 0 && open_.empty(); }
  bool in_pixel_data() const { return !open_.empty() && open_.back(); }

  // Items and delimiters (FFFE,xxxx) carry no VR.
  Next read_item_tag(Element& e) {
    if (open_.empty() && !sequence_value_ && !meta_only_) {  // GDCM asserts (aborts the process) on these
      fail(fmt::format("an item or delimiter tag (FFFE,{:04X}) at byte {} outside any sequence", e.element, e.start));
      return Next::kStop;
    }
    if (e.element != 0xE000 && e.element != 0xE00D && e.element != 0xE0DD) {  // GDCM then guesses (see tests/fuzz)
      fail(fmt::format("an unknown item tag (FFFE,{:04X}) at byte {}; expected (FFFE,E000), (FFFE,E00D) or (FFFE,E0DD)",
                       e.element, e.start));
      return Next::kStop;
    }
    if (e.element == 0xE00D && in_pixel_data()) {  // pixel data holds fragments, not items
      fail(fmt::format("an item delimiter (FFFE,E00D) at byte {} inside encapsulated pixel data", e.start));
      return Next::kStop;
    }
    e.length = c_.u32();
    if (e.element != 0xE000) {  // a delimiter
      if (e.length != 0) {  // PS3.5 7.5; GDCM reads such a delimiter's "value" (gigabytes, see tests/fuzz)
        fail(fmt::format("a delimiter (FFFE,{:04X}) at byte {} declares length {}; delimiters have length 0",
                         e.element, e.start, e.length));
        return Next::kStop;
      }
      if (!open_.empty()) open_.pop_back();
      return Next::kNextElement;
    }
    if (e.length == kUndefinedLength) {
      open_.push_back(false);
      return Next::kNextElement;
    }
    e.is_item = !in_pixel_data();  // else a pixel-data fragment
    if (in_pixel_data() && ++fragments_ >= 2 && !check_frame_start(e)) return Next::kStop;
    if (in_pixel_data() && fragments_ >= 2 && result_.transfer_syntax == kRleLossless && !check_rle_frame(e))
      return Next::kStop;
    return Next::kValue;
  }

  // The first fragment after the offset table starts the first frame's JPEG or JPEG 2000 stream;
  // a later fragment that starts with SOI (JPEG) or SOC (JPEG 2000) starts another frame's. GDCM
  // decodes every frame, so each frame's header is judged, not only the first's (fuzz_dicom found
  // a multi-frame file whose ninth frame had stray bytes before its SOF marker).
  bool check_frame_start(const Element& e) {
    const std::string& ts = result_.transfer_syntax;
    const bool jpeg = is_jpeg_syntax(ts), jpeg_ls = is_jpeg_ls_syntax(ts), j2k = is_j2k_syntax(ts);
    if ((!jpeg && !jpeg_ls && !j2k) || !c_.has(e.length) || e.length > end_ - c_.offset) return true;
    const std::string_view frame = c_.bytes.substr(c_.offset, e.length);
    const bool first = fragments_ == 2;
    const std::string_view start_marker = j2k ? std::string_view("\xFF\x4F", 2) : std::string_view("\xFF\xD8", 2);
    if (!first && frame.substr(0, 2) != start_marker) return true;  // the rest of a frame split over fragments
    const std::string problem =
        j2k ? check_j2k_header(frame, {result_.rows, result_.columns, result_.samples_per_pixel})
            : check_jpeg_header(frame, jpeg_ls, result_.rows, result_.columns, result_.samples_per_pixel,
                                result_.bits_allocated);
    if (!problem.empty()) {
      fail(first ? fmt::format("pixel data at byte {}: {}", e.start, problem)
                 : fmt::format("pixel data at byte {} (fragment {}, a frame's start): {}", e.start, fragments_ - 1,
                               problem));
      return false;
    }
    return true;
  }

  // Each RLE fragment is one frame: its 64-byte header (PS3.5 G.5) gives the segment count and
  // their offsets. GDCM's RLE codec reads past its buffer (SIGSEGV) on offsets that do not fit
  // (dicom_mutations.py found it).
  bool check_rle_frame(const Element& e) {
    if (!c_.has(e.length) || e.length > end_ - c_.offset) return true;  // the length check reports it
    const std::string problem = check_rle_header(c_.bytes.substr(c_.offset, e.length),
                                                 result_.samples_per_pixel, result_.bits_allocated);
    if (problem.empty()) return true;
    fail(fmt::format("RLE fragment at byte {}: {}", e.start, problem));
    return false;
  }

  Next read_header(Element& e) {
    if (!explicit_vr_) {
      e.length = c_.u32();
      return Next::kValue;
    }
    std::memcpy(e.vr, c_.bytes.data() + c_.offset, 2);
    c_.offset += 2;
    if (!is_vr(e.vr)) {
      fail(fmt::format("element ({:04X},{:04X}) at byte {} has no valid VR", e.group, e.element, e.start));
      return Next::kStop;
    }
    if (e.group == 0x0002 && (e.vr_is("SQ") || e.vr_is("UN"))) {  // GDCM's meta reader asserts
      fail(fmt::format("file meta element (0002,{:04X}) at byte {} has VR {}{}; the file meta information has no "
                       "sequences or unknown VRs",
                       e.element, e.start, e.vr[0], e.vr[1]));
      return Next::kStop;
    }
    if (!has_long_length(e.vr)) {
      e.length = c_.u16();
      return Next::kValue;
    }
    if (!c_.has(6)) {
      fail(fmt::format("truncated inside element ({:04X},{:04X})", e.group, e.element));
      return Next::kStop;
    }
    c_.offset += 2;
    e.length = c_.u32();
    return Next::kValue;
  }

  void note_top_level(const Element& e) {
    if (!top_level()) return;
    if (e.group == 0x7FE0 && (e.element == 0x0008 || e.element == 0x0009 || e.element == 0x0010))
      result_.pixel_data = true;
    if (e.is(0x0028, 0x0008)) result_.number_of_frames = true;
    if (e.is(0x0028, 0x0009)) result_.frame_increment_pointer = true;
  }

  // A sequence or encapsulated pixel data of undefined length: its items follow.
  bool open_undefined(const Element& e) {
    const bool is_pixel_data_tag = e.is(0x7FE0, 0x0010);
    const bool ob_ow = e.vr[0] == 'O' && (e.vr[1] == 'B' || e.vr[1] == 'W');
    const bool accepted = is_pixel_data_tag ? ob_ow || e.vr_is("UN") : e.vr_is("SQ") || e.vr_is("UN");
    // GDCM asserts on anything else: sequences and UN anywhere, OB/OW/UN for encapsulated pixel data.
    if (explicit_vr_ && e.group != 0xFFFE && !accepted) {
      fail(fmt::format("element ({:04X},{:04X}) at byte {} has an undefined length with VR {}{}; expected SQ or UN, "
                       "or OB/OW for pixel data",
                       e.group, e.element, e.start, e.vr[0], e.vr[1]));
      return false;
    }
    open_.push_back(is_pixel_data_tag || (explicit_vr_ && ob_ow));
    return true;
  }

  // The VR of an element GDCM reads with a fixed VR (required_vr), whatever its length.
  bool check_vr(const Element& e) {
    if (!explicit_vr_ || !top_level()) return true;
    if (e.is(0x7FE0, 0x0010) && !(e.vr_is("OB") || e.vr_is("OW") || e.vr_is("UN"))) {
      fail(fmt::format("Pixel Data (7FE0,0010) at byte {} has VR {}{}; expected OB or OW", e.start, e.vr[0], e.vr[1]));
      return false;
    }
    const char* vr = required_vr(e.group, e.element);
    if (vr == nullptr) return true;
    const bool us = std::strcmp(vr, "US") == 0;
    // UN (a writer's unknown VR, as in pydicom's rtdose_rle.dcm) GDCM reads by its dictionary,
    // except for the US attributes.
    if (!e.vr_is(vr) && !(e.vr_is("UN") && !us)) {
      fail(fmt::format("element ({:04X},{:04X}) at byte {} has VR {}{}; expected {}", e.group, e.element, e.start,
                       e.vr[0], e.vr[1], vr));
      return false;
    }
    if (us && e.length != 2) {  // gdcm::Attribute asserts on a second value too
      fail(fmt::format("element ({:04X},{:04X}) at byte {} has {} bytes; expected one US value (2 bytes)", e.group,
                       e.element, e.start, e.length));
      return false;
    }
    return true;
  }

  // A value of defined length: it fits its container, and what GDCM asserts on is refused.
  bool check_value(const Element& e) {
    if (!c_.has(e.length) || e.length > end_ - c_.offset) {
      fail(fmt::format("truncated: element ({:04X},{:04X}) at byte {} declares {} bytes but its {} ends {} bytes later",
                       e.group, e.element, e.start, e.length, nesting_ == 0 ? "file" : "sequence",
                       std::min(end_, c_.bytes.size()) - c_.offset));
      return false;
    }
    if (e.is(0x0002, 0x0000) && e.length == 4) {
      Cursor value = c_;
      result_.meta_group_end = c_.offset + 4 + value.u32();
      result_.meta_group_length_at = c_.offset;
    }
    // GDCM asserts that a sequence item's elements add up to an even length; DICOM values have
    // even lengths.
    const bool inside_item = (nesting_ > 0 && !sequence_value_) || (!open_.empty() && !open_.back());
    if (e.group != 0xFFFE && inside_item && e.length % 2 != 0) {
      fail(fmt::format("element ({:04X},{:04X}) at byte {} inside a sequence item has the odd length {}; DICOM values "
                       "have even lengths",
                       e.group, e.element, e.start, e.length));
      return false;
    }
    if (top_level() && e.group == 0x0028 && e.length == 2 && !check_pixel_module_value(e)) return false;
    if (top_level() && e.is(0x0028, 0x0004)) note_photometric(e);
    if (top_level() && e.is(0x0008, 0x0010) && !check_recognition_code(e)) return false;
    if (top_level() && e.is(0x3004, 0x000C) && !check_grid_frame_offsets(e)) return false;
    if (e.is(0x0002, 0x0010)) note_transfer_syntax(e);
    if (e.is(0x0002, 0x0002) || (top_level() && e.is(0x0008, 0x0016))) note_sop_class(e);
    return true;
  }

  // Recognition Code (0008,0010), retired with ACR-NEMA: GDCM takes a data set that has one for
  // ACR-NEMA and asserts that it says so (fuzz_dicom, 2026-12-04: a mutated value).
  bool check_recognition_code(const Element& e) {
    if (e.length == 0) return true;  // GDCM skips an empty one
    const std::string_view value = c_.bytes.substr(c_.offset, e.length);
    for (const std::string_view prefix : {std::string_view("ACR-NEMA"), std::string_view("ACRNEMA"),
                                          std::string_view("MIPS 2.0")})
      if (value.substr(0, prefix.size()) == prefix) return true;
    fail(fmt::format("Recognition Code (0008,0010) at byte {} does not start with ACR-NEMA or ACRNEMA (the only values "
                     "this retired attribute has; {} bytes)",
                     e.start, e.length));
    return false;
  }

  // Grid Frame Offset Vector (3004,000C), RT Dose's frame positions: GDCM takes the Z spacing
  // from its first two values and asserts that there are two (fuzz_dicom, 2026-12-04: a damaged
  // first value of pydicom's rtdose.dcm left GDCM's parse with one). Two or more decimal numbers.
  bool check_grid_frame_offsets(const Element& e) {
    if (e.length == 0) return true;  // GDCM takes an empty one as 1.0
    const std::string_view value = c_.bytes.substr(c_.offset, e.length);
    int count = 0;
    for (size_t start = 0; start <= value.size(); ++count) {
      const size_t end = std::min(value.find('\\', start), value.size());
      if (!is_decimal_string(value.substr(start, end - start))) {
        fail(fmt::format("Grid Frame Offset Vector (3004,000C) at byte {}: value {} is not a decimal number", e.start,
                         count + 1));
        return false;
      }
      start = end + 1;
    }
    if (count >= 2) return true;
    fail(fmt::format("Grid Frame Offset Vector (3004,000C) at byte {} has {} value; expected two or more", e.start,
                     count));
    return false;
  }

  bool check_pixel_module_value(const Element& e) {
    Cursor value = c_;
    const uint16_t v = value.u16();
    if (e.element == 0x0010) result_.rows = v;
    if (e.element == 0x0011) result_.columns = v;
    if (e.element == 0x0002) result_.samples_per_pixel = v;
    if (e.element == 0x0100) result_.bits_allocated = v;
    if (e.element == 0x0101) result_.bits_stored = v;
    for (const ValueRule& rule : kPixelModuleRules) {
      const std::string& ts = result_.transfer_syntax;
      const bool applies = rule.syntaxes == Syntaxes::kAll ||
                           (rule.syntaxes == Syntaxes::kJpeg && is_jpeg_syntax(ts)) ||
                           (rule.syntaxes == Syntaxes::kJpeg2000OrLs && is_jpeg2000_or_ls_syntax(ts)) ||
                           (rule.syntaxes == Syntaxes::kRle && ts == kRleLossless);
      if (rule.element != e.element || !applies) continue;
      if (!rule.accepts(v)) {
        fail(fmt::format(fmt::runtime(rule.message), v));
        return false;
      }
    }
    return true;
  }

  void note_photometric(const Element& e) {
    std::string value(c_.bytes.substr(c_.offset, e.length));
    while (!value.empty() && (value.back() == '\0' || value.back() == ' ')) value.pop_back();
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    result_.photometric = value;
  }

  void note_transfer_syntax(const Element& e) {
    result_.transfer_syntax = unpadded_uid(c_.bytes.substr(c_.offset, e.length));
    result_.transfer_syntax_at = e.start;
    result_.transfer_syntax_end = c_.offset + e.length;
  }

  void note_sop_class(const Element& e) {
    if (!c_.has(e.length)) return;  // the length check reports it
    // SOP classes are refused by name: padding at the start is dropped too, so that it hides none.
    result_.sop_classes.emplace_back(unpadded_uid(c_.bytes.substr(c_.offset, e.length), /*leading=*/true));
  }

  bool is_sequence(const Element& e) const {
    return !meta_only_ && !e.is_item && ((explicit_vr_ && e.vr_is("SQ")) || (!explicit_vr_ && starts_with_item(c_, e.length)));
  }

  Cursor& c_;
  size_t end_;
  bool explicit_vr_;
  WalkResult& result_;
  bool meta_only_, sequence_value_;
  int nesting_;
  // Undefined-length sequences, items and encapsulated pixel data currently open; true for
  // pixel data, whose items are compressed fragments rather than elements.
  std::vector<bool> open_;
  int fragments_ = 0;  // items seen inside encapsulated pixel data (the first is the offset table)
};

void walk(Cursor& c, size_t end, bool explicit_vr, WalkResult& result, bool meta_only) {
  Walker(c, end, explicit_vr, result, meta_only, /*sequence_value=*/false, /*nesting=*/0).run();
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
  // GDCM guesses the encoding of a transfer syntax it does not know (big endian, for one, and
  // then allocates what lengths read that way declare: 3.7 GB for a 2.9 KB file, fuzz_upload).
  if (ts.empty())  // GDCM then guesses from the bytes (the same 3.7 GB file: a (4002,0000) where (0002,0000) was)
    return "has no Transfer Syntax UID (0002,0010) in a file meta information group starting at byte 132";
  if (!is_known_transfer_syntax(ts))
    return fmt::format("has the transfer syntax '{}' (0002,0010), which pneumo does not read; expected one of "
                       "DICOM's native, deflated, JPEG, JPEG-LS, JPEG 2000 or RLE syntaxes",
                       ts);
  if (ts == "1.2.840.10008.1.2.1.99") {  // deflated explicit VR little endian: walk the inflated data set
    std::string inflated;
    if (const std::string problem = inflate_raw(bytes.substr(c.offset), inflated); !problem.empty())
      return "deflated data set: " + problem;
    Cursor d{inflated, 0, false};
    WalkResult data_set;
    walk(d, inflated.size(), /*explicit_vr=*/true, data_set, /*meta_only=*/false);
    if (!data_set.error.empty()) return "deflated data set: " + data_set.error;
    return check_data_set(data_set);
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
  return check_data_set(result);
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
  std::string uid(kImplicitLittleEndian);
  uid.push_back('\0');
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
