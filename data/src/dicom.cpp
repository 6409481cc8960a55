#include "pneumo/data/dicom.h"
#include "pneumo/data/dicom_isolation.h"

#include <gdcmImage.h>
#include <gdcmImageReader.h>
#include <gdcmReader.h>
#include <gdcmSequenceOfFragments.h>
#include <gdcmUIDs.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "dicom_in_process.h"
#include "dicom_structure.h"
#include "gdcm_support.h"
#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"

namespace pneumo::data {

namespace fs = std::filesystem;

namespace {

// No chest X-ray comes near this; a header claiming more is corrupt or hostile.
constexpr uint64_t kMaxPixelBytes = uint64_t{1} << 30;
constexpr const char* kJpegBaseline = "1.2.840.10008.1.2.4.50";
constexpr const char* kJpegExtended = "1.2.840.10008.1.2.4.51";
constexpr const char* kRleLossless = "1.2.840.10008.1.2.5";
constexpr const char* kExplicitBigEndian = "1.2.840.10008.1.2.2";

[[noreturn]] void fail(const fs::path& file, const std::string& reason) {
  throw core::DataError(fmt::format("{}: {}", file.string(), reason));
}

std::string trimmed(const char* data, size_t size) {
  size_t begin = 0, end = size;
  while (end > begin && (data[end - 1] == ' ' || data[end - 1] == '\0')) --end;
  while (begin < end && data[begin] == ' ') ++begin;
  return std::string(data + begin, end - begin);
}

std::string tag_string(const gdcm::DataSet& ds, uint16_t group, uint16_t element) {
  const gdcm::Tag tag(group, element);
  if (!ds.FindDataElement(tag)) return "";
  const gdcm::ByteValue* value = ds.GetDataElement(tag).GetByteValue();
  return value == nullptr ? "" : trimmed(value->GetPointer(), value->GetLength());
}

// The n-th value of a backslash-separated decimal string (DS), tolerant of over-long values.
std::optional<double> nth_number(const std::string& text, int n) {
  size_t start = 0;
  for (int i = 0; i < n; ++i) {
    start = text.find('\\', start);
    if (start == std::string::npos) return std::nullopt;
    ++start;
  }
  const std::string item = text.substr(start, text.find('\\', start) - start);
  char* end = nullptr;
  const double value = std::strtod(item.c_str(), &end);
  if (end == item.c_str()) return std::nullopt;
  return value;
}

std::string read_bytes(const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec)) fail(file, "no such file");
  if (fs::is_directory(file, ec)) fail(file, "is a folder; expected a DICOM file");
  try {
    return core::read_text_file(file);
  } catch (const core::IoError& e) {
    throw core::DataError(e.what());
  }
}

// After GDCM parsed a relabelled copy (see detail::StructureCheck): the file's own transfer
// syntax back on the header and the image, so that compressed pixel data decodes as such.
void restore_transfer_syntax(gdcm::ImageReader& reader, const std::string& uid) {
  const gdcm::TransferSyntax ts = gdcm::TransferSyntax::GetTSType(uid.c_str());
  if (ts == gdcm::TransferSyntax::TS_END) return;  // unknown to GDCM: left as parsed (implicit)
  gdcm::DataElement element(gdcm::Tag(0x0002, 0x0010), 0, gdcm::VR::UI);
  std::string value = uid;
  if (value.size() % 2 != 0) value += '\0';
  element.SetByteValue(value.data(), static_cast<uint32_t>(value.size()));
  reader.GetFile().GetHeader().Replace(element);
  reader.GetImage().SetTransferSyntax(ts);
}

// The structure check, unless PNEUMO_UNSAFE_SKIP_STRUCTURE_CHECK=1: only for testing the
// second line of defence (tests/tools/test_cli_isolation.cpp), where a file the check would
// refuse must reach GDCM and abort the decoder process it runs in.
detail::StructureCheck check_structure(std::string_view bytes) {
  static const bool skipped = [] {
    const char* v = std::getenv("PNEUMO_UNSAFE_SKIP_STRUCTURE_CHECK");
    return v != nullptr && std::string_view(v) == "1";
  }();
  return skipped ? detail::StructureCheck{} : detail::check_dicom_structure(bytes);
}

