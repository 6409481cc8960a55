#include <catch2/catch.hpp>

#include <fstream>
#include <iostream>
#include <sstream>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "pneumo/core/error.h"
#include "pneumo/data/dicom.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

using namespace pneumo;
using data::DicomReadOptions;
using pneumo::testing::run_command;
using pneumo::testing::TempDir;
using pneumo::testing::write_file;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

const fs::path kPydicomFiles = PNEUMO_PYDICOM_TEST_FILES;
const fs::path kSiim = fs::path(PNEUMO_SHARED_DATA_DIR) / "siim";
const std::string kReferenceScript = PNEUMO_SOURCE_DIR "/tests/data/reference_dicom.py";

struct Reference {
  std::string name;
  bool ok = false;
  int rows = 0, columns = 0, samples = 0;
  std::string syntax;
  std::string message;
};

std::vector<Reference> run_reference(const fs::path& source, const fs::path& out) {
  const auto r = run_command({PNEUMO_REFERENCE_PYTHON, kReferenceScript, source.string(), out.string()});
  REQUIRE(r.exit_code == 0);
  std::ifstream manifest(out / "manifest.tsv");
  std::vector<Reference> refs;
  std::string line;
  while (std::getline(manifest, line)) {
    std::istringstream fields(line);
    Reference ref;
    std::string status, rows, cols, samples;
    std::getline(fields, ref.name, '\t');
    std::getline(fields, status, '\t');
    std::getline(fields, rows, '\t');
    std::getline(fields, cols, '\t');
    std::getline(fields, samples, '\t');
    std::getline(fields, ref.syntax, '\t');
    std::getline(fields, ref.message, '\t');
    ref.ok = status == "ok";
    ref.rows = std::stoi(rows);
    ref.columns = std::stoi(cols);
    ref.samples = std::stoi(samples);
    refs.push_back(ref);
  }
  return refs;
}

cv::Mat load_reference_pixels(const fs::path& file, const Reference& ref) {
  cv::Mat pixels(ref.rows, ref.columns, CV_32SC(ref.samples));
  std::ifstream in(file, std::ios::binary);
  in.read(reinterpret_cast<char*>(pixels.data), static_cast<std::streamsize>(pixels.total() * pixels.elemSize()));
  REQUIRE(in.gcount() == static_cast<std::streamsize>(pixels.total() * pixels.elemSize()));
  return pixels;
}

bool is_lossy_jpeg(const std::string& syntax) {
  return syntax == "1.2.840.10008.1.2.4.50" || syntax == "1.2.840.10008.1.2.4.51";
}

// Largest absolute difference between our stored pixels and the reference's.
double max_difference(const cv::Mat& ours, const cv::Mat& reference) {
  cv::Mat wide;
  ours.convertTo(wide, CV_32S);
  if (wide.size() != reference.size() || wide.channels() != reference.channels()) return 1e9;
  cv::Mat diff;
  cv::absdiff(wide, reference, diff);
  double low = 0, high = 0;
  cv::minMaxLoc(diff.reshape(1), &low, &high);
  return high;
}

// Writes pydicom's MR_small.dcm to `out` after running `edit` (Python statements on `ds`).
// False when pydicom's test files are not installed.
// pydicom's test file `name`, edited by the Python statements `edit` (on `ds`), saved to `out`;
// false when pydicom's test files are not installed.
bool write_edited(const std::string& name, const std::string& edit, const fs::path& out) {
  const fs::path source = kPydicomFiles / name;
  if (!fs::exists(source)) return false;
  const auto r = run_command({PNEUMO_REFERENCE_PYTHON, "-W", "ignore", "-c",
                              "import sys, pydicom\n"
                              "from pydicom.uid import ExplicitVRLittleEndian\n"
                              "ds = pydicom.dcmread(sys.argv[1])\n" + edit + "\nds.save_as(sys.argv[2])\n",
                              source.string(), out.string()});
  REQUIRE(r.exit_code == 0);
  return true;
}

bool write_edited_mr_small(const std::string& edit, const fs::path& out) { return write_edited("MR_small.dcm", edit, out); }

}  // namespace

