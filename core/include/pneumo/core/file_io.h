// Small file helpers with error messages that name the file. Everything pneumo writes for a
// user (configs, checkpoints, outputs) goes through write_file_atomic, so an interrupted
// write never leaves a half-written file where a good one used to be.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace pneumo::core {

// Reads a whole file. Throws IoError naming the file and the system's reason, or when the
// file is larger than `max_bytes` (a guard against reading a wrong, huge file into memory).
constexpr uint64_t kMaxReadBytes = uint64_t{8} << 30;
std::string read_text_file(const std::filesystem::path& file, uint64_t max_bytes = kMaxReadBytes);

// Whether write_file_atomic waits for the data to reach the disk. kDurable (fsync of file and
// folder) is for everything a user would lose; kReplaceOnly keeps the all-or-nothing rename
// but skips the fsyncs, for files that can be rebuilt (the preprocessing cache).
enum class Durability { kDurable, kReplaceOnly };

// Writes `bytes` to a temporary file in the same folder (unique per process and thread),
// flushes it to disk, then renames it over `file` (atomic on POSIX). Creates missing parent
// folders. Throws IoError on failure and leaves `file` untouched.
void write_file_atomic(const std::filesystem::path& file, std::string_view bytes,
                       Durability durability = Durability::kDurable);

// Whether `file` is one of write_file_atomic's temporary files (`<name>.tmp-<pid>-<n>`), left
// behind only when a process is killed mid-write.
bool is_atomic_write_temp(const std::filesystem::path& file);

}  // namespace pneumo::core