// The bytes are checked structurally, then parsed by GDCM from memory. `stream` must outlive
// `reader`'s use of it; `file` names the source in errors.
void open_image(gdcm::ImageReader& reader, std::istringstream& stream, std::string bytes, const fs::path& file) {
  detail::silence_gdcm_traces();
  const detail::StructureCheck check = check_structure(bytes);
  if (!check.problem.empty()) fail(file, check.problem);
  stream.str(check.implicit_vr_mislabelled ? detail::relabel_as_implicit_vr(bytes) : std::move(bytes));
  reader.SetStream(stream);
  if (reader.Read()) {
    if (check.implicit_vr_mislabelled) restore_transfer_syntax(reader, check.transfer_syntax);
    return;
  }
  const gdcm::DataSet& ds = reader.GetFile().GetDataSet();
  if (!ds.IsEmpty() && !ds.FindDataElement(gdcm::Tag(0x7fe0, 0x0010)))
    fail(file, "has no pixel data (7FE0,0010); expected a DICOM image");
  fail(file, "is not a readable DICOM image (not DICOM, truncated or corrupt; GDCM could not "
             "parse it)");
}

// The header fields that are text in the data set (UIDs, window, spacing, patient, ...);
// GDCM's image reader and the header-only read share them.
void read_text_fields(const gdcm::DataSet& ds, DicomMetadata& m) {
  m.sop_class_uid = tag_string(ds, 0x0008, 0x0016);
  m.sop_instance_uid = tag_string(ds, 0x0008, 0x0018);
  m.study_instance_uid = tag_string(ds, 0x0020, 0x000d);
  m.series_instance_uid = tag_string(ds, 0x0020, 0x000e);
  m.window_center = nth_number(tag_string(ds, 0x0028, 0x1050), 0);
  m.window_width = nth_number(tag_string(ds, 0x0028, 0x1051), 0);
  std::string spacing = tag_string(ds, 0x0028, 0x0030);
  if (spacing.empty()) spacing = tag_string(ds, 0x0018, 0x1164);  // Imager Pixel Spacing
  m.pixel_spacing_row_mm = nth_number(spacing, 0);
  m.pixel_spacing_col_mm = nth_number(spacing, 1);
  m.modality = tag_string(ds, 0x0008, 0x0060);
  m.view_position = tag_string(ds, 0x0018, 0x5101);
  m.patient_id = tag_string(ds, 0x0010, 0x0020);
  m.patient_sex = tag_string(ds, 0x0010, 0x0040);
  m.patient_age = tag_string(ds, 0x0010, 0x1010);
  m.body_part = tag_string(ds, 0x0018, 0x0015);
}

std::string transfer_syntax_name(const std::string& uid) {
  gdcm::UIDs uids;
  return uids.SetFromUID(uid.c_str()) ? uids.GetName() : "unknown";
}

DicomMetadata metadata_of(const gdcm::ImageReader& reader) {
  const gdcm::Image& image = reader.GetImage();
  const gdcm::DataSet& ds = reader.GetFile().GetDataSet();
  const gdcm::PixelFormat& pf = image.GetPixelFormat();
  DicomMetadata m;
  read_text_fields(ds, m);
  m.transfer_syntax_uid = tag_string(reader.GetFile().GetHeader(), 0x0002, 0x0010);
  if (m.transfer_syntax_uid.empty())
    m.transfer_syntax_uid = gdcm::TransferSyntax::GetTSString(image.GetTransferSyntax());
  m.transfer_syntax_name = transfer_syntax_name(m.transfer_syntax_uid);
  const unsigned int* dims = image.GetDimensions();
  m.columns = static_cast<int>(dims[0]);
  m.rows = static_cast<int>(dims[1]);
  m.frames = image.GetNumberOfDimensions() >= 3 ? static_cast<int>(dims[2]) : 1;
  m.samples_per_pixel = pf.GetSamplesPerPixel();
  m.bits_allocated = pf.GetBitsAllocated();
  m.bits_stored = pf.GetBitsStored();
  m.is_signed = pf.GetPixelRepresentation() == 1;
  const char* pi = gdcm::PhotometricInterpretation::GetPIString(image.GetPhotometricInterpretation());
  m.photometric = pi == nullptr ? "" : trimmed(pi, std::strlen(pi));
  m.rescale_slope = image.GetSlope();
  m.rescale_intercept = image.GetIntercept();
  return m;
}

