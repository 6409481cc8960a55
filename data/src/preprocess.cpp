#include "pneumo/data/preprocess.h"

#include "pneumo/data/image_io.h"

#include <cstdlib>
#include <cstring>
#include <chrono>
#include <fstream>
#include <iterator>

#include <fmt/format.h>
#include <opencv2/imgproc.hpp>

#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"

namespace pneumo::data {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[8] = {'P', 'N', 'E', 'U', 'C', 'A', 'C', '1'};

// What a cache entry records about its source; an entry is valid only while all of it holds.
struct EntryHeader {
  char magic[8];
  uint32_t rows, columns;                 // stored pixels
  uint32_t native_rows, native_columns;   // the DICOM's
  uint64_t source_bytes;
  int64_t source_mtime_ns;
  uint32_t path_length;                   // followed by the path, then the pixels
  uint32_t reserved;
};

struct SourceStamp {
  std::string path;
  uint64_t bytes = 0;
  int64_t mtime_ns = 0;
};

std::optional<SourceStamp> stamp_of(const fs::path& file) {
  std::error_code ec;
  SourceStamp stamp;
  stamp.path = fs::absolute(file, ec).lexically_normal().string();
  if (ec) return std::nullopt;
  stamp.bytes = fs::file_size(file, ec);
  if (ec) return std::nullopt;
  const auto mtime = fs::last_write_time(file, ec);
  if (ec) return std::nullopt;
  stamp.mtime_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(mtime.time_since_epoch()).count();
  return stamp;
}

uint64_t fnv1a(const std::string& text) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : text) hash = (hash ^ c) * 0x100000001b3ULL;
  return hash;
}

int interpolation_flag(const std::string& name) {
  if (name == "area") return cv::INTER_AREA;
  if (name == "linear") return cv::INTER_LINEAR;
  if (name == "cubic") return cv::INTER_CUBIC;
  if (name == "nearest") return cv::INTER_NEAREST;
  throw core::ConfigError(fmt::format(
      "interpolation: unknown '{}'; expected one of area, linear, cubic, nearest", name));
}

const char* window_name(DicomReadOptions::Window window) {
  switch (window) {
    case DicomReadOptions::Window::kNone: return "range";
    case DicomReadOptions::Window::kFromFile: return "voi";
    case DicomReadOptions::Window::kExplicit: break;
  }
  throw core::ConfigError("preprocessing: an explicit window cannot be cached; use none or file");
}

// Reads a cache entry; nullopt when it is absent, damaged or stale.
std::optional<PreparedImage> read_entry(const fs::path& entry, const SourceStamp& stamp, int size) {
  std::ifstream in(entry, std::ios::binary);
  if (!in) return std::nullopt;
  EntryHeader header{};
  if (!in.read(reinterpret_cast<char*>(&header), sizeof header)) return std::nullopt;
  if (std::memcmp(header.magic, kMagic, sizeof kMagic) != 0 ||
      header.rows != static_cast<uint32_t>(size) || header.columns != static_cast<uint32_t>(size) ||
      header.source_bytes != stamp.bytes || header.source_mtime_ns != stamp.mtime_ns ||
      header.path_length != stamp.path.size())
    return std::nullopt;
  std::string path(header.path_length, '\0');
  if (!in.read(path.data(), static_cast<std::streamsize>(path.size())) || path != stamp.path)
    return std::nullopt;
  PreparedImage image;
  image.native_rows = static_cast<int>(header.native_rows);
  image.native_columns = static_cast<int>(header.native_columns);
  image.pixels.create(size, size, CV_8UC1);
  const auto bytes = static_cast<std::streamsize>(image.pixels.total());
  if (!in.read(reinterpret_cast<char*>(image.pixels.data), bytes)) return std::nullopt;
  if (in.peek() != std::char_traits<char>::eof()) return std::nullopt;  // trailing bytes
  return image;
}