TEST_CASE("DICOM conformance with pydicom on its own test corpus") {
  if (!fs::is_directory(kPydicomFiles)) {
    WARN("pydicom's test files are not in .venv (tools/setup.sh --tests); skipping");
    return;
  }
  TempDir out;
  const auto refs = run_reference(kPydicomFiles, out.path());
  std::vector<std::string> matched, rejected_by_us, decoded_only_by_us, rejected_by_both;
  for (const auto& ref : refs) {
    INFO(ref.name << " (" << ref.syntax << ")");
    const fs::path file = kPydicomFiles / ref.name;
    cv::Mat ours;
    std::string our_error;
    try {
      ours = data::read_dicom_stored(file);
    } catch (const core::DataError& e) {
      our_error = e.what();
      CHECK_THAT(our_error, Contains(ref.name));  // a clear error names the file
    }
    if (ref.ok && our_error.empty()) {
      const cv::Mat expected = load_reference_pixels(out / (ref.name + ".raw"), ref);
      const double tolerance = is_lossy_jpeg(ref.syntax) ? 1.0 : 0.0;
      const double diff = max_difference(ours, expected);
      CHECK(diff <= tolerance);
      matched.push_back(ref.name + (diff > 0 ? " (max diff " + std::to_string(int(diff)) + ")" : ""));
    } else if (ref.ok) {
      rejected_by_us.push_back(ref.name + ": " + our_error);
    } else if (our_error.empty()) {
      decoded_only_by_us.push_back(ref.name + " (pydicom: " + ref.message.substr(0, 60) + ")");
    } else {
      rejected_by_both.push_back(ref.name + ": " + our_error);
    }
  }
  const auto print = [](const char* title, const std::vector<std::string>& items) {
    std::cout << title << " (" << items.size() << "):\n";
    for (const auto& item : items) std::cout << "  " << item << "\n";
  };
  print("equal to pydicom", matched);
  print("decoded by pydicom, rejected by pneumo", rejected_by_us);
  print("rejected by pydicom, decoded by pneumo", decoded_only_by_us);
  print("rejected by both", rejected_by_both);
  CHECK(matched.size() >= 48);
  // Known, deliberate refusals: GDCM decodes 16/32-bit colour RLE wrongly; the rtdose_*1frame
  // files have a Frame Increment Pointer without Number of Frames, which aborts GDCM; the
  // liver files are 1-bit segmentations. Anything else pydicom decodes must decode here too.
  const std::vector<std::string> expected_refusals = {
      "SC_rgb_rle_16bit.dcm",   "SC_rgb_rle_16bit_2frame.dcm", "SC_rgb_rle_32bit.dcm",
      "SC_rgb_rle_32bit_2frame.dcm", "rtdose_1frame.dcm",     "rtdose_expb_1frame.dcm",
      "rtdose_rle_1frame.dcm",  "liver_1frame.dcm",            "liver_expb_1frame.dcm",
      // GDCM 3.0 cannot decode a JPEG 2000 stream whose fragments embed a delimiter.
      "JPEG2000-embedded-sequence-delimiter.dcm",
      // A palette image: pydicom gives its indices; pneumo would read them as grey levels (and
      // GDCM aborts on a PALETTE COLOR file without its palette), so the structure check refuses it.
      "examples_palette.dcm"};
  for (const auto& item : rejected_by_us) {
    INFO(item);
    const std::string name = item.substr(0, item.find(':'));
    CHECK(std::find(expected_refusals.begin(), expected_refusals.end(), name) !=
          expected_refusals.end());
  }
}

TEST_CASE("the real SIIM JPEG DICOMs decode like pydicom, with the fast and the GDCM codec") {
  if (!fs::is_directory(kSiim / "dicom")) {
    WARN("../shared/data/siim is absent; skipping the real-data test");
    return;
  }
  TempDir out;
  const auto refs = run_reference(kSiim / "dicom", out.path());
  REQUIRE(refs.size() == 10);
  for (const auto& ref : refs) {
    INFO(ref.name);
    REQUIRE(ref.ok);
    data::DicomMetadata meta;
    const cv::Mat fast = data::read_dicom_stored(kSiim / "dicom" / ref.name, &meta, true);
    const cv::Mat gdcm = data::read_dicom_stored(kSiim / "dicom" / ref.name, nullptr, false);
    const cv::Mat expected = load_reference_pixels(out / (ref.name + ".raw"), ref);
    CHECK(max_difference(fast, expected) <= 1);
    CHECK(max_difference(gdcm, expected) <= 1);
    CHECK(meta.rows == 1024);
    CHECK(meta.photometric == "MONOCHROME2");
    CHECK(meta.transfer_syntax_uid == "1.2.840.10008.1.2.4.50");
    CHECK(meta.pixel_spacing_row_mm.has_value());  // tolerated even when 19 characters long
    CHECK(ref.name == meta.sop_instance_uid + ".dcm");
    // The display image of an 8-bit MONOCHROME2 file is its stored values.
    const data::DicomImage image = data::read_dicom(kSiim / "dicom" / ref.name);
    CHECK(cv::norm(image.pixels, fast, cv::NORM_INF) == 0);
  }
}