int opencv_depth(const gdcm::PixelFormat& pf, const fs::path& file) {
  switch (pf.GetScalarType()) {
    case gdcm::PixelFormat::UINT8: return CV_8U;
    case gdcm::PixelFormat::INT8: return CV_8S;
    case gdcm::PixelFormat::UINT12:
    case gdcm::PixelFormat::UINT16: return CV_16U;
    case gdcm::PixelFormat::INT12:
    case gdcm::PixelFormat::INT16: return CV_16S;
    case gdcm::PixelFormat::UINT32:
    case gdcm::PixelFormat::INT32: return CV_32S;
    default:
      fail(file, fmt::format("unsupported pixel format ({} bits allocated, {} stored, {}); "
                             "expected 8, 16 or 32-bit integers",
                             pf.GetBitsAllocated(), pf.GetBitsStored(),
                             pf.GetPixelRepresentation() ? "signed" : "unsigned"));
  }
}

// 8-bit greyscale JPEG Baseline/Extended, one frame: libjpeg-turbo decodes the fragments.
cv::Mat decode_jpeg_fast(const gdcm::ImageReader& reader, const DicomMetadata& m) {
  const bool eligible = (m.transfer_syntax_uid == kJpegBaseline ||
                         m.transfer_syntax_uid == kJpegExtended) &&
                        m.samples_per_pixel == 1 && m.bits_allocated == 8 && m.frames == 1;
  if (!eligible) return {};
  const gdcm::DataSet& ds = reader.GetFile().GetDataSet();
  const gdcm::DataElement& pixel_data = ds.GetDataElement(gdcm::Tag(0x7fe0, 0x0010));
  const gdcm::SequenceOfFragments* fragments = pixel_data.GetSequenceOfFragments();
  if (fragments == nullptr || fragments->GetNumberOfFragments() == 0) return {};
  std::vector<uchar> stream;
  for (size_t i = 0; i < fragments->GetNumberOfFragments(); ++i) {
    const gdcm::ByteValue* bytes = fragments->GetFragment(i).GetByteValue();
    if (bytes == nullptr) continue;
    const auto* begin = reinterpret_cast<const uchar*>(bytes->GetPointer());
    stream.insert(stream.end(), begin, begin + bytes->GetLength());
  }
  cv::Mat decoded = cv::imdecode(stream, cv::IMREAD_UNCHANGED);
  // Anything unexpected (corrupt stream, colour, other size): let GDCM decode and judge it.
  if (decoded.empty() || decoded.type() != CV_8UC1 || decoded.rows != m.rows ||
      decoded.cols != m.columns)
    return {};
  return decoded;
}

// Signed values with Bits Stored < Bits Allocated arrive from some codecs (JPEG 2000) without
// their sign bits extended; extend them from the stored width, as pydicom does.
template <class T>
void sign_extend_as(cv::Mat& values, int shift) {
  using Unsigned = std::make_unsigned_t<T>;
  T* data = values.ptr<T>();
  for (size_t i = 0, n = values.total() * values.channels(); i < n; ++i)
    data[i] = static_cast<T>(static_cast<T>(static_cast<Unsigned>(data[i]) << shift) >> shift);
}

