#include "j2k_header.h"

#include <cstdint>

#include <fmt/format.h>

namespace pneumo::data::detail {

namespace {

// Marker codes of ISO/IEC 15444-1 table A.2, and the Part 2 ones OpenJPEG reads.
enum : uint16_t {
  kSOC = 0xFF4F, kCAP = 0xFF50, kSIZ = 0xFF51, kCOD = 0xFF52, kCOC = 0xFF53, kTLM = 0xFF55, kPLM = 0xFF57,
  kPLT = 0xFF58, kCPF = 0xFF59, kQCD = 0xFF5C, kQCC = 0xFF5D, kRGN = 0xFF5E, kPOC = 0xFF5F, kPPM = 0xFF60,
  kPPT = 0xFF61, kCRG = 0xFF63, kCOM = 0xFF64, kMCT = 0xFF74, kMCC = 0xFF75, kMCO = 0xFF77, kCBD = 0xFF78,
  kSOT = 0xFF90, kSOD = 0xFF93, kEOC = 0xFFD9,
};

constexpr int kMaxLevels = 32;                 // decomposition levels (A.6.1)
constexpr int kMaxBands = 3 * kMaxLevels + 1;  // quantization values (A.6.4)

// Big-endian reads inside one marker segment; `ok()` is false once a read went past its end.
class Segment {
 public:
  Segment(std::string_view bytes, size_t at, size_t end) : b_(bytes), at_(at), end_(end) {}
  uint32_t u8() { return take(1); }
  uint32_t u16() { return take(2); }
  uint32_t u32() { return take(4); }
  size_t left() const { return at_ <= end_ ? end_ - at_ : 0; }
  bool ok() const { return ok_; }

 private:
  uint32_t take(int n) {
    if (left() < static_cast<size_t>(n)) {
      ok_ = false;
      at_ = end_;
      return 0;
    }
    uint32_t v = 0;
    for (int i = 0; i < n; ++i) v = v << 8 | static_cast<unsigned char>(b_[at_++]);
    return v;
  }
  std::string_view b_;
  size_t at_, end_;
  bool ok_ = true;
};

uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

class Walk {
 public:
  Walk(std::string_view stream, const J2kExpectation& expected) : s_(stream), expected_(expected) {}

  std::string run() {
    if (s_.size() < 4 || marker_at(0) != kSOC) return "a JPEG 2000 frame that does not start with SOC (FF4F)";
    size_t i = 2;
    if (marker_at(i) != kSIZ) return "a JPEG 2000 main header that does not begin with SIZ (FF51)";
    bool seen_cod = false, seen_qcd = false;
    bool main_header = true;
    size_t tile_part_end = 0;  // from SOT's Psot; 0 when it runs to the end
    while (i + 2 <= s_.size()) {
      const uint16_t m = marker_at(i);
      if (m >> 8 != 0xFF)
        return fmt::format("bytes 0x{:04X} at byte {} of the JPEG 2000 stream where a marker belongs", m, i);
      if (m == kSOD) {
        if (main_header) return fmt::format("SOD (FF93) at byte {} before any SOT", i);
        return {};  // the first tile-part's data: the headers are over
      }
      if (m == kEOC) return main_header ? "a JPEG 2000 stream that ends (EOC) before its first tile" : std::string();
      if (i + 4 > s_.size()) return {};  // continues past this fragment
      const size_t length = static_cast<size_t>(static_cast<unsigned char>(s_[i + 2])) << 8 |
                            static_cast<unsigned char>(s_[i + 3]);
      if (length < 2) return fmt::format("a JPEG 2000 marker segment 0x{:04X} at byte {} with length {}", m, i, length);
      if (i + 2 + length > s_.size()) {
        // A main header split over fragments is judged as far as it goes; a segment longer than
        // its tile-part is not.
        if (tile_part_end == 0) return {};
        return fmt::format("a JPEG 2000 marker segment 0x{:04X} at byte {} longer than the stream", m, i);
      }
      if (tile_part_end != 0 && i + 2 + length > tile_part_end)
        return fmt::format("a JPEG 2000 marker segment 0x{:04X} at byte {} past the end of its tile-part", m, i);
      Segment seg(s_, i + 4, i + 2 + length);
      std::string problem;
      if (m == kSOT) {
        if (!seen_cod || !seen_qcd)
          return fmt::format("a JPEG 2000 main header without {}", !seen_cod ? "COD (FF52)" : "QCD (FF5C)");
        main_header = false;
        problem = sot(seg, i, tile_part_end);
      } else if (main_header) {
        problem = main_segment(m, seg, seen_cod, seen_qcd);
      } else {
        problem = tile_part_segment(m, seg);
      }
      if (!problem.empty()) return fmt::format("JPEG 2000 {} at byte {} of the stream", problem, i);
      if (!seg.ok()) return fmt::format("a JPEG 2000 marker segment 0x{:04X} at byte {} shorter than its fields", m, i);
      i += 2 + length;
    }
    return {};
  }

