// Decoding an image (DICOM, PNG or JPEG) and resizing it to the experiment's size, with an optional on-disk cache
// so that later epochs read a small raw file instead of decoding JPEG again.
//
// A cache entry lives under `<cache_dir>/<size>px-<interpolation>-<window>/` and records the
// source file's absolute path, byte size and modification time; an entry whose source has
// changed (or that is damaged) is rebuilt, and a different size or interpolation uses another
// folder. Entries are written whole through a rename, so several processes and threads may
// share one cache.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <opencv2/core/mat.hpp>

#include "pneumo/data/dicom.h"

namespace pneumo::data {

struct PreprocessOptions {
  int size = 256;                      // output is size x size
  std::string interpolation = "area";  // area, linear, cubic, nearest (OpenCV's)
  DicomReadOptions::Window window = DicomReadOptions::Window::kNone;
  std::filesystem::path cache_dir;  // empty: no cache
};

struct PreparedImage {
  cv::Mat pixels;       // [size, size] CV_8UC1
  int native_rows = 0;  // the DICOM's own size, for decoding its masks
  int native_columns = 0;
};

struct CacheCounts {
  int64_t hits = 0;     // read from the cache
  int64_t decodes = 0;  // decoded from DICOM (cache off, entry missing or stale)
  int64_t writes = 0;   // cache entries written
};

class Preprocessor {
 public:
  // Throws ConfigError for a size outside 8..8192 or an unknown interpolation.
  explicit Preprocessor(PreprocessOptions options);

  // Thread-safe. Throws DataError naming the file for an unreadable DICOM, IoError when the
  // cache cannot be written.
  PreparedImage prepare(const std::filesystem::path& dicom) const;
  // Resizes an image already decoded at its native size exactly as prepare() does (used by
  // inference, which keeps the native image for its outputs).
  cv::Mat resize(const cv::Mat& native) const;

  const PreprocessOptions& options() const { return options_; }
  // The folder holding this configuration's entries (empty when the cache is off).
  const std::filesystem::path& cache_folder() const { return cache_folder_; }
  CacheCounts counts() const;

 private:
  PreparedImage decode(const std::filesystem::path& dicom) const;

  struct Counters {
    std::atomic<int64_t> hits{0}, decodes{0}, writes{0};
  };
  PreprocessOptions options_;
  int interpolation_flag_;
  std::filesystem::path cache_folder_;
  std::unique_ptr<Counters> counters_ = std::make_unique<Counters>();
};

// `auto` -> $XDG_CACHE_HOME/pneumo or ~/.cache/pneumo; `none` -> empty (no cache); anything
// else is the folder itself.
std::filesystem::path resolve_cache_dir(const std::string& setting);

}  // namespace pneumo::data