void write_entry(const fs::path& entry, const SourceStamp& stamp, const PreparedImage& image) {
  EntryHeader header{};
  std::memcpy(header.magic, kMagic, sizeof kMagic);
  header.rows = static_cast<uint32_t>(image.pixels.rows);
  header.columns = static_cast<uint32_t>(image.pixels.cols);
  header.native_rows = static_cast<uint32_t>(image.native_rows);
  header.native_columns = static_cast<uint32_t>(image.native_columns);
  header.source_bytes = stamp.bytes;
  header.source_mtime_ns = stamp.mtime_ns;
  header.path_length = static_cast<uint32_t>(stamp.path.size());
  std::string bytes(reinterpret_cast<const char*>(&header), sizeof header);
  bytes += stamp.path;
  bytes.append(reinterpret_cast<const char*>(image.pixels.data), image.pixels.total());
  core::write_file_atomic(entry, bytes, core::Durability::kReplaceOnly);
}

}  // namespace

Preprocessor::Preprocessor(PreprocessOptions options)
    : options_(std::move(options)), interpolation_flag_(interpolation_flag(options_.interpolation)) {
  if (options_.size < 8 || options_.size > 8192)
    throw core::ConfigError(fmt::format("size: {} is outside 8..8192", options_.size));
  const char* window = window_name(options_.window);
  if (!options_.cache_dir.empty())
    cache_folder_ = options_.cache_dir / fmt::format("{}px-{}-{}-v1", options_.size,
                                                     options_.interpolation, window);
}

cv::Mat Preprocessor::resize(const cv::Mat& native) const {
  if (native.rows == options_.size && native.cols == options_.size) return native;
  cv::Mat out;
  cv::resize(native, out, cv::Size(options_.size, options_.size), 0, 0, interpolation_flag_);
  return out;
}

PreparedImage Preprocessor::decode(const fs::path& file) const {
  PreparedImage image;
  if (is_png_or_jpeg(file)) {  // no VOI window in these: 16-bit grey keeps its range (min..max)
    const cv::Mat native = read_grey_image(file);
    image.native_rows = native.rows;
    image.native_columns = native.cols;
    image.pixels = resize(native);
  } else {  // resized where it is decoded (in a decoder process, a quarter of the bytes or less come back)
    DicomReadOptions read;
    read.window = options_.window;
    read.resize_to = options_.size;
    read.resize_interpolation = interpolation_flag_;
    DicomImage dicom = read_dicom(file, read);
    image.native_rows = dicom.meta.rows;
    image.native_columns = dicom.meta.columns;
    image.pixels = std::move(dicom.pixels);
  }
  counters_->decodes.fetch_add(1, std::memory_order_relaxed);
  return image;
}

PreparedImage Preprocessor::prepare(const fs::path& dicom) const {
  if (cache_folder_.empty()) return decode(dicom);
  const std::optional<SourceStamp> stamp = stamp_of(dicom);
  if (!stamp) return decode(dicom);  // missing or unreadable: decoding reports why
  const fs::path entry =
      cache_folder_ / fmt::format("{}-{:016x}.raw", dicom.stem().string(), fnv1a(stamp->path));
  if (std::optional<PreparedImage> cached = read_entry(entry, *stamp, options_.size)) {
    counters_->hits.fetch_add(1, std::memory_order_relaxed);
    return std::move(*cached);
  }
  PreparedImage image = decode(dicom);
  write_entry(entry, *stamp, image);
  counters_->writes.fetch_add(1, std::memory_order_relaxed);
  return image;
}

CacheCounts Preprocessor::counts() const {
  return {counters_->hits.load(), counters_->decodes.load(), counters_->writes.load()};
}

fs::path resolve_cache_dir(const std::string& setting) {
  if (setting == "none") return {};
  if (setting != "auto") return setting;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0')
    return fs::path(xdg) / "pneumo";
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0')
    return fs::path(home) / ".cache" / "pneumo";
  return fs::temp_directory_path() / "pneumo-cache";
}

}  // namespace pneumo::data