 private:
  uint16_t marker_at(size_t i) const {
    if (i + 2 > s_.size()) return 0;
    return static_cast<uint16_t>(static_cast<unsigned char>(s_[i]) << 8 | static_cast<unsigned char>(s_[i + 1]));
  }

  std::string main_segment(uint16_t m, Segment& seg, bool& seen_cod, bool& seen_qcd) {
    switch (m) {
      case kSIZ:
        if (components_ != 0) return "a second SIZ";
        return siz(seg);
      case kCOD: seen_cod = true; return cod(seg, /*component=*/false);
      case kCOC: return cod(seg, /*component=*/true);
      case kQCD: seen_qcd = true; return qcd(seg, /*component=*/false);
      case kQCC: return qcd(seg, /*component=*/true);
      case kRGN: return rgn(seg);
      case kPOC: return poc(seg);
      case kCRG: return seg.left() == 4 * static_cast<size_t>(components_) ? "" : "CRG of the wrong length";
      case kCAP: case kCPF: case kTLM: case kPLM: case kPPM: case kCOM:
      case kMCT: case kMCC: case kMCO: case kCBD:
        return {};
      default: return fmt::format("marker 0x{:04X}, unknown or not allowed in the main header", m);
    }
  }

  std::string tile_part_segment(uint16_t m, Segment& seg) {
    switch (m) {
      case kCOD: return cod(seg, false);
      case kCOC: return cod(seg, true);
      case kQCD: return qcd(seg, false);
      case kQCC: return qcd(seg, true);
      case kRGN: return rgn(seg);
      case kPOC: return poc(seg);
      case kPLT: case kPPT: case kCOM: case kMCT: case kMCC: case kMCO:
        return {};
      default: return fmt::format("marker 0x{:04X}, unknown or not allowed in a tile-part header", m);
    }
  }

  std::string siz(Segment& seg) {
    seg.u16();  // Rsiz: capabilities
    const uint64_t x = seg.u32(), y = seg.u32(), x0 = seg.u32(), y0 = seg.u32();
    const uint64_t tx = seg.u32(), ty = seg.u32(), tx0 = seg.u32(), ty0 = seg.u32();
    const uint32_t c = seg.u16();
    if (!seg.ok()) return "SIZ shorter than its fields";
    if (c < 1 || c > 16384) return fmt::format("SIZ with {} components; expected 1 to 16384", c);
    if (seg.left() != 3 * static_cast<size_t>(c)) return fmt::format("SIZ whose length does not fit its {} components", c);
    if (x <= x0 || y <= y0) return fmt::format("SIZ with an empty image ({}x{} from offset {},{})", x, y, x0, y0);
    if (tx == 0 || ty == 0) return "SIZ with a tile size of 0";
    if (tx0 > x0 || ty0 > y0 || tx0 + tx <= x0 || ty0 + ty <= y0)
      return "SIZ whose first tile does not cover the image's origin";
    tiles_ = ceil_div(x - tx0, tx) * ceil_div(y - ty0, ty);
    if (tiles_ > 65535) return fmt::format("SIZ with {} tiles; at most 65535", tiles_);
    for (uint32_t k = 0; k < c; ++k) {
      const uint32_t depth = (seg.u8() & 0x7F) + 1, dx = seg.u8(), dy = seg.u8();
      if (depth > 38) return fmt::format("SIZ: component {} of {} bits; at most 38", k, depth);
      if (dx == 0 || dy == 0) return fmt::format("SIZ: component {} with a sampling step of 0", k);
      if (dx != 1 || dy != 1) return fmt::format("SIZ: component {} subsampled {}x{}; pneumo reads frames whose components are not", k, dx, dy);
    }
    components_ = c;
    const uint64_t columns = x - x0, rows = y - y0;
    if ((expected_.columns > 0 && columns != static_cast<uint64_t>(expected_.columns)) ||
        (expected_.rows > 0 && rows != static_cast<uint64_t>(expected_.rows)))
      return fmt::format("SIZ: an image of {}x{} where the DICOM header says {}x{} (columns x rows)", columns, rows,
                         expected_.columns, expected_.rows);
    if (expected_.samples_per_pixel > 0 && c != static_cast<uint32_t>(expected_.samples_per_pixel))
      return fmt::format("SIZ: {} components where the DICOM header says {} samples per pixel", c,
                         expected_.samples_per_pixel);
    return {};
  }