TEST_CASE("MONOCHROME1 is inverted to the MONOCHROME2 convention") {
  const fs::path file = kSiim / "monochrome1-relabelled.dcm";
  if (!fs::exists(file)) {
    WARN("../shared/data/siim is absent; skipping");
    return;
  }
  data::DicomMetadata meta;
  const cv::Mat stored = data::read_dicom_stored(file, &meta);
  CHECK(meta.photometric == "MONOCHROME1");
  const data::DicomImage image = data::read_dicom(file);
  cv::Mat inverted;
  cv::bitwise_not(stored, inverted);
  CHECK(cv::norm(image.pixels, inverted, cv::NORM_INF) == 0);
  DicomReadOptions as_float;
  as_float.output = DicomReadOptions::Output::kFloat32;
  const data::DicomImage f = data::read_dicom(file, as_float);
  CHECK(f.pixels.type() == CV_32FC1);
  CHECK(f.pixels.at<float>(100, 100) == Approx(inverted.at<uchar>(100, 100) / 255.0));
}

TEST_CASE("rescale and a VOI window map CT values like pydicom's formulas") {
  const fs::path file = kPydicomFiles / "CT_small.dcm";
  if (!fs::exists(file)) {
    WARN("pydicom's test files are not in .venv (tools/setup.sh --tests); skipping");
    return;
  }
  TempDir out;
  const std::string script =
      "import sys, numpy as np, pydicom\n"
      "from pydicom.pixels import apply_modality_lut\n"
      "ds = pydicom.dcmread(sys.argv[1])\n"
      "x = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)\n"
      "c, w = 40.0, 400.0\n"
      "y = np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)\n"
      "np.round(y * 255).astype('<i4').tofile(sys.argv[2])\n";
  const auto r = run_command({PNEUMO_REFERENCE_PYTHON, "-c", script, file.string(),
                              (out / "ct.raw").string()});
  REQUIRE(r.exit_code == 0);
  DicomReadOptions options;
  options.window = DicomReadOptions::Window::kExplicit;
  options.window_center = 40.0;
  options.window_width = 400.0;
  const data::DicomImage image = data::read_dicom(file, options);
  CHECK(image.meta.rescale_intercept != 0.0);
  Reference ref;
  ref.rows = image.pixels.rows;
  ref.columns = image.pixels.cols;
  ref.samples = 1;
  CHECK(max_difference(image.pixels, load_reference_pixels(out / "ct.raw", ref)) <= 1);

  // Without a window, 16-bit data spans the full 0..255 range.
  const data::DicomImage plain = data::read_dicom(file);
  double low = 0, high = 0;
  cv::minMaxLoc(plain.pixels, &low, &high);
  CHECK(low == 0);
  CHECK(high == 255);
}

TEST_CASE("bad DICOM input gives a data error naming the file and the reason") {
  TempDir dir;
  CHECK_THROWS_WITH(data::read_dicom(dir / "absent.dcm"), Contains("absent.dcm: no such file"));
  CHECK_THROWS_WITH(data::read_dicom(dir.path()), Contains("is a folder"));
  const auto text = write_file(dir / "notes.dcm", "this is not a DICOM file\n");
  CHECK_THROWS_WITH(data::read_dicom(text), Contains("notes.dcm") && Contains("not a DICOM Part 10 file"));
  const auto empty = write_file(dir / "empty.dcm", "");
  CHECK_THROWS_AS(data::read_dicom(empty), core::DataError);

  if (fs::exists(kPydicomFiles / "rtplan.dcm")) {
    CHECK_THROWS_WITH(data::read_dicom(kPydicomFiles / "rtplan.dcm"), Contains("no pixel data"));
    DicomReadOptions single;
    single.multi_frame = DicomReadOptions::MultiFrame::kError;
    CHECK_THROWS_WITH(data::read_dicom(kPydicomFiles / "SC_rgb_rle_2frame.dcm", single),
                      Contains("2 frames"));
    CHECK(data::read_dicom(kPydicomFiles / "SC_rgb_rle_2frame.dcm").pixels.channels() == 1);
    CHECK_THROWS_AS(data::read_dicom(kPydicomFiles / "MR_truncated.dcm"), core::DataError);
  }

  // Truncated copies of a real JPEG DICOM, cut at several points.
  const fs::path siim = kSiim / "dicom/1.2.276.0.7230010.3.1.4.8323329.1000.1517875165.878027.dcm";
  if (fs::exists(siim)) {
    const std::string bytes = pneumo::testing::read_file(siim);
    for (size_t keep : {size_t{100}, size_t{700}, bytes.size() / 2, bytes.size() - 10}) {
      INFO("kept " << keep << " bytes");
      const auto cut = write_file(dir / "cut.dcm", bytes.substr(0, keep));
      CHECK_THROWS_AS(data::read_dicom(cut), core::DataError);
      CHECK_THROWS_AS(data::read_dicom_stored(cut, nullptr, false), core::DataError);
    }
  }
}

