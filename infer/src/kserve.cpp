#include "pneumo/infer/kserve.h"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "pneumo/core/error.h"

namespace pneumo::infer {

namespace {

using json = nlohmann::json;

[[noreturn]] void refuse(const std::string& what) { throw core::DataError(what); }

// The request's one input, with its bytes when they came inline (base64).
const json& the_image_input(const json& request) {
  if (!request.contains("inputs") || !request["inputs"].is_array() || request["inputs"].size() != 1)
    refuse("expected \"inputs\" with exactly one input: {\"name\": \"image\", \"datatype\": \"BYTES\", \"shape\": [1]}");
  const json& input = request["inputs"][0];
  if (!input.is_object() || input.value("name", "") != "image")
    refuse("the input must be named \"image\" (the encoded DICOM, PNG or JPEG)");
  if (input.value("datatype", "") != "BYTES")
    refuse(fmt::format("input \"image\": datatype {}; expected BYTES", input.contains("datatype") ? input["datatype"].dump() : "missing"));
  if (!input.contains("shape") || input["shape"] != json::array({1}))
    refuse("input \"image\": shape must be [1] (one image per request)");
  return input;
}

}  // namespace

const std::vector<std::string>& infer_output_names() {
  static const std::vector<std::string> names{"probability", "score", "positive", "area_px",
                                              "area_mm2",    "rle",   "gate",     "explanation_png"};
  return names;
}

nlohmann::ordered_json output_tensor(const std::string& name, const std::string& datatype, nlohmann::ordered_json value) {
  return {{"name", name}, {"datatype", datatype}, {"shape", {1}}, {"data", nlohmann::ordered_json::array({std::move(value)})}};
}

std::string encode_base64(std::string_view bytes) {
  static constexpr char kDigits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint32_t{static_cast<unsigned char>(bytes[i])} << 16) |
                       (uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8) | static_cast<unsigned char>(bytes[i + 2]);
    out += {kDigits[v >> 18], kDigits[(v >> 12) & 63], kDigits[(v >> 6) & 63], kDigits[v & 63]};
  }
  if (i + 1 == bytes.size()) {
    const uint32_t v = uint32_t{static_cast<unsigned char>(bytes[i])} << 16;
    out += {kDigits[v >> 18], kDigits[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    const uint32_t v = (uint32_t{static_cast<unsigned char>(bytes[i])} << 16) |
                       (uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8);
    out += {kDigits[v >> 18], kDigits[(v >> 12) & 63], kDigits[(v >> 6) & 63], '='};
  }
  return out;
}

std::string decode_base64(std::string_view text) {
  static const auto value_of = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) refuse("the base64 text has a length no encoding gives");
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t bits = 0;
  int held = 0;
  for (char c : text) {
    const int v = value_of(c);
    if (v < 0) refuse(fmt::format("'{}' is not a base64 character", c));
    bits = (bits << 6) | static_cast<uint32_t>(v);
    held += 6;
    if (held >= 8) {
      held -= 8;
      out += static_cast<char>((bits >> held) & 0xff);
    }
  }
  return out;
}

InferRequest parse_infer_request(std::string_view body, std::optional<size_t> header_length) {
  if (header_length && *header_length > body.size())
    refuse(fmt::format("Inference-Header-Content-Length is {} but the body holds {} bytes", *header_length, body.size()));
  const std::string_view header = header_length ? body.substr(0, *header_length) : body;
  json request;
  try {
    request = json::parse(header);
  } catch (const json::exception& e) {
    refuse(fmt::format("the request is not JSON ({}){}", e.what(),
                       header_length ? "" : "; binary data needs the header Inference-Header-Content-Length"));
  }
  if (!request.is_object()) refuse("the request must be a JSON object with \"inputs\"");
  InferRequest out;
  if (request.contains("id")) {
    if (!request["id"].is_string()) refuse("\"id\" must be a string");
    out.id = request["id"].get<std::string>();
  }
  const json& input = the_image_input(request);
  const json parameters = input.value("parameters", json::object());
  if (parameters.contains("binary_data_size")) {
    if (!header_length) refuse("binary_data_size without the header Inference-Header-Content-Length");
    if (!parameters["binary_data_size"].is_number_unsigned())
      refuse("binary_data_size must be a non-negative integer");
    const size_t size = parameters["binary_data_size"].get<size_t>();
    if (size != body.size() - *header_length)
      refuse(fmt::format("binary_data_size is {} but {} bytes follow the JSON header", size, body.size() - *header_length));
    // The extension's BYTES elements are each preceded by their 4-byte little-endian length.
    const std::string_view data = body.substr(*header_length);
    if (data.size() >= 4) {
      const auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(data[i])); };
      const uint32_t element = b(0) | (b(1) << 8) | (b(2) << 16) | (b(3) << 24);
      if (element == data.size() - 4) out.image = std::string(data.substr(4));
    }
    if (out.image.empty()) refuse("the binary image data must be one BYTES element: a 4-byte little-endian length, then the bytes");
  } else {
    if (header_length && *header_length != body.size())
      refuse("bytes follow the JSON header, but the input has no binary_data_size");
    if (!input.contains("data") || !input["data"].is_array() || input["data"].size() != 1 || !input["data"][0].is_string())
      refuse("input \"image\": expected \"data\": [\"<base64 of the file>\"], or the binary data extension");
    out.image = decode_base64(input["data"][0].get<std::string>());
  }
  if (out.image.empty()) refuse("the image is empty");
  if (request.contains("outputs")) {
    if (!request["outputs"].is_array()) refuse("\"outputs\" must be a list of {\"name\": ...}");
    for (const json& o : request["outputs"]) {
      const std::string name = o.is_object() ? o.value("name", "") : "";
      const auto& known = infer_output_names();
      if (std::find(known.begin(), known.end(), name) == known.end())
        refuse(fmt::format("unknown output \"{}\"; the outputs are {}", name, fmt::join(known, ", ")));
      out.outputs.push_back(name);
    }
  }
  const json request_parameters = request.value("parameters", json::object());
  out.explain = request_parameters.is_object() && request_parameters.value("explain", false) == true;
  if (std::find(out.outputs.begin(), out.outputs.end(), "explanation_png") != out.outputs.end()) out.explain = true;
  return out;
}

}  // namespace pneumo::infer