  uint32_t component_index(Segment& seg) const { return components_ < 257 ? seg.u8() : seg.u16(); }

  // COD (A.6.1) or COC (A.6.2).
  std::string cod(Segment& seg, bool component) {
    const char* name = component ? "COC" : "COD";
    if (component && component_index(seg) >= components_) return "COC for a component the image does not have";
    const uint32_t style = seg.u8();
    if (style > (component ? 1u : 7u)) return fmt::format("{} with coding style 0x{:02X}", name, style);
    if (!component) {
      const uint32_t progression = seg.u8(), layers = seg.u16(), transform = seg.u8();
      if (progression > 4) return fmt::format("COD with progression order {}; expected 0 to 4", progression);
      if (layers == 0) return "COD with 0 quality layers";
      if (transform > 1 || (transform == 1 && components_ < 3))
        return fmt::format("COD with multiple component transform {} for {} components", transform, components_);
    }
    const uint32_t levels = seg.u8(), xcb = seg.u8(), ycb = seg.u8(), block_style = seg.u8(), wavelet = seg.u8();
    if (!seg.ok()) return fmt::format("{} shorter than its fields", name);
    if (levels > kMaxLevels) return fmt::format("{} with {} decomposition levels; at most {}", name, levels, kMaxLevels);
    if (xcb > 8 || ycb > 8 || xcb + ycb > 8)
      return fmt::format("{} with code-blocks of 2^{} x 2^{}; at most 2^10 a side and 2^12 in all", name, xcb + 2, ycb + 2);
    if (block_style > 0x3F) return fmt::format("{} with code-block style 0x{:02X} (not Part 1)", name, block_style);
    if (wavelet > 1) return fmt::format("{} with wavelet {}; expected 0 (9-7) or 1 (5-3)", name, wavelet);
    const size_t precincts = (style & 1) ? levels + 1 : 0;
    if (seg.left() != precincts)
      return fmt::format("{} whose length does not fit its {} decomposition levels", name, levels);
    return {};
  }

  // QCD (A.6.4) or QCC (A.6.5).
  std::string qcd(Segment& seg, bool component) {
    const char* name = component ? "QCC" : "QCD";
    if (component && component_index(seg) >= components_) return "QCC for a component the image does not have";
    const uint32_t style = seg.u8() & 0x1F;
    if (!seg.ok()) return fmt::format("{} shorter than its fields", name);
    const size_t bytes = seg.left();
    if (style == 1) return bytes == 2 ? "" : fmt::format("{} (scalar derived) of the wrong length", name);
    if (style != 0 && style != 2) return fmt::format("{} with quantization style {}", name, style);
    const size_t per_band = style == 0 ? 1 : 2;
    if (bytes == 0 || bytes % per_band != 0 || bytes / per_band > kMaxBands)
      return fmt::format("{} with {} bytes of step sizes; expected 1 to {} subbands", name, bytes, kMaxBands);
    return {};
  }