TEST_CASE("resize_to gives the decoded image resized as cv::resize does, and keeps the file's size in meta") {
  const fs::path file = kPydicomFiles / "MR_small.dcm";  // 64 x 64, 16-bit
  if (!fs::exists(file)) {
    WARN("pydicom's test files are not in .venv (tools/setup.sh --tests); skipping");
    return;
  }
  const data::DicomImage native = data::read_dicom(file);
  for (const int interpolation : {cv::INTER_NEAREST, cv::INTER_LINEAR, cv::INTER_CUBIC, cv::INTER_AREA}) {
    INFO("interpolation " << interpolation);
    DicomReadOptions options;
    options.resize_to = 24;
    options.resize_interpolation = interpolation;
    const data::DicomImage small = data::read_dicom(file, options);
    cv::Mat expected;
    cv::resize(native.pixels, expected, cv::Size(24, 24), 0, 0, interpolation);
    REQUIRE(small.pixels.size() == cv::Size(24, 24));
    CHECK(cv::norm(small.pixels, expected, cv::NORM_INF) == 0);
    CHECK(small.meta.rows == 64);
    CHECK(small.meta.columns == 64);
  }
  DicomReadOptions same;
  same.resize_to = 64;
  CHECK(cv::norm(data::read_dicom(file, same).pixels, native.pixels, cv::NORM_INF) == 0);
  DicomReadOptions wrong;
  wrong.resize_to = 32;
  wrong.resize_interpolation = 7;
  CHECK_THROWS_WITH(data::read_dicom(file, wrong), Contains("interpolation 7") && Contains("expected"));
  wrong.resize_interpolation = cv::INTER_AREA;
  wrong.resize_to = 100000;
  CHECK_THROWS_WITH(data::read_dicom(file, wrong), Contains("100000 px"));
}

TEST_CASE("absurd image dimensions are refused before any allocation") {
  TempDir dir;
  const fs::path huge = dir / "huge.dcm";
  if (!write_edited_mr_small("ds.Rows = 65535; ds.Columns = 65535; ds.NumberOfFrames = 500", huge)) {
    WARN("pydicom's test files are not in .venv (tools/setup.sh --tests); skipping");
    return;
  }
  CHECK_THROWS_WITH(data::read_dicom(huge), Contains("huge.dcm"));
}

TEST_CASE("DICOM files cut at any point give a data error, never a crash") {
  // GDCM (as built by Debian) aborts on many truncated headers; the structure check must
  // catch every one of them. Cuts: every byte of the first 2 KiB, then coarser steps.
  std::vector<fs::path> sources = {kPydicomFiles / "MR_small.dcm", kPydicomFiles / "JPEG2000.dcm",
                                   kPydicomFiles / "SC_rgb_rle.dcm",
                                   kPydicomFiles / "ExplVR_BigEnd.dcm",
                                   kSiim / "dicom/1.2.276.0.7230010.3.1.4.8323329.1000.1517875165.878027.dcm"};
  TempDir dir;
  int cuts = 0;
  for (const auto& source : sources) {
    if (!fs::exists(source)) continue;
    const std::string bytes = pneumo::testing::read_file(source);
    for (size_t keep = 0; keep + 1 < bytes.size(); keep += keep < 2048 ? 1 : 997) {
      INFO(source.filename().string() << " cut to " << keep << " of " << bytes.size() << " bytes");
      const auto cut = write_file(dir / "cut.dcm", bytes.substr(0, keep));
      CHECK_THROWS_AS(data::read_dicom(cut), core::DataError);
      try {  // the header alone may survive a cut in the pixel data; any refusal is a DataError
        data::read_dicom_header(cut);
      } catch (const core::DataError&) {
      }
      ++cuts;
    }
  }
  if (cuts == 0) WARN("no source files available; skipping");
}

