// What the CLI tests of DICOM results, the PACS and isolation share: real DICOMs to run on and
// predict's answers by image.
#pragma once

#include <algorithm>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "pneumo/data/demo_set.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

namespace pneumo::testing {

// The shared SIIM samples (sorted), else four synthetic DICOMs made in `dir`.
inline std::vector<std::filesystem::path> sample_dicoms(const TempDir& dir) {
  std::vector<std::filesystem::path> files;
  const std::filesystem::path siim = std::filesystem::path(PNEUMO_SHARED_DATA_DIR) / "siim/dicom";
  if (std::filesystem::is_directory(siim)) {
    for (const auto& e : std::filesystem::directory_iterator(siim)) files.push_back(e.path());
  } else {
    WARN("../shared/data/siim is absent; using synthetic DICOMs");
    data::DemoSetOptions demo;
    demo.count = 4;
    demo.size = 96;
    data::write_demo_set(dir / "set", demo);
    for (const auto& e : std::filesystem::directory_iterator(dir / "set/dicom")) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// predict's JSON lines by image id.
inline std::map<std::string, nlohmann::json> predictions_by_id(const std::filesystem::path& jsonl) {
  std::map<std::string, nlohmann::json> out;
  std::istringstream lines(read_file(jsonl));
  for (std::string line; std::getline(lines, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    const std::string id = j["image_id"].get<std::string>();  // before j is moved (C++17 sequences the right side first)
    out[id] = std::move(j);
  }
  return out;
}

}  // namespace pneumo::testing
