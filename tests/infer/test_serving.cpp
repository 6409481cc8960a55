// The KServe v2 request bodies `pneumo serve` reads: the JSON form with base64, the binary tensor
// data extension, every way they can be wrong, and random damage (never anything but a parse
// or a DataError).
#include <catch2/catch.hpp>

#include <random>

#include <nlohmann/json.hpp>

#include "pneumo/core/error.h"
#include "pneumo/infer/kserve.h"

using namespace pneumo;
using Catch::Matchers::Contains;
using json = nlohmann::json;

namespace {

std::string binary_request(const std::string& image, const json& extra = json::object()) {
  json header{{"inputs", {{{"name", "image"}, {"datatype", "BYTES"}, {"shape", {1}},
                           {"parameters", {{"binary_data_size", image.size() + 4}}}}}}};
  header.update(extra);
  const std::string text = header.dump();
  const auto n = static_cast<uint32_t>(image.size());
  std::string body = text;
  for (int i = 0; i < 4; ++i) body += static_cast<char>((n >> (8 * i)) & 0xff);
  return body + image;
}

}  // namespace

TEST_CASE("v2 infer requests: base64 JSON and the binary extension give the same image, outputs and id") {
  const std::string image("\x89PNG\r\n\x1a\n\0\0binary", 16);
  const json plain{{"id", "req-7"},
                   {"inputs", {{{"name", "image"}, {"datatype", "BYTES"}, {"shape", {1}}, {"data", {"iVBORw0KGgoAAGJpbmFyeQ=="}}}}},
                   {"outputs", {{{"name", "probability"}}, {{"name", "rle"}}}}};
  const infer::InferRequest a = infer::parse_infer_request(plain.dump(), std::nullopt);
  CHECK(a.image == image);
  CHECK(a.id == "req-7");
  CHECK(a.outputs == std::vector<std::string>{"probability", "rle"});
  CHECK_FALSE(a.explain);
  const std::string body = binary_request(image, {{"parameters", {{"explain", true}}}});
  const size_t header_length = body.size() - image.size() - 4;
  const infer::InferRequest b = infer::parse_infer_request(body, header_length);
  CHECK(b.image == image);
  CHECK(b.explain);
  CHECK(b.outputs.empty());
  CHECK(infer::decode_base64("aGVsbG8") == "hello");
  CHECK(infer::decode_base64("aGVsbG8=") == "hello");
}

TEST_CASE("v2 infer requests that are wrong are refused with what is wrong") {
  const auto refused = [](const std::string& body, std::optional<size_t> header, const std::string& says) {
    INFO(body.substr(0, 200));
    CHECK_THROWS_WITH(infer::parse_infer_request(body, header), Contains(says));
  };
  refused("not json", std::nullopt, "not JSON");
  refused("[1, 2]", std::nullopt, "JSON object");
  refused(R"({"inputs": []})", std::nullopt, "exactly one input");
  refused(R"({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}]})", std::nullopt, "named \"image\"");
  refused(R"({"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1], "data": ["aGk="]}]})", std::nullopt,
          "expected BYTES");
  refused(R"({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": ["aGk="]}]})", std::nullopt,
          "shape must be [1]");
  refused(R"({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["a$k="]}]})", std::nullopt,
          "not a base64 character");
  refused(R"({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1]}]})", std::nullopt, "\"data\"");
  refused(R"({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [""]}]})", std::nullopt, "empty");
  refused(R"({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}], "outputs": [{"name": "mask"}]})",
          std::nullopt, "unknown output \"mask\"");
  refused(R"({"id": 7, "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["aGk="]}]})", std::nullopt,
          "\"id\" must be a string");
  const std::string body = binary_request("abc");
  const size_t header = body.size() - 7;
  refused(body, std::nullopt, "Inference-Header-Content-Length");
  refused(body, body.size() + 1, "but the body holds");
  refused(body.substr(0, body.size() - 1), header, "binary_data_size is 7 but 6 bytes follow");
  std::string wrong_length = body;
  wrong_length[header] = 9;  // the element says 9 bytes, 3 follow
  refused(wrong_length, header, "one BYTES element");
}

TEST_CASE("v2 infer requests damaged at random are parsed or refused, nothing else (fuzzed in process)") {
  const std::string json_body =
      R"({"id":"a","inputs":[{"name":"image","datatype":"BYTES","shape":[1],"data":["aGVsbG8gd29ybGQ="]}],"outputs":[{"name":"rle"}],"parameters":{"explain":true}})";
  const std::string binary_body = binary_request("hello world");
  std::mt19937 rng(42);
  int parsed = 0;
  for (int i = 0; i < 20000; ++i) {
    const bool binary = i % 2 == 1;
    std::string body = binary ? binary_body : json_body;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % body.size();
      switch (rng() % 4) {
        case 0: body[at] = static_cast<char>(rng() % 256); break;
        case 1: body.erase(at, 1 + rng() % 8); break;
        case 2: body.insert(at, std::string(1 + rng() % 8, static_cast<char>(rng() % 256))); break;
        default: body.resize(at); break;
      }
      if (body.empty()) body = "{";
    }
    std::optional<size_t> header;
    if (binary) header = rng() % 4 == 0 ? rng() % (body.size() + 8) : body.size() - std::min<size_t>(body.size(), 15);
    try {
      (void)infer::parse_infer_request(body, header);
      ++parsed;
    } catch (const core::DataError&) {
    }
  }
  CHECK(parsed > 0);  // the damage left some requests readable
}
