#include "pneumo/core/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include <fmt/format.h>

#include "pneumo/core/error.h"

namespace pneumo::core {

namespace {
constexpr const char* kTempMarker = ".tmp-";
}  // namespace

namespace fs = std::filesystem;

std::string read_text_file(const fs::path& file, uint64_t max_bytes) {
  std::error_code ec;
  if (fs::is_directory(file, ec))
    throw IoError(fmt::format("{}: is a folder; expected a file", file.string()));
  if (const uintmax_t size = fs::file_size(file, ec); !ec && size > max_bytes)
    throw IoError(fmt::format("{}: {} MiB, more than the {} MiB expected of this kind of file", file.string(),
                              size >> 20, max_bytes >> 20));
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(fmt::format("{}: cannot open: {}", file.string(), std::strerror(errno)));
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) throw IoError(fmt::format("{}: read failed", file.string()));
  return content.str();
}

namespace {

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

[[noreturn]] void fail(const fs::path& file, const char* step) {
  throw IoError(fmt::format("{}: {} failed: {}", file.string(), step, std::strerror(errno)));
}

}  // namespace

void write_file_atomic(const fs::path& file, std::string_view bytes, Durability durability) {
  const fs::path parent = file.has_parent_path() ? file.parent_path() : fs::path(".");
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec)
    throw IoError(fmt::format("{}: cannot create folder: {}", parent.string(), ec.message()));

  static std::atomic<uint64_t> counter{0};
  const fs::path temp =
      fs::path(file.string() + fmt::format("{}{}-{}", kTempMarker, ::getpid(), counter.fetch_add(1)));
  FileDescriptor fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) fail(temp, "open");
  try {
    for (size_t done = 0; done < bytes.size();) {
      const ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail(temp, "write");
      }
      done += static_cast<size_t>(n);
    }
    if (durability == Durability::kDurable && ::fsync(fd.get()) != 0) fail(temp, "fsync");
    if (::close(fd.release()) != 0) fail(temp, "close");
    if (::rename(temp.c_str(), file.c_str()) != 0) fail(file, "rename");
  } catch (...) {
    fs::remove(temp, ec);
    throw;
  }
  if (durability != Durability::kDurable) return;
  // Make the rename itself durable.
  FileDescriptor dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() >= 0) ::fsync(dir.get());
}

bool is_atomic_write_temp(const fs::path& file) {
  const std::string name = file.filename().string();
  const size_t at = name.rfind(kTempMarker);
  if (at == std::string::npos || at == 0) return false;
  const std::string tail = name.substr(at + std::strlen(kTempMarker));  // <pid>-<n>
  const size_t dash = tail.find('-');
  const auto digits = [](const std::string& t) {
    return !t.empty() && std::all_of(t.begin(), t.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
  };
  return dash != std::string::npos && digits(tail.substr(0, dash)) && digits(tail.substr(dash + 1));
}

}  // namespace pneumo::core
