#include "upload_decoder.h"

#include <cstring>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "pneumo/core/error.h"

namespace pneumo::infer {

namespace {

// The request: 'U', u32 id length, id, u32 window length, window, the bytes.
// The answer: u8 1, i32 rows, i32 columns, u8 spacing known (row), f64, u8 (column), f64,
//             u32 facts length, facts (JSON: what the input gate reads of the header), and the
//             pixels as the bulk part (shared memory); or u8 0 and the error's message.
constexpr char kUpload = 'U';

template <class T>
void append(std::string& out, const T& value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

template <class T>
T take(const std::string& message, size_t& at) {
  T value;
  if (message.size() - at < sizeof value) throw core::DataError("a damaged message between pneumo and its decoder");
  std::memcpy(&value, message.data() + at, sizeof value);
  at += sizeof value;
  return value;
}

std::string take_text(const std::string& message, size_t& at) {
  const auto size = take<uint32_t>(message, at);
  if (message.size() - at < size) throw core::DataError("a damaged message between pneumo and its decoder");
  std::string text = message.substr(at, size);
  at += size;
  return text;
}

// The input gate's facts as JSON text, and back (the decoder's answer carries them).
std::string facts_to_json(const data::InputFacts& facts) {
  nlohmann::json j{{"photometric", facts.photometric}, {"bits_stored", facts.bits_stored}};
  if (facts.dicom) {
    const data::DicomMetadata& m = *facts.dicom;
    j["dicom"] = {{"modality", m.modality},     {"view_position", m.view_position}, {"body_part", m.body_part},
                  {"patient_age", m.patient_age}, {"patient_id", m.patient_id},     {"photometric", m.photometric},
                  {"bits_stored", m.bits_stored}, {"rows", m.rows},                 {"columns", m.columns},
                  {"sop_instance_uid", m.sop_instance_uid}};
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

data::InputFacts facts_from_json(const std::string& text) {
  const nlohmann::json j = nlohmann::json::parse(text);
  data::InputFacts facts;
  facts.photometric = j.at("photometric").get<std::string>();
  facts.bits_stored = j.at("bits_stored").get<int>();
  if (j.contains("dicom")) {
    const nlohmann::json& d = j.at("dicom");
    data::DicomMetadata m;
    m.modality = d.at("modality").get<std::string>();
    m.view_position = d.at("view_position").get<std::string>();
    m.body_part = d.at("body_part").get<std::string>();
    m.patient_age = d.at("patient_age").get<std::string>();
    m.patient_id = d.at("patient_id").get<std::string>();
    m.photometric = d.at("photometric").get<std::string>();
    m.bits_stored = d.at("bits_stored").get<int>();
    m.rows = d.at("rows").get<int>();
    m.columns = d.at("columns").get<int>();
    m.sop_instance_uid = d.at("sop_instance_uid").get<std::string>();
    facts.dicom = std::move(m);
  }
  return facts;
}

// The image an answer describes, its pixels (the bulk part) copied once into it.
InputImage image_from(const std::string& answer, const char* pixels, size_t size, const std::string& id) {
  InputImage image;
  image.file.id = id;
  size_t at = 1;
  const auto rows = take<int32_t>(answer, at), columns = take<int32_t>(answer, at);
  for (int k = 0; k < 2; ++k) {
    const auto known = take<uint8_t>(answer, at);
    const auto spacing = take<double>(answer, at);
    if (known) image.pixel_spacing_mm[k] = spacing;
  }
  try {
    image.facts = facts_from_json(take_text(answer, at));
  } catch (const nlohmann::json::exception&) {
    throw core::DataError("a damaged message between pneumo and its decoder");
  }
  if (rows <= 0 || columns <= 0 || size != static_cast<size_t>(rows) * static_cast<size_t>(columns))
    throw core::DataError("a damaged message between pneumo and its decoder");
  image.pixels.create(rows, columns, CV_8UC1);
  std::memcpy(image.pixels.data, pixels, size);
  return image;
}

}  // namespace

UploadDecoder::UploadDecoder(std::string program, int workers, double timeout_s)
    : pool_(std::move(program), {}, workers, timeout_s, "the decoder") {}

InputImage UploadDecoder::decode(std::string bytes, const std::string& id, const std::string& window) {
  std::string request(1, kUpload);
  append(request, static_cast<uint32_t>(id.size()));
  request += id;
  append(request, static_cast<uint32_t>(window.size()));
  request += window;
  request += bytes;
  std::optional<InputImage> image;
  std::string answer;
  try {
    answer = pool_.call(request, id, [&](const std::string& message, const char* pixels, size_t size) {
      if (!message.empty() && message[0] == '\1') image = image_from(message, pixels, size, id);
    });
  } catch (const core::DataError& e) {
    throw core::DataError(fmt::format("{}; refused", e.what()));
  }
  if (answer.empty() || answer[0] != '\1') throw core::DataError(answer.empty() ? id + ": the decoder answered nothing" : answer.substr(1));
  if (!image) throw core::DataError(id + ": the decoder answered without the image");
  return std::move(*image);
}

bool is_upload_request(const std::string& request) { return !request.empty() && request[0] == kUpload; }

data::WorkerAnswer answer_upload_request(const std::string& request) {
  data::WorkerAnswer answer;
  try {
    size_t at = 1;
    const std::string id = take_text(request, at);
    const std::string window = take_text(request, at);
    const InputImage image = decode_input(request.substr(at), id, window);
    answer.bulk = image.pixels.isContinuous() ? image.pixels : image.pixels.clone();
    answer.message = std::string(1, '\1');
    append(answer.message, static_cast<int32_t>(answer.bulk.rows));
    append(answer.message, static_cast<int32_t>(answer.bulk.cols));
    for (int k = 0; k < 2; ++k) {
      append(answer.message, static_cast<uint8_t>(image.pixel_spacing_mm[k] ? 1 : 0));
      append(answer.message, image.pixel_spacing_mm[k].value_or(0.0));
    }
    const std::string facts = facts_to_json(image.facts);
    append(answer.message, static_cast<uint32_t>(facts.size()));
    answer.message += facts;
  } catch (const core::Error& e) {
    answer.bulk.release();
    answer.message = std::string(1, '\0') + e.what();
  }
  return answer;
}

}  // namespace pneumo::infer