TEST_CASE("the header alone says what a full read says of the image, without decoding it") {
  std::vector<fs::path> files;
  for (const fs::path& folder : {kPydicomFiles, kSiim / "dicom"})
    if (fs::is_directory(folder))
      for (const auto& e : fs::directory_iterator(folder))
        if (e.path().extension() == ".dcm") files.push_back(e.path());
  if (files.empty()) {
    WARN("no DICOM files available (pydicom's test files, ../shared/data/siim); skipping");
    return;
  }
  int compared = 0;
  for (const fs::path& file : files) {
    INFO(file.string());
    data::DicomMetadata full;
    try {
      data::read_dicom_stored(file, &full);
    } catch (const core::DataError&) {
      try {  // unreadable images: the header read refuses them cleanly or reads what is there
        data::read_dicom_header(file);
      } catch (const core::DataError&) {
      }
      continue;
    }
    const data::DicomMetadata header = data::read_dicom_header(file);
    CHECK(header.rows == full.rows);
    CHECK(header.columns == full.columns);
    // For JPEG 2000 GDCM reports the code stream's precision; the header gives what the file declares.
    if (full.transfer_syntax_uid.rfind("1.2.840.10008.1.2.4.9", 0) != 0) CHECK(header.bits_stored == full.bits_stored);
    CHECK(header.samples_per_pixel == full.samples_per_pixel);
    CHECK(header.photometric == full.photometric);
    CHECK(header.transfer_syntax_uid == full.transfer_syntax_uid);
    CHECK(header.pixel_spacing_row_mm == full.pixel_spacing_row_mm);
    CHECK(header.patient_id == full.patient_id);
    CHECK(header.sop_instance_uid == full.sop_instance_uid);
    ++compared;
  }
  CHECK(compared >= 5);
}

TEST_CASE("DICOM files the fuzzer found problems with are refused cleanly or read") {
  // Each once made GDCM abort the process (an assertion in its parser) or misbehave; pneumo's
  // structure check now refuses them first. The few listed here are readable images and now
  // read (each once made GDCM allocate gigabytes).
  const std::vector<std::string> readable = {"implicit-vr-under-jpeg-syntax.dcm"};
  const std::filesystem::path folder = std::filesystem::path(PNEUMO_SOURCE_DIR) / "tests/fuzz/regressions/dicom";
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    INFO(entry.path().string());
    const std::string name = entry.path().filename().string();
    if (std::find(readable.begin(), readable.end(), name) != readable.end())
      CHECK(pneumo::data::read_dicom(entry.path()).pixels.rows > 0);
    else
      CHECK_THROWS_AS(pneumo::data::read_dicom(entry.path()), pneumo::core::DataError);
    try {
      pneumo::data::read_dicom_header(entry.path());
    } catch (const pneumo::core::DataError&) {
    }
    ++files;
  }
  CHECK(files >= 1);
  // Refused by the structure check before GDCM allocates the 3.8 GB the delimiter declares.
  CHECK_THROWS_WITH(pneumo::data::read_dicom(folder / "delimiter-with-nonzero-length.dcm"),
                    Contains("(FFFE,E0DD)") && Contains("delimiters have length 0"));
}

