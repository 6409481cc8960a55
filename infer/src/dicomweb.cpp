#include "dicomweb.h"

#include <algorithm>
#include <cctype>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "pneumo/core/error.h"

namespace pneumo::infer {

namespace {

using json = nlohmann::json;

const char* const kCredentialsHint = "give --credentials user:password (or set PNEUMO_ORTHANC_CREDENTIALS)";

// The first value of a DICOM JSON attribute as text ("" when absent or empty).
std::string first_value(const json& attributes, const char* tag) {
  if (!attributes.contains(tag)) return "";
  const json& a = attributes[tag];
  if (!a.is_object() || !a.contains("Value") || !a["Value"].is_array() || a["Value"].empty()) return "";
  const json& v = a["Value"][0];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  return "";
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// The boundary parameter of a multipart Content-Type.
std::string boundary_of(const std::string& content_type) {
  const std::string l = lower(content_type);
  const size_t at = l.find("boundary=");
  if (at == std::string::npos) return "";
  std::string value = content_type.substr(at + 9);
  value = value.substr(0, value.find(';'));
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) value.pop_back();
  if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
  return value;
}

std::string new_boundary() {
  std::random_device device;
  return fmt::format("pneumo-{:016x}{:08x}", (uint64_t{device()} << 32) | device(), device());
}

}  // namespace

std::vector<std::string> multipart_parts(std::string_view body, const std::string& content_type) {
  const std::string boundary = boundary_of(content_type);
  if (lower(content_type).rfind("multipart/", 0) != 0 || boundary.empty())
    throw core::DataError(fmt::format("expected a multipart answer with a boundary; got Content-Type '{}'", content_type));
  const std::string delimiter = "--" + boundary;
  std::vector<std::string> parts;
  size_t at = body.find(delimiter);
  if (at == std::string_view::npos) throw core::DataError("the multipart answer holds no part");
  for (;;) {
    at += delimiter.size();
    if (body.substr(at, 2) == "--") break;  // the closing delimiter
    const size_t headers_end = body.find("\r\n\r\n", at);
    if (headers_end == std::string_view::npos) throw core::DataError("a multipart part has no end of headers");
    const size_t content = headers_end + 4;
    const size_t next = body.find("\r\n" + delimiter, content);
    if (next == std::string_view::npos) throw core::DataError("a multipart part is not closed by its boundary");
    parts.emplace_back(body.substr(content, next - content));
    at = next + 2;
  }
  return parts;
}

std::string multipart_related(const std::vector<std::string>& parts, const std::string& boundary, const std::string& type) {
  std::string body;
  for (const std::string& part : parts) body += fmt::format("--{}\r\nContent-Type: {}\r\n\r\n", boundary, type) + part + "\r\n";
  return body + "--" + boundary + "--\r\n";
}

std::vector<DicomWebInstance> parse_qido_instances(const std::string& text) {
  if (text.empty()) return {};  // 204: nothing matched
  json answer;
  try {
    answer = json::parse(text);
  } catch (const json::exception& e) {
    throw core::DataError(fmt::format("the QIDO-RS answer is not JSON: {}", e.what()));
  }
  if (!answer.is_array()) throw core::DataError("the QIDO-RS answer is not a list of instances (DICOM JSON)");
  std::vector<DicomWebInstance> out;
  for (const json& a : answer) {
    if (!a.is_object()) throw core::DataError("an instance of the QIDO-RS answer is not a DICOM JSON object");
    DicomWebInstance i;
    i.study = first_value(a, "0020000D");
    i.series = first_value(a, "0020000E");
    i.sop_instance = first_value(a, "00080018");
    i.sop_class = first_value(a, "00080016");
    i.modality = first_value(a, "00080060");
    i.manufacturer = first_value(a, "00080070");
    const std::string rows = first_value(a, "00280010");
    i.rows = rows.empty() || rows.find_first_not_of("0123456789") != std::string::npos ? 0 : std::stoi(rows.substr(0, 6));
    if (i.study.empty() || i.series.empty() || i.sop_instance.empty())
      throw core::DataError("an instance of the QIDO-RS answer lacks its study, series or SOP Instance UID");
    out.push_back(std::move(i));
  }
  return out;
}

DicomWeb::DicomWeb(std::string root, std::string credentials, double timeout_s)
    : http_(std::move(root), std::move(credentials), timeout_s) {}

std::vector<DicomWebInstance> DicomWeb::search_instances(size_t offset, size_t limit) {
  const std::string path = fmt::format(
      "/instances?limit={}&offset={}&includefield=00080016&includefield=00080060&includefield=00080070&"
      "includefield=00280010",
      limit, offset);
  const HttpResponse r = http_.checked("GET", path, http_.get(path, "application/dicom+json"), kCredentialsHint);
  try {
    return parse_qido_instances(r.body);
  } catch (const core::DataError& e) {
    throw core::IoError(fmt::format("GET {}{}: {}", http_.base(), path, e.what()));
  }
}

bool DicomWeb::has_instance(const std::string& sop_instance_uid) {
  const std::string path = fmt::format("/instances?SOPInstanceUID={}", sop_instance_uid);
  const HttpResponse r = http_.checked("GET", path, http_.get(path, "application/dicom+json"), kCredentialsHint);
  try {
    return !parse_qido_instances(r.body).empty();
  } catch (const core::DataError& e) {
    throw core::IoError(fmt::format("GET {}{}: {}", http_.base(), path, e.what()));
  }
}

std::string DicomWeb::retrieve(const DicomWebInstance& i) {
  const std::string path = fmt::format("/studies/{}/series/{}/instances/{}", i.study, i.series, i.sop_instance);
  const HttpResponse r = http_.checked("GET", path, http_.get(path, "multipart/related; type=\"application/dicom\""),
                                       kCredentialsHint);
  try {
    std::vector<std::string> parts = multipart_parts(r.body, r.content_type);
    if (parts.empty()) throw core::DataError("the answer holds no DICOM part");
    return std::move(parts.front());
  } catch (const core::DataError& e) {
    throw core::IoError(fmt::format("GET {}{}: {}", http_.base(), path, e.what()));
  }
}

void DicomWeb::store(const std::vector<std::string>& files) {
  const std::string boundary = new_boundary();
  const std::string body = multipart_related(files, boundary, "application/dicom");
  const std::string type = fmt::format("multipart/related; type=\"application/dicom\"; boundary={}", boundary);
  const HttpResponse r = http_.checked("POST", "/studies", http_.post("/studies", body, type), kCredentialsHint);
  // The answer lists what failed (Failed SOP Sequence, 0008,1198), as DICOM JSON when offered.
  const json answer = json::parse(r.body, nullptr, false);
  if (answer.is_object() && answer.contains("00081198") && answer["00081198"].contains("Value") &&
      !answer["00081198"]["Value"].empty())
    throw core::IoError(fmt::format("POST {}/studies refused {} of the {} result(s): {}", http_.base(),
                                    answer["00081198"]["Value"].size(), files.size(), r.body.substr(0, 300)));
}

}  // namespace pneumo::infer
