// Reading DICOM images as hospitals and the SIIM challenge deliver them.
//
// GDCM parses every file and decodes every transfer syntax it supports; 8-bit greyscale
// JPEG Baseline (the SIIM files) is handed to libjpeg-turbo through OpenCV instead, which is
// about three times faster than GDCM's own codec and gives the same pixels. When the program
// isolates decoding (dicom_isolation.h), read_dicom, decode_dicom, read_dicom_header and
// read_dicom_patient_id do their work in a worker process.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include <opencv2/core/mat.hpp>

namespace pneumo::data {

struct DicomMetadata {
  std::string sop_instance_uid;
  std::string study_instance_uid;
  std::string series_instance_uid;
  std::string sop_class_uid;
  std::string transfer_syntax_uid;
  std::string transfer_syntax_name;  // e.g. "JPEG Baseline (Process 1)"
  int rows = 0;
  int columns = 0;
  int frames = 1;
  int samples_per_pixel = 1;
  int bits_allocated = 0;
  int bits_stored = 0;
  bool is_signed = false;
  std::string photometric;  // MONOCHROME1, MONOCHROME2, RGB, YBR_FULL_422, ...
  double rescale_slope = 1.0;
  double rescale_intercept = 0.0;
  std::optional<double> window_center;  // first value of (0028,1050), if present
  std::optional<double> window_width;
  std::optional<double> pixel_spacing_row_mm;  // (0028,0030), tolerant of long values
  std::optional<double> pixel_spacing_col_mm;
  std::string modality;
  std::string view_position;
  std::string patient_id;  // (0010,0020)
  std::string patient_sex;
  std::string patient_age;
  std::string body_part;  // Body Part Examined (0018,0015)
};

struct DicomReadOptions {
  enum class Output { kUint8, kFloat32 };
  enum class Window { kNone, kFromFile, kExplicit };
  enum class MultiFrame { kFirst, kError };

  Output output = Output::kUint8;
  // kNone maps the image's own range: 8-bit data unchanged, anything else min..max.
  // kFromFile uses the file's VOI window when it has one (else as kNone).
  Window window = Window::kNone;
  double window_center = 0.0;  // for kExplicit
  double window_width = 0.0;
  MultiFrame multi_frame = MultiFrame::kFirst;
  // Decode 8-bit greyscale JPEG Baseline with libjpeg-turbo (false: always GDCM's codecs).
  bool fast_jpeg = true;
  // Above 0: the pixels come back resized to resize_to x resize_to with this OpenCV
  // interpolation flag (cv::INTER_NEAREST 0, LINEAR 1, CUBIC 2, AREA 3), resized by the process
  // that decodes: a decoder process (dicom_isolation.h) then sends back the small image, not
  // the native one. DicomImage::meta keeps the file's Rows and Columns.
  int resize_to = 0;
  int resize_interpolation = 3;
};

struct DicomImage {
  cv::Mat pixels;  // [rows, columns] CV_8UC1 (0..255) or CV_32FC1 (0..1), MONOCHROME2 sense
  DicomMetadata meta;
};

// Decodes the first frame to one grey channel: Rescale Slope/Intercept applied, VOI window
// or range mapping, RGB/YBR converted to grey, MONOCHROME1 inverted. Throws DataError naming
// the file and the reason (missing, not DICOM, truncated, no pixel data, unsupported syntax,
// absurd dimensions, multi-frame when refused).
DicomImage read_dicom(const std::filesystem::path& file, const DicomReadOptions& options = {});

// The same for a file's bytes already in memory (an upload); `name` stands for the source in
// errors. Untrusted bytes go through the same structural checks as files.
DicomImage decode_dicom(std::string bytes, const std::string& name, const DicomReadOptions& options = {});

// What the header alone says of the image (GDCM stops before the pixel data, nothing is
// decoded): sizes, bit depths, photometric interpretation, rescale, VOI window, pixel spacing,
// transfer syntax and the patient/study fields, after the same structural checks as a full
// read. `frames` is (0028,0008) or 1. Throws DataError naming the file when it is not a
// readable DICOM image header.
DicomMetadata read_dicom_header(const std::filesystem::path& file);

// Patient ID (0010,0020) from the header alone (GDCM stops reading before the pixel data),
// after the same structural checks as a full read; empty when the file has none. Throws
// DataError naming the file when it is not a readable DICOM.
std::string read_dicom_patient_id(const std::filesystem::path& file);

// The stored pixel values of the first frame exactly as in the file (no rescale, no
// inversion): CV_8U/CV_8S/CV_16U/CV_16S/CV_32S with 1 or 3 channels (RGB order).
// This is what pydicom's `pixel_array` holds; the conformance tests compare the two.
cv::Mat read_dicom_stored(const std::filesystem::path& file, DicomMetadata* meta = nullptr,
                          bool fast_jpeg = true);

}  // namespace pneumo::data