TEST_CASE("JPEG 2000 headers that break the standard are refused before OpenJPEG reads them") {
  // OpenJPEG read out of bounds (AddressSanitizer) on a tile-part header whose SOD marker was
  // damaged (fuzz regression dicom/jpeg2000-tile-part-header-not-a-marker.dcm). The codestream
  // check walks the main and first tile-part headers; here each rule is met by one field of a
  // real JPEG 2000 DICOM changed, and pydicom's JPEG 2000 files (the conformance test above)
  // all pass it.
  const fs::path source = kPydicomFiles / "MR_small_jp2klossless.dcm";
  if (!fs::exists(source)) {
    WARN("pydicom's test files are not in .venv (tools/setup.sh --tests); skipping");
    return;
  }
  const std::string original = pneumo::testing::read_file(source);
  const size_t soc = original.find("\xFF\x4F\xFF\x51");
  REQUIRE(soc != std::string::npos);
  const size_t cod = original.find("\xFF\x52", soc);
  REQUIRE(cod != std::string::npos);
  REQUIRE(data::read_dicom(source).pixels.rows == 64);
  struct Damage {
    size_t at;
    std::string bytes;
    const char* message;
  };
  const std::vector<Damage> damages = {
      {soc + 24, std::string("\0\0\0\0", 4), "tile size of 0"},                 // XTsiz
      {soc + 40, std::string("\0\x02", 2), "does not fit its 2 components"},    // Csiz
      {soc + 8, std::string("\0\0\0\x41", 4), "where the DICOM header says"},   // Xsiz: 65 columns
      {soc + 43, std::string("\0", 1), "sampling step of 0"},                   // XRsiz
      {cod + 5, std::string("\x07", 1), "progression order 7"},
      {cod + 9, std::string("\x28", 1), "40 decomposition levels"},
      {cod + 10, std::string("\x09", 1), "code-blocks"},
      {cod + 13, std::string("\x05", 1), "wavelet 5"},
      {soc + 2, std::string("\xFF\x64", 2), "does not begin with SIZ"},
  };
  TempDir dir;
  for (const Damage& d : damages) {
    INFO(d.message);
    std::string bytes = original;
    bytes.replace(d.at, d.bytes.size(), d.bytes);
    const fs::path file = dir / "damaged.dcm";
    pneumo::testing::write_file(file, bytes);
    CHECK_THROWS_WITH(data::read_dicom(file), Contains("JPEG 2000") && Contains(d.message));
  }
  const fs::path found = fs::path(PNEUMO_SOURCE_DIR) / "tests/fuzz/regressions/dicom/jpeg2000-tile-part-header-not-a-marker.dcm";
  CHECK_THROWS_WITH(data::read_dicom(found), Contains("0x2F2F at byte 206 of the JPEG 2000 stream where a marker belongs"));
}

TEST_CASE("a Photometric Interpretation pneumo does not read is refused by name") {
  TempDir dir;
  for (const char* photometric : {"PALETTE COLOR", "HSV", "MONOCHROME3"}) {
    INFO(photometric);
    const fs::path file = dir / "edited.dcm";
    if (!write_edited_mr_small(std::string("ds.PhotometricInterpretation = '") + photometric + "'", file)) {
      WARN("pydicom's test files are not in .venv (tools/setup.sh --tests); skipping");
      return;
    }
    CHECK_THROWS_WITH(data::read_dicom(file), Contains(std::string("Photometric Interpretation (0028,0004) '") +
                                                       photometric + "'"));
    CHECK_THROWS_AS(data::read_dicom_header(file), core::DataError);
  }
}