void sign_extend(cv::Mat& values, const DicomMetadata& m) {
  if (!m.is_signed || m.bits_stored <= 0 || m.bits_stored >= m.bits_allocated) return;
  const int shift = m.bits_allocated - m.bits_stored;
  switch (values.depth()) {
    case CV_8S: sign_extend_as<int8_t>(values, shift); break;
    case CV_16S: sign_extend_as<int16_t>(values, shift); break;
    case CV_32S: sign_extend_as<int32_t>(values, shift); break;
    default: break;
  }
}

cv::Mat decode_stored(const gdcm::ImageReader& reader, const DicomMetadata& m,
                      const fs::path& file, bool fast_jpeg) {
  if (m.rows <= 0 || m.columns <= 0 || m.frames <= 0)
    fail(file, fmt::format("has {} rows x {} columns x {} frames; expected positive sizes",
                           m.rows, m.columns, m.frames));
  if (m.samples_per_pixel != 1 && m.samples_per_pixel != 3)
    fail(file, fmt::format("has {} samples per pixel; expected 1 (grey) or 3 (colour)",
                           m.samples_per_pixel));
  if (m.bits_allocated == 1) fail(file, "has 1-bit pixel data; expected 8, 16 or 32 bits");
  const uint64_t sample_bytes = static_cast<uint64_t>((m.bits_allocated + 7) / 8);
  const uint64_t frame_bytes = static_cast<uint64_t>(m.rows) * static_cast<uint64_t>(m.columns) *
                               static_cast<uint64_t>(m.samples_per_pixel) * sample_bytes;
  if (frame_bytes * static_cast<uint64_t>(m.frames) > kMaxPixelBytes)
    fail(file, fmt::format("claims {} x {} x {} frames x {} bytes per pixel; that exceeds the "
                           "{} MiB limit for one image",
                           m.rows, m.columns, m.frames, sample_bytes * m.samples_per_pixel,
                           kMaxPixelBytes >> 20));

  if (fast_jpeg) {
    cv::Mat fast = decode_jpeg_fast(reader, m);
    if (!fast.empty()) return fast;
  }
  // GDCM 3.0 interleaves the byte segments of 16/32-bit colour RLE wrongly; refuse rather
  // than return scrambled pixels (no radiograph is stored this way).
  if (m.transfer_syntax_uid == kRleLossless && m.samples_per_pixel == 3 && m.bits_allocated > 8)
    fail(file, fmt::format("colour RLE Lossless with {} bits per sample is not supported; "
                           "expected 8-bit colour or greyscale RLE", m.bits_allocated));

  // Native (unencapsulated) pixel data must hold every frame the header promises.
  const gdcm::DataElement& pixel_data =
      reader.GetFile().GetDataSet().GetDataElement(gdcm::Tag(0x7fe0, 0x0010));
  if (const gdcm::ByteValue* native = pixel_data.GetByteValue()) {
    // YBR_FULL_422 stores two chroma samples per two pixels: 2/3 of the expanded size.
    const uint64_t stored_frame = m.photometric == "YBR_FULL_422" ? frame_bytes * 2 / 3 : frame_bytes;
    const uint64_t needed = stored_frame * static_cast<uint64_t>(m.frames);
    if (native->GetLength() < needed)
      fail(file, fmt::format("pixel data holds {} bytes; {} frame(s) of {} x {} need {} "
                             "(truncated?)", static_cast<uint32_t>(native->GetLength()), m.frames, m.columns, m.rows,
                             needed));
  }

  const gdcm::Image& image = reader.GetImage();
  const int depth = opencv_depth(image.GetPixelFormat(), file);
  const size_t length = image.GetBufferLength();
  if (length < frame_bytes)
    fail(file, fmt::format("pixel data holds {} bytes; one frame needs {} (truncated?)", length,
                           frame_bytes));
  std::vector<char> buffer(length);
  if (!image.GetBuffer(buffer.data()))
    fail(file, fmt::format("pixel data could not be decoded ({}, {}); the file is truncated, "
                           "corrupt or uses an unsupported codec",
                           m.transfer_syntax_name, m.transfer_syntax_uid));
  const int channels = m.samples_per_pixel;
  cv::Mat frame(m.rows, m.columns, CV_MAKETYPE(depth, channels), buffer.data());
  if (channels == 3 && image.GetPlanarConfiguration() == 1) {
    // Planes R..., G..., B... -> interleaved RGB.
    std::vector<cv::Mat> planes;
    const size_t plane_bytes = frame_bytes / 3;
    for (int c = 0; c < 3; ++c)
      planes.emplace_back(m.rows, m.columns, CV_MAKETYPE(depth, 1), buffer.data() + c * plane_bytes);
    cv::Mat merged;
    cv::merge(planes, merged);
    return merged;
  }
  cv::Mat out = frame.clone();
  // GDCM 3.0 swaps 32-bit big-endian samples as two 16-bit halves; put the halves in order.
  if (m.transfer_syntax_uid == kExplicitBigEndian && m.bits_allocated == 32) {
    auto* words = out.ptr<uint32_t>();
    for (size_t i = 0, n = out.total() * out.channels(); i < n; ++i)
      words[i] = (words[i] << 16) | (words[i] >> 16);
  }
  sign_extend(out, m);
  return out;
}