  std::string rgn(Segment& seg) {
    if (component_index(seg) >= components_) return "RGN for a component the image does not have";
    const uint32_t style = seg.u8(), shift = seg.u8();
    if (!seg.ok() || seg.left() != 0) return "RGN of the wrong length";
    if (style != 0) return fmt::format("RGN with style {}", style);
    if (shift > 37) return fmt::format("RGN with a shift of {}", shift);
    return {};
  }

  std::string poc(Segment& seg) {
    const size_t entry = components_ < 257 ? 7 : 9;
    if (seg.left() == 0 || seg.left() % entry != 0) return "POC of the wrong length";
    while (seg.left() > 0) {
      const uint32_t first_level = seg.u8(), first_component = component_index(seg);
      const uint32_t layer_end = seg.u16(), last_level = seg.u8();
      const uint32_t last_component = component_index(seg), order = seg.u8();
      if (first_level > kMaxLevels || first_level >= last_level || first_component >= components_ ||
          first_component >= (last_component == 0 ? 256 : last_component) || layer_end == 0 || order > 4)
        return "POC with a progression out of range";
    }
    return {};
  }

  std::string sot(Segment& seg, size_t at, size_t& tile_part_end) {
    if (seg.left() != 8) return "SOT of the wrong length";
    const uint32_t tile = seg.u16(), length = seg.u32(), part = seg.u8(), parts = seg.u8();
    if (tile >= tiles_) return fmt::format("SOT for tile {} of an image of {} tiles", tile, tiles_);
    if (length != 0 && length < 14) return fmt::format("SOT with a tile-part length of {}", length);
    if (parts != 0 && part >= parts) return fmt::format("SOT for tile-part {} of {}", part, parts);
    tile_part_end = length == 0 ? s_.size() : at + length;
    if (tile_part_end > s_.size()) tile_part_end = s_.size();  // judged as far as this fragment goes
    return {};
  }

  std::string_view s_;
  J2kExpectation expected_;
  uint32_t components_ = 0;
  uint64_t tiles_ = 0;
};

// The raw codestream of a JP2 file (some writers put one in DICOM): the 'jp2c' box's contents;
// the input itself when it is not a JP2 file; empty when a box does not fit.
std::string_view codestream_of(std::string_view data, bool& damaged) {
  static constexpr char kSignature[] = "\x00\x00\x00\x0CjP  \r\n\x87\n";
  if (data.size() < 12 || data.compare(0, 12, std::string_view(kSignature, 12)) != 0) return data;
  size_t i = 0;
  while (i + 8 <= data.size()) {
    const auto byte = [&](size_t k) { return static_cast<uint64_t>(static_cast<unsigned char>(data[k])); };
    uint64_t length = byte(i) << 24 | byte(i + 1) << 16 | byte(i + 2) << 8 | byte(i + 3);
    const std::string_view type = data.substr(i + 4, 4);
    size_t header = 8;
    if (length == 1) {
      if (i + 16 > data.size()) break;
      length = 0;
      for (int k = 0; k < 8; ++k) length = length << 8 | byte(i + 8 + k);
      header = 16;
    } else if (length == 0) {
      length = data.size() - i;
    }
    if (length < header || length > data.size() - i) break;
    if (type == "jp2c") return data.substr(i + header, length - header);
    i += length;
  }
  damaged = true;
  return {};
}

}  // namespace

bool is_j2k_syntax(const std::string& ts) {
  return ts == "1.2.840.10008.1.2.4.90" || ts == "1.2.840.10008.1.2.4.91" || ts == "1.2.840.10008.1.2.4.92" ||
         ts == "1.2.840.10008.1.2.4.93";
}

std::string check_j2k_header(std::string_view codestream, const J2kExpectation& expected) {
  bool damaged = false;
  const std::string_view raw = codestream_of(codestream, damaged);
  if (damaged) return "a JP2 file without a whole codestream box (jp2c)";
  return Walk(raw, expected).run();
}

}  // namespace pneumo::data::detail
