#include "pneumo/data/dicom_isolation.h"

#include <cstring>
#include <memory>
#include <mutex>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "dicom_in_process.h"
#include "pneumo/core/error.h"
#include "pneumo/data/worker_pool.h"

namespace pneumo::data {

namespace fs = std::filesystem;

namespace {

// The requests, one kind byte first (the upload decoder of pneumo serve uses 'U'):
//   'I' an image file, 'B' an image in bytes, 'H' a header, 'P' a patient ID;
//   then u32 length + the file path (or the name), the read options (I, B; the resize included,
//   so a worker sends back the resized image), and for B the bytes.
// The answers: u8 1 and the result, or u8 0 and the error's message.
//   image: u32 length + the metadata as JSON, i32 rows, i32 columns, i32 OpenCV type, pixels
//   header: u32 length + the metadata as JSON; patient ID: the text
enum Kind : char { kImageFile = 'I', kImageBytes = 'B', kHeader = 'H', kPatient = 'P' };

template <class T>
void put(std::string& out, const T& value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

void put_text(std::string& out, const std::string& text) {
  put(out, static_cast<uint32_t>(text.size()));
  out += text;
}

// Reads what put wrote; throws DataError when the message is too short (a damaged answer).
class Reader {
 public:
  explicit Reader(const std::string& message, size_t at = 0) : m_(message), at_(at) {}
  template <class T>
  T get() {
    T value;
    need(sizeof value);
    std::memcpy(&value, m_.data() + at_, sizeof value);
    at_ += sizeof value;
    return value;
  }
  std::string text() {
    const auto size = get<uint32_t>();
    need(size);
    std::string t = m_.substr(at_, size);
    at_ += size;
    return t;
  }
  std::string rest() {
    std::string r = m_.substr(at_);
    at_ = m_.size();
    return r;
  }
  size_t left() const { return m_.size() - at_; }
  const char* here() const { return m_.data() + at_; }
  void need(size_t n) const {
    if (m_.size() - at_ < n) throw core::DataError("a damaged message between pneumo and its DICOM decoder");
  }

 private:
  const std::string& m_;
  size_t at_;
};

void put_options(std::string& out, const DicomReadOptions& o) {
  put(out, static_cast<uint8_t>(o.output));
  put(out, static_cast<uint8_t>(o.window));
  put(out, o.window_center);
  put(out, o.window_width);
  put(out, static_cast<uint8_t>(o.multi_frame));
  put(out, static_cast<uint8_t>(o.fast_jpeg ? 1 : 0));
  put(out, static_cast<int32_t>(o.resize_to));
  put(out, static_cast<int32_t>(o.resize_interpolation));
}

DicomReadOptions get_options(Reader& in) {
  DicomReadOptions o;
  o.output = static_cast<DicomReadOptions::Output>(in.get<uint8_t>() % 2);
  o.window = static_cast<DicomReadOptions::Window>(in.get<uint8_t>() % 3);
  o.window_center = in.get<double>();
  o.window_width = in.get<double>();
  o.multi_frame = static_cast<DicomReadOptions::MultiFrame>(in.get<uint8_t>() % 2);
  o.fast_jpeg = in.get<uint8_t>() != 0;
  o.resize_to = in.get<int32_t>();  // checked where it is applied
  o.resize_interpolation = in.get<int32_t>();
  return o;
}

nlohmann::json optional_number(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(); }
std::optional<double> number_of(const nlohmann::json& v) {
  return v.is_null() ? std::nullopt : std::optional<double>(v.get<double>());
}

std::string metadata_json(const DicomMetadata& m) {
  const nlohmann::json j{{"sop_instance_uid", m.sop_instance_uid},
                         {"study_instance_uid", m.study_instance_uid},
                         {"series_instance_uid", m.series_instance_uid},
                         {"sop_class_uid", m.sop_class_uid},
                         {"transfer_syntax_uid", m.transfer_syntax_uid},
                         {"transfer_syntax_name", m.transfer_syntax_name},
                         {"rows", m.rows},
                         {"columns", m.columns},
                         {"frames", m.frames},
                         {"samples_per_pixel", m.samples_per_pixel},
                         {"bits_allocated", m.bits_allocated},
                         {"bits_stored", m.bits_stored},
                         {"is_signed", m.is_signed},
                         {"photometric", m.photometric},
                         {"rescale_slope", m.rescale_slope},
                         {"rescale_intercept", m.rescale_intercept},
                         {"window_center", optional_number(m.window_center)},
                         {"window_width", optional_number(m.window_width)},
                         {"pixel_spacing_row_mm", optional_number(m.pixel_spacing_row_mm)},
                         {"pixel_spacing_col_mm", optional_number(m.pixel_spacing_col_mm)},
                         {"modality", m.modality},
                         {"view_position", m.view_position},
                         {"patient_id", m.patient_id},
                         {"patient_sex", m.patient_sex},
                         {"patient_age", m.patient_age},
                         {"body_part", m.body_part}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

DicomMetadata metadata_from(const std::string& text) {
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    DicomMetadata m;
    m.sop_instance_uid = j.at("sop_instance_uid");
    m.study_instance_uid = j.at("study_instance_uid");
    m.series_instance_uid = j.at("series_instance_uid");
    m.sop_class_uid = j.at("sop_class_uid");
    m.transfer_syntax_uid = j.at("transfer_syntax_uid");
    m.transfer_syntax_name = j.at("transfer_syntax_name");
    m.rows = j.at("rows");
    m.columns = j.at("columns");
    m.frames = j.at("frames");
    m.samples_per_pixel = j.at("samples_per_pixel");
    m.bits_allocated = j.at("bits_allocated");
    m.bits_stored = j.at("bits_stored");
    m.is_signed = j.at("is_signed");
    m.photometric = j.at("photometric");
    m.rescale_slope = j.at("rescale_slope");
    m.rescale_intercept = j.at("rescale_intercept");
    m.window_center = number_of(j.at("window_center"));
    m.window_width = number_of(j.at("window_width"));
    m.pixel_spacing_row_mm = number_of(j.at("pixel_spacing_row_mm"));
    m.pixel_spacing_col_mm = number_of(j.at("pixel_spacing_col_mm"));
    m.modality = j.at("modality");
    m.view_position = j.at("view_position");
    m.patient_id = j.at("patient_id");
    m.patient_sex = j.at("patient_sex");
    m.patient_age = j.at("patient_age");
    m.body_part = j.at("body_part");
    return m;
  } catch (const nlohmann::json::exception&) {
    throw core::DataError("a damaged message between pneumo and its DICOM decoder");
  }
}

// The metadata and the pixels' shape in the message, the pixels as the bulk part.
WorkerAnswer image_answer(const DicomImage& image) {
  WorkerAnswer out;
  out.message = std::string(1, '\1');
  put_text(out.message, metadata_json(image.meta));
  out.bulk = image.pixels.isContinuous() ? image.pixels : image.pixels.clone();
  put(out.message, static_cast<int32_t>(out.bulk.rows));
  put(out.message, static_cast<int32_t>(out.bulk.cols));
  put(out.message, static_cast<int32_t>(out.bulk.type()));
  return out;
}

// The image from an answer and its bulk part (the pixels), copied once, into the image.
DicomImage image_from(const std::string& answer, const char* pixels, size_t size) {
  Reader in(answer, 1);
  DicomImage image;
  image.meta = metadata_from(in.text());
  const auto rows = in.get<int32_t>(), columns = in.get<int32_t>(), type = in.get<int32_t>();
  if (rows <= 0 || columns <= 0 || (type != CV_8UC1 && type != CV_32FC1))
    throw core::DataError("a damaged message between pneumo and its DICOM decoder");
  image.pixels.create(rows, columns, type);
  const size_t bytes = image.pixels.total() * image.pixels.elemSize();
  if (size != bytes) throw core::DataError("a damaged message between pneumo and its DICOM decoder");
  std::memcpy(image.pixels.data, pixels, bytes);
  return image;
}

// The pool, made on first use from the settings.
struct Isolation {
  DicomIsolation settings;
  std::once_flag started;
  std::unique_ptr<WorkerPool> pool;
};

Isolation& state() {
  static Isolation* isolation = new Isolation;  // never destroyed: workers end with the process's pipes
  return *isolation;
}

// Sends a request; the answer, its status byte checked (the worker's error rethrown as the
// DataError it was); `on_bulk` gets an answer's bulk part.
std::string call(const std::string& request, const std::string& name, const WorkerPool::BulkReceiver& on_bulk = {}) {
  Isolation& s = state();
  std::call_once(s.started, [&s] {
    s.pool = std::make_unique<WorkerPool>(s.settings.program,
                                          std::vector<std::string>{}, s.settings.workers, s.settings.timeout_s,
                                          "the DICOM decoder");
  });
  std::string answer = s.pool->call(request, name, on_bulk);
  if (answer.empty()) throw core::DataError(fmt::format("{}: the DICOM decoder answered nothing", name));
  if (answer[0] != '\1') throw core::DataError(answer.substr(1));
  return answer;
}

std::string request_of(Kind kind, const std::string& what) {
  std::string r(1, static_cast<char>(kind));
  put_text(r, what);
  return r;
}

}  // namespace

void set_dicom_isolation(const DicomIsolation& isolation) { state().settings = isolation; }
const DicomIsolation& dicom_isolation() { return state().settings; }
bool dicom_isolated() { return state().settings.workers > 0; }
int dicom_decoder_restarts() {
  Isolation& s = state();
  return s.pool ? s.pool->restarts() : 0;
}

namespace detail {

namespace {

DicomImage image_call(const std::string& request, const std::string& name) {
  std::optional<DicomImage> image;
  call(request, name, [&](const std::string& answer, const char* pixels, size_t size) {
    if (!answer.empty() && answer[0] == '\1') image = image_from(answer, pixels, size);
  });
  if (!image) throw core::DataError(fmt::format("{}: the DICOM decoder answered without the image", name));
  return std::move(*image);
}

}  // namespace

DicomImage isolated_read_dicom(const fs::path& file, const DicomReadOptions& options) {
  std::string request = request_of(kImageFile, file.string());
  put_options(request, options);
  return image_call(request, file.string());
}

DicomImage isolated_decode_dicom(std::string bytes, const std::string& name, const DicomReadOptions& options) {
  std::string request = request_of(kImageBytes, name);
  put_options(request, options);
  request += bytes;
  return image_call(request, name);
}

DicomMetadata isolated_read_dicom_header(const fs::path& file) {
  const std::string answer = call(request_of(kHeader, file.string()), file.string());
  Reader in(answer, 1);
  return metadata_from(in.text());
}

std::string isolated_read_dicom_patient_id(const fs::path& file) {
  return call(request_of(kPatient, file.string()), file.string()).substr(1);
}

}  // namespace detail

bool is_dicom_request(const std::string& request) {
  return !request.empty() && (request[0] == kImageFile || request[0] == kImageBytes || request[0] == kHeader ||
                              request[0] == kPatient);
}

WorkerAnswer answer_dicom_request(const std::string& request) {
  const auto message = [](std::string text) {
    WorkerAnswer a;
    a.message = std::move(text);
    return a;
  };
  try {
    Reader in(request, 1);
    const std::string what = in.text();
    switch (request[0]) {
      case kImageFile: return image_answer(detail::read_dicom_here(what, get_options(in)));
      case kImageBytes: {
        const DicomReadOptions options = get_options(in);
        return image_answer(detail::decode_dicom_here(in.rest(), what, options));
      }
      case kHeader: {
        std::string out(1, '\1');
        put_text(out, metadata_json(detail::read_dicom_header_here(what)));
        return message(std::move(out));
      }
      case kPatient: return message("\1" + detail::read_dicom_patient_id_here(what));
      default: return message(std::string(1, '\0') + "not a request pneumo's DICOM decoder knows");
    }
  } catch (const core::Error& e) {
    return message(std::string(1, '\0') + e.what());
  } catch (const std::exception& e) {
    return message(std::string(1, '\0') + fmt::format("the DICOM decoder failed: {}", e.what()));
  }
}

}  // namespace pneumo::data