// Stored values -> one grey channel in modality units (rescale applied), as doubles.
cv::Mat to_grey_modality(const cv::Mat& stored, const DicomMetadata& m) {
  cv::Mat grey;
  if (stored.channels() == 3) {
    if (m.photometric.rfind("YBR", 0) == 0) {
      cv::extractChannel(stored, grey, 0);  // Y is the luminance
    } else {
      cv::Mat wide;
      stored.convertTo(wide, CV_64F);
      cv::transform(wide, grey, cv::Matx13d(0.299, 0.587, 0.114));
    }
  } else {
    grey = stored;
  }
  cv::Mat modality;
  grey.convertTo(modality, CV_64F, m.rescale_slope, m.rescale_intercept);
  return modality;
}

cv::Mat stored_from_bytes(std::string bytes, const fs::path& file, DicomMetadata* meta, bool fast_jpeg) {
  std::istringstream stream;
  gdcm::ImageReader reader;
  open_image(reader, stream, std::move(bytes), file);
  DicomMetadata m = metadata_of(reader);
  cv::Mat stored = decode_stored(reader, m, file, fast_jpeg);
  if (meta != nullptr) *meta = std::move(m);
  return stored;
}

DicomImage image_from_stored(cv::Mat stored, DicomMetadata meta, const fs::path& file, const DicomReadOptions& options);

}  // namespace

cv::Mat read_dicom_stored(const fs::path& file, DicomMetadata* meta, bool fast_jpeg) {
  return stored_from_bytes(read_bytes(file), file, meta, fast_jpeg);
}

namespace {

// An unsigned short (US) element's first value; 0 when absent or too short. GDCM's reader
// hands binary values over little endian, explicit VR big endian files included (the header
// test reads pydicom's ExplVR_BigEnd.dcm as the full read does).
int tag_uint16(const gdcm::DataSet& ds, uint16_t group, uint16_t element) {
  const gdcm::Tag tag(group, element);
  if (!ds.FindDataElement(tag)) return 0;
  const gdcm::ByteValue* value = ds.GetDataElement(tag).GetByteValue();
  if (value == nullptr || value->GetLength() < 2) return 0;
  const auto* bytes = reinterpret_cast<const unsigned char*>(value->GetPointer());
  return bytes[0] | (bytes[1] << 8);
}

// Checks the file's structure and parses its elements up to (not including) `stop`; `stream`
// must outlive `reader`'s use of it.
detail::StructureCheck read_header_up_to(gdcm::Reader& reader, std::istringstream& stream, const fs::path& file,
                                         const gdcm::Tag& stop) {
  detail::silence_gdcm_traces();
  std::string bytes = read_bytes(file);
  detail::StructureCheck check = check_structure(bytes);
  if (!check.problem.empty()) fail(file, check.problem);
  stream.str(check.implicit_vr_mislabelled ? detail::relabel_as_implicit_vr(bytes) : std::move(bytes));
  reader.SetStream(stream);
  if (!reader.ReadUpToTag(stop)) fail(file, "is not a readable DICOM file (GDCM could not parse its header)");
  return check;
}

}  // namespace

