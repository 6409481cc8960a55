// Fuzz inputs as files: pneumo's readers take paths, as users give them.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace pneumo::fuzz {

// Writes the input to one file per process (in $TMPDIR, else /tmp) and returns its path.
inline std::filesystem::path input_file(const uint8_t* data, size_t size, const std::string& extension) {
  static const std::filesystem::path path =
      std::filesystem::temp_directory_path() / ("pneumo-fuzz-" + std::to_string(::getpid()) + extension);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

}  // namespace pneumo::fuzz