TEST_CASE("each class of GDCM abort the mutation search found is refused by the structure check, by name") {
  // tools/fuzz/dicom_mutations.py over SIIM and pydicom files (2026-12-04, 19,000 mutations and a
  // scan of every VR on every element): each of these made GDCM assert and abort the process
  // that read it (the decoder processes named the files). Each is rebuilt here from a pydicom
  // test file and must be refused with a message naming what is wrong.
  struct Case {
    const char* source;
    const char* edit;
    const char* message;
  };
  const std::vector<Case> cases = {
      {"MR_small.dcm", "ds.PhotometricInterpretation = 'RGB'", "Samples per Pixel (0028,0002) with the Photometric"},
      {"SC_rgb_rle.dcm", "ds.BitsAllocated = 24", "with RLE pixel data; expected 8, 16 or 32"},
      {"SC_rgb_rle.dcm", "ds.PhotometricInterpretation = 'YBR_FULL_422'", "YBR_FULL_422 is for native and JPEG"},
      {"SC_rgb_jpeg_gdcm.dcm", "ds.BitsStored = 3", "expected Bits Stored (0028,0101) equal to Bits Allocated"},
      {"MR_small_jpeg_ls_lossless.dcm", "ds.Rows = 65535", "a JPEG frame of 64x64 where the DICOM header says"},
      {"JPEGLSNearLossless_08.dcm", "ds.BitsAllocated = 16", "a JPEG-LS frame of 8 bits per sample"},
      {"rtdose_rle.dcm", "ds.BitsStored = 7", "samples of more than 16 bits"},
      {"J2K_pixelrep_mismatch.dcm", "ds.BitsAllocated = 1", "with JPEG 2000 or JPEG-LS pixel data"},
      {"CT_small.dcm", "e = ds['PixelSpacing']; v = [str(x) for x in e.value]; e.VR = 'CS'; e.value = v", "(0028,0030) at byte"},
      {"CT_small.dcm", "e = ds['RescaleSlope']; v = str(e.value); e.VR = 'CS'; e.value = v", "(0028,1053) at byte"},
      {"CT_small.dcm", "e = ds['ImagePositionPatient']; v = [str(x) for x in e.value]; e.VR = 'CS'; e.value = v",
       "(0020,0032) at byte"},
      {"MR_small.dcm", "ds.Rows = [64, 64]", "expected one US value"},
      {"examples_overlay.dcm", "e = ds[0x60000011]; e.VR = 'LO'; e.value = '484'", "(6000,0011) at byte"},
      {"MR_small.dcm",
       "ds.SOPClassUID = '1.2.840.10008.5.1.4.1.1.1'; ds.ImagerPixelSpacing = [0.5, 0.5]\n"
       "e = ds['ImagerPixelSpacing']; e.VR = 'CS'; e.value = ['0.5', '0.5']",
       "(0018,1164) at byte"},
      {"MR_small.dcm", "ds.PhotometricInterpretation = 'PALETTE COLOR'", "'PALETTE COLOR'"},
      // fuzz_dicom's depth run (2026-12-04, after 188,994 executions): PixmapReader asserts that a
      // Recognition Code says ACR-NEMA.
      {"MR_small.dcm", "ds.add_new(0x00080010, 'SH', 'DICOM 3.0')", "Recognition Code (0008,0010) at byte"},
      // fuzz_dicom's depth run (2026-12-04, after 663,850 executions): a damaged first value of
      // RT Dose's Grid Frame Offset Vector; GDCM's Z spacing asserts that it has two values.
      {"rtdose.dcm", "ds.GridFrameOffsetVector = [0.0]", "Grid Frame Offset Vector (3004,000C) at byte"},
      // fuzz_dicom's depth run (2026-12-04, after 542,329 executions): a Segmentation whose
      // functional groups lacked a usable orientation; GDCM asserts on that nested geometry.
      {"MR_small.dcm", "ds.SOPClassUID = '1.2.840.10008.5.1.4.1.1.66.4'", "is a Segmentation object"},
      {"MR_small.dcm", "ds.file_meta.MediaStorageSOPClassUID = '1.2.840.10008.5.1.4.1.1.4.1'",
       "is an Enhanced MR Image object"},
  };
  TempDir dir;
  for (const Case& c : cases) {
    INFO(c.source << ": " << c.edit);
    const fs::path file = dir / "edited.dcm";
    if (!write_edited(c.source, c.edit, file)) {
      WARN("pydicom's test files are not in .venv (tools/setup.sh --tests); skipping");
      return;
    }
    CHECK_THROWS_WITH(data::read_dicom(file), Contains(c.message));
  }
  // The offset table's item tag of encapsulated pixel data damaged into (FF53,E000) (the depth
  // run's fuzz_dicom, 2026-12-04, after 318,427 executions): GDCM's reader stops there and
  // asserts that it reached the end of the file.
  std::string encapsulated = pneumo::testing::read_file(kPydicomFiles / "SC_rgb_jpeg.dcm");
  const size_t item = encapsulated.find(std::string("\xE0\x7F\x10\x00\xFF\xFF\xFF\xFF\xFE\xFF\x00\xE0", 12));
  REQUIRE(item != std::string::npos);
  encapsulated[item + 8] = '\x53';
  pneumo::testing::write_file(dir / "item.dcm", encapsulated);
  CHECK_THROWS_WITH(data::read_dicom(dir / "item.dcm"),
                    Contains("element (FF53,E000)") && Contains("inside encapsulated pixel data"));
  // The damaged value itself: "0.0" became "0.\x04" (rtdose.dcm is implicit VR: the tag, then a
  // 4-byte length, then the value).
  std::string dose = pneumo::testing::read_file(kPydicomFiles / "rtdose.dcm");
  const size_t offsets = dose.find(std::string("\x04\x30\x0c\x00\xf2\x00\x00\x00" "0.0\\", 12));
  REQUIRE(offsets != std::string::npos);
  dose[offsets + 10] = '\x04';
  pneumo::testing::write_file(dir / "dose.dcm", dose);
  CHECK_THROWS_WITH(data::read_dicom(dir / "dose.dcm"),
                    Contains("Grid Frame Offset Vector (3004,000C) at byte") && Contains("value 1 is not a decimal number"));
  // What ACR-NEMA writers put there still reads.
  REQUIRE(write_edited("MR_small.dcm", "ds.add_new(0x00080010, 'SH', 'ACR-NEMA 2.0')", dir / "acr.dcm"));
  CHECK(data::read_dicom(dir / "acr.dcm").pixels.rows == 64);
  // The meta group's length element (0002,0000) said to be a sequence.
  std::string bytes = pneumo::testing::read_file(kPydicomFiles / "MR_small.dcm");
  const size_t at = bytes.find(std::string("\x02\x00\x00\x00UL", 6));
  REQUIRE(at != std::string::npos);
  bytes.replace(at + 4, 2, "SQ");
  pneumo::testing::write_file(dir / "meta.dcm", bytes);
  CHECK_THROWS_WITH(data::read_dicom(dir / "meta.dcm"), Contains("file meta element (0002,0000)"));
  // An RLE frame whose second segment offset points past the fragment: GDCM's RLE codec read out
  // of bounds (SIGSEGV; the seed-29 mutation run found it).
  std::string rle = pneumo::testing::read_file(kPydicomFiles / "SC_rgb_rle.dcm");
  const size_t header = rle.find(std::string("\x03\x00\x00\x00\x40\x00\x00\x00", 8));
  REQUIRE(header != std::string::npos);
  rle.replace(header + 8, 4, std::string("\xFF\xFF\x00\x00", 4));
  pneumo::testing::write_file(dir / "rle.dcm", rle);
  CHECK_THROWS_WITH(data::read_dicom(dir / "rle.dcm"), Contains("RLE fragment at byte") && Contains("segment 2 at byte 65535"));
  // Stray bytes before a marker in the header of a later frame of a multi-frame JPEG (the depth
  // run's fuzz_dicom, 2026-12-04, after 263,959 executions, wrote text over frame 17's second DQT
  // marker): libjpeg warns and GDCM's JPEG codec aborts; only the first frame was judged then.
  std::string frames = pneumo::testing::read_file(kPydicomFiles / "examples_ybr_color.dcm");
  const std::string soi("\xFF\xD8\xFF\xE0", 4);
  size_t frame17 = std::string::npos;
  for (int k = 0, from = 0; k < 17; ++k, from = static_cast<int>(frame17) + 1) frame17 = frames.find(soi, from);
  REQUIRE(frame17 != std::string::npos);
  REQUIRE(frames.compare(frame17 + 89, 2, "\xFF\xDB") == 0);
  frames.replace(frame17 + 89, 4, "Sequ");
  pneumo::testing::write_file(dir / "frames.dcm", frames);
  CHECK_THROWS_WITH(data::read_dicom(dir / "frames.dcm"),
                    Contains("fragment 17, a frame's start") && Contains("stray bytes before a JPEG marker at byte 89"));
}