DicomMetadata detail::read_dicom_header_here(const fs::path& file) {
  std::istringstream stream;
  gdcm::Reader reader;
  const detail::StructureCheck check = read_header_up_to(reader, stream, file, gdcm::Tag(0x7fe0, 0x0010));
  const gdcm::DataSet& ds = reader.GetFile().GetDataSet();
  DicomMetadata m;
  read_text_fields(ds, m);
  m.transfer_syntax_uid = check.transfer_syntax;
  m.transfer_syntax_name = transfer_syntax_name(m.transfer_syntax_uid);
  m.rows = tag_uint16(ds, 0x0028, 0x0010);
  m.columns = tag_uint16(ds, 0x0028, 0x0011);
  if (m.rows == 0 || m.columns == 0)
    fail(file, fmt::format("has {} rows and {} columns in its header; expected an image", m.rows, m.columns));
  m.frames = std::max(1, static_cast<int>(nth_number(tag_string(ds, 0x0028, 0x0008), 0).value_or(1)));
  m.samples_per_pixel = std::max(1, tag_uint16(ds, 0x0028, 0x0002));
  m.bits_allocated = tag_uint16(ds, 0x0028, 0x0100);
  m.bits_stored = tag_uint16(ds, 0x0028, 0x0101);
  m.is_signed = tag_uint16(ds, 0x0028, 0x0103) == 1;
  m.photometric = tag_string(ds, 0x0028, 0x0004);
  m.rescale_slope = nth_number(tag_string(ds, 0x0028, 0x1053), 0).value_or(1.0);
  m.rescale_intercept = nth_number(tag_string(ds, 0x0028, 0x1052), 0).value_or(0.0);
  return m;
}

std::string detail::read_dicom_patient_id_here(const fs::path& file) {
  std::istringstream stream;
  gdcm::Reader reader;
  read_header_up_to(reader, stream, file, gdcm::Tag(0x0010, 0x0021));
  return tag_string(reader.GetFile().GetDataSet(), 0x0010, 0x0020);
}

namespace {

// DicomReadOptions::resize_to applied (the decoded image is the native one otherwise).
DicomImage resized(DicomImage image, const DicomReadOptions& options) {
  if (options.resize_to <= 0 || (image.pixels.rows == options.resize_to && image.pixels.cols == options.resize_to))
    return image;
  if (options.resize_to > 8192 || options.resize_interpolation < cv::INTER_NEAREST ||
      options.resize_interpolation > cv::INTER_AREA)
    throw core::DataError(fmt::format("cannot resize a decoded image to {} px with interpolation {}; expected 1 to "
                                      "8192 px and interpolation 0 to 3",
                                      options.resize_to, options.resize_interpolation));
  cv::Mat out;
  cv::resize(image.pixels, out, cv::Size(options.resize_to, options.resize_to), 0, 0, options.resize_interpolation);
  image.pixels = std::move(out);
  return image;
}

}  // namespace

DicomImage detail::read_dicom_here(const fs::path& file, const DicomReadOptions& options) {
  DicomMetadata meta;
  cv::Mat stored = stored_from_bytes(read_bytes(file), file, &meta, options.fast_jpeg);
  return resized(image_from_stored(std::move(stored), std::move(meta), file, options), options);
}

DicomImage detail::decode_dicom_here(std::string bytes, const std::string& name, const DicomReadOptions& options) {
  DicomMetadata meta;
  cv::Mat stored = stored_from_bytes(std::move(bytes), name, &meta, options.fast_jpeg);
  return resized(image_from_stored(std::move(stored), std::move(meta), name, options), options);
}

