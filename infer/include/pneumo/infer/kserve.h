// The KServe v2 / Triton inference protocol as `pneumo serve` speaks it beside /v1: the request
// and answer bodies of POST /v2/models/<name>[/versions/<v>]/infer, and the model metadata.
//
// The one input is the encoded image: {"name": "image", "datatype": "BYTES", "shape": [1]},
// its bytes either after the JSON header (the binary tensor data extension: the request's
// Inference-Header-Content-Length says how long the JSON is, the input's
// "parameters": {"binary_data_size": N} how many bytes follow) or, in plain JSON, as
// "data": ["<base64>"] (BYTES elements are strings in JSON; arbitrary bytes need an encoding).
// The outputs (all by default, or those "outputs" names): probability FP64 (calibrated when the
// model has a calibration), score FP64 (the raw score), positive BOOL, area_px INT64, area_mm2
// FP64 (-1 when the image gives no pixel spacing), rle BYTES (SIIM, at the image's size), gate
// BYTES ("accepted" or the refusal), explanation_png BYTES (base64 of a PNG; only when asked for
// with "parameters": {"explain": true}). An image the input gate refuses is answered with the
// gate output alone. Outputs are always JSON (binary outputs are not offered).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace pneumo::infer {

struct InferRequest {
  std::string id;                    // echoed in the answer
  std::string image;                 // the encoded image's bytes
  std::vector<std::string> outputs;  // empty: all (explanation_png only when asked)
  bool explain = false;
};

// `body` as received; `header_length` the Inference-Header-Content-Length, when sent. Throws
// DataError with what is wrong (answered 400).
InferRequest parse_infer_request(std::string_view body, std::optional<size_t> header_length);

// The names of the outputs, for the metadata and for checking a request's "outputs".
const std::vector<std::string>& infer_output_names();

// One output tensor of shape [1].
nlohmann::ordered_json output_tensor(const std::string& name, const std::string& datatype, nlohmann::ordered_json value);

// Standard base64 with padding.
std::string encode_base64(std::string_view bytes);
// Decodes standard base64 (padding optional, whitespace not allowed). Throws DataError.
std::string decode_base64(std::string_view text);

}  // namespace pneumo::infer
