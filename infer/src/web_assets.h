// The web pages `pneumo serve` offers, compiled in from infer/web/ (see embed_web.cmake), so
// the program needs no files beside it.
#pragma once

#include <string_view>
#include <vector>

namespace pneumo::infer {

struct WebAsset {
  const char* route;         // e.g. "/" or "/app.js"
  const char* content_type;  // e.g. "text/html; charset=utf-8"
  std::string_view body;
};

const std::vector<WebAsset>& web_assets();

}  // namespace pneumo::infer