// Each in a worker process when the program isolates decoding (dicom_isolation.h).
DicomMetadata read_dicom_header(const fs::path& file) {
  return dicom_isolated() ? detail::isolated_read_dicom_header(file) : detail::read_dicom_header_here(file);
}

std::string read_dicom_patient_id(const fs::path& file) {
  return dicom_isolated() ? detail::isolated_read_dicom_patient_id(file) : detail::read_dicom_patient_id_here(file);
}

DicomImage read_dicom(const fs::path& file, const DicomReadOptions& options) {
  return dicom_isolated() ? detail::isolated_read_dicom(file, options) : detail::read_dicom_here(file, options);
}

DicomImage decode_dicom(std::string bytes, const std::string& name, const DicomReadOptions& options) {
  return dicom_isolated() ? detail::isolated_decode_dicom(std::move(bytes), name, options)
                          : detail::decode_dicom_here(std::move(bytes), name, options);
}

namespace {

DicomImage image_from_stored(cv::Mat stored, DicomMetadata meta, const fs::path& file, const DicomReadOptions& options) {
  DicomImage result;
  result.meta = std::move(meta);
  const DicomMetadata& m = result.meta;
  if (m.frames > 1 && options.multi_frame == DicomReadOptions::MultiFrame::kError)
    fail(file, fmt::format("has {} frames; expected a single-frame image", m.frames));
  const bool monochrome1 = m.photometric == "MONOCHROME1";
  const bool want_u8 = options.output == DicomReadOptions::Output::kUint8;

  // The common X-ray case, kept exact and fast: 8-bit grey, no rescale, no window.
  const bool identity = stored.type() == CV_8UC1 && m.rescale_slope == 1.0 &&
                        m.rescale_intercept == 0.0 &&
                        (options.window == DicomReadOptions::Window::kNone ||
                         (options.window == DicomReadOptions::Window::kFromFile &&
                          !(m.window_center && m.window_width)));
  if (identity) {
    if (monochrome1) cv::bitwise_not(stored, stored);
    if (want_u8) {
      result.pixels = std::move(stored);
    } else {
      stored.convertTo(result.pixels, CV_32F, 1.0 / 255.0);
    }
    return result;
  }

  const cv::Mat modality = to_grey_modality(stored, m);
  std::optional<std::pair<double, double>> window;
  if (options.window == DicomReadOptions::Window::kExplicit) {
    window = {{options.window_center, options.window_width}};
  } else if (options.window == DicomReadOptions::Window::kFromFile && m.window_center &&
             m.window_width) {
    window = {{*m.window_center, *m.window_width}};
  }
  cv::Mat unit;  // CV_64F in [0, 1]
  if (window) {
    const auto [center, width] = *window;
    if (!(width >= 1.0))
      fail(file, fmt::format("VOI window width {} is invalid; expected >= 1", width));
    // DICOM PS3.3 C.11.2.1.2 linear VOI function, scaled to [0, 1].
    modality.convertTo(unit, CV_64F, 1.0 / (width - 1.0), 0.5 - (center - 0.5) / (width - 1.0));
    cv::min(cv::max(unit, 0.0), 1.0, unit);
  } else if (stored.depth() == CV_8U && stored.channels() == 1 && m.rescale_slope == 1.0 &&
             m.rescale_intercept == 0.0) {
    modality.convertTo(unit, CV_64F, 1.0 / 255.0);
  } else {
    double low = 0, high = 0;
    cv::minMaxLoc(modality, &low, &high);
    const double range = high > low ? high - low : 1.0;
    modality.convertTo(unit, CV_64F, 1.0 / range, -low / range);
  }
  if (monochrome1) unit = 1.0 - unit;
  if (want_u8) {
    unit.convertTo(result.pixels, CV_8U, 255.0);  // rounds and saturates
  } else {
    unit.convertTo(result.pixels, CV_32F);
  }
  return result;
}

}  // namespace

}  // namespace pneumo::data