TEST_CASE("a data set encoded with implicit VR under an explicit transfer syntax reads as pydicom reads it") {
  // Some writers do this (pydicom's SC_rgb_jpeg.dcm is such a file under JPEG Baseline; the
  // conformance test above compares its pixels). GDCM, left to guess element by element, once
  // allocated 1.3 GB for a 4 KB file of this kind (fuzz regression
  // dicom/implicit-vr-under-jpeg-syntax.dcm); pneumo relabels the header while GDCM parses.
  TempDir dir;
  const fs::path mislabelled = dir / "mislabelled.dcm";
  if (!write_edited_mr_small("ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian\n"
                             "ds.is_implicit_VR = True\n"
                             "ds.is_little_endian = True",
                             mislabelled)) {
    WARN("pydicom's test files are not in .venv (tools/setup.sh --tests); skipping");
    return;
  }
  const fs::path source = kPydicomFiles / "MR_small.dcm";
  const std::string bytes = pneumo::testing::read_file(mislabelled);
  REQUIRE(bytes.find(std::string("1.2.840.10008.1.2.1\0", 20)) != std::string::npos);  // says explicit
  REQUIRE(bytes.find("MR\x02\x00") == std::string::npos);  // no explicit VR in the data set

  data::DicomMetadata meta;
  const cv::Mat ours = data::read_dicom_stored(mislabelled, &meta, true);
  const cv::Mat reference = data::read_dicom_stored(source, nullptr, true);
  REQUIRE(ours.size() == reference.size());
  CHECK(cv::norm(ours, reference, cv::NORM_INF) == 0);
  CHECK(meta.rows == 64);
  CHECK(meta.modality == "MR");
  CHECK(meta.transfer_syntax_uid == "1.2.840.10008.1.2.1");  // as the file says
}
