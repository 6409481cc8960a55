#include "upload_decoder.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/infer/serve.h"

extern char** environ;

namespace pneumo::infer {

namespace {

// The protocol, native byte order (both ends are the same program):
//   request:  u32 id length, id, u32 window length, window, u64 size, bytes
//   answer:   u8 1, i32 rows, i32 columns, u8 spacing known (row), f64, u8 (column), f64, pixels,
//             u32 facts length, facts (JSON: what the input gate reads of the header)
//             u8 0, u32 message length, message
using Clock = std::chrono::steady_clock;

// The input gate's facts as JSON text, and back (the decoder's answer carries them).
std::string facts_to_json(const data::InputFacts& facts) {
  nlohmann::json j{{"photometric", facts.photometric}, {"bits_stored", facts.bits_stored}};
  if (facts.dicom) {
    const data::DicomMetadata& m = *facts.dicom;
    j["dicom"] = {{"modality", m.modality},     {"view_position", m.view_position}, {"body_part", m.body_part},
                  {"patient_age", m.patient_age}, {"patient_id", m.patient_id},     {"photometric", m.photometric},
                  {"bits_stored", m.bits_stored}, {"rows", m.rows},                 {"columns", m.columns},
                  {"sop_instance_uid", m.sop_instance_uid}};
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

data::InputFacts facts_from_json(const std::string& text) {
  const nlohmann::json j = nlohmann::json::parse(text);
  data::InputFacts facts;
  facts.photometric = j.at("photometric").get<std::string>();
  facts.bits_stored = j.at("bits_stored").get<int>();
  if (j.contains("dicom")) {
    const nlohmann::json& d = j.at("dicom");
    data::DicomMetadata m;
    m.modality = d.at("modality").get<std::string>();
    m.view_position = d.at("view_position").get<std::string>();
    m.body_part = d.at("body_part").get<std::string>();
    m.patient_age = d.at("patient_age").get<std::string>();
    m.patient_id = d.at("patient_id").get<std::string>();
    m.photometric = d.at("photometric").get<std::string>();
    m.bits_stored = d.at("bits_stored").get<int>();
    m.rows = d.at("rows").get<int>();
    m.columns = d.at("columns").get<int>();
    m.sop_instance_uid = d.at("sop_instance_uid").get<std::string>();
    facts.dicom = std::move(m);
  }
  return facts;
}

// Writes everything or returns false (the other end is gone or the deadline passed).
bool write_all(int fd, const void* data, size_t size, Clock::time_point deadline) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd pfd{fd, POLLOUT, 0};
    if (left <= 0 || ::poll(&pfd, 1, static_cast<int>(left)) <= 0) return false;
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool read_all(int fd, void* data, size_t size, Clock::time_point deadline) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd pfd{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&pfd, 1, static_cast<int>(left)) <= 0) return false;
    const ssize_t n = ::read(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// The worker's blocking versions (no deadline: the server enforces it by killing the worker).
bool read_blocking(int fd, void* data, size_t size) { return read_all(fd, data, size, Clock::time_point::max()); }
bool write_blocking(int fd, const void* data, size_t size) { return write_all(fd, data, size, Clock::time_point::max()); }

template <class T>
void append(std::string& out, const T& value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

}  // namespace

UploadDecoder::UploadDecoder(std::string program, int workers, double timeout_s)
    : program_(std::move(program)), timeout_s_(timeout_s) {
  for (int i = 0; i < workers; ++i) {
    all_.push_back(start());
    idle_.push_back(all_.back());
  }
}

UploadDecoder::~UploadDecoder() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Worker& w : all_) stop(w);
}

int UploadDecoder::restarts() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return restarts_;
}

UploadDecoder::Worker UploadDecoder::start() const {
  int to[2], from[2];
  if (::pipe2(to, O_CLOEXEC) != 0 || ::pipe2(from, O_CLOEXEC) != 0)
    throw core::IoError(fmt::format("serve: cannot make pipes for a decoder: {}", std::strerror(errno)));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, to[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, from[1], STDOUT_FILENO);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  // Its own process group: a Ctrl-C in the terminal reaches the server, which stops its workers.
  posix_spawnattr_setpgroup(&attributes, 0);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  std::string name = "pneumo", command = "decode-worker";
  char* argv[] = {name.data(), command.data(), nullptr};
  pid_t pid = -1;
  const int error = ::posix_spawn(&pid, program_.c_str(), &actions, &attributes, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  ::close(to[0]);
  ::close(from[1]);
  if (error != 0) {
    ::close(to[1]);
    ::close(from[0]);
    throw core::IoError(fmt::format("serve: cannot start a decoder ({}): {}", program_, std::strerror(error)));
  }
  return {pid, to[1], from[0]};
}

void UploadDecoder::stop(Worker& w) {
  if (w.pid <= 0) return;
  ::close(w.to);
  ::close(w.from);
  ::kill(w.pid, SIGKILL);
  ::waitpid(w.pid, nullptr, 0);
  w.pid = -1;
}

InputImage UploadDecoder::decode(std::string bytes, const std::string& id, const std::string& window) {
  Worker w;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    available_.wait(lock, [this] { return !idle_.empty() || all_.empty(); });
    if (idle_.empty()) throw core::IoError("serve: no decoder process is left (they could not be restarted)");
    w = idle_.back();
    idle_.pop_back();
  }
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s_));
  std::string header;
  append(header, static_cast<uint32_t>(id.size()));
  header += id;
  append(header, static_cast<uint32_t>(window.size()));
  header += window;
  append(header, static_cast<uint64_t>(bytes.size()));
  bool ok = write_all(w.to, header.data(), header.size(), deadline) && write_all(w.to, bytes.data(), bytes.size(), deadline);
  uint8_t kind = 0;
  ok = ok && read_all(w.from, &kind, 1, deadline);
  InputImage image;
  image.file.id = id;
  std::string message;
  if (ok && kind == 1) {
    int32_t rows = 0, columns = 0;
    uint8_t known[2] = {};
    double spacing[2] = {};
    ok = read_all(w.from, &rows, 4, deadline) && read_all(w.from, &columns, 4, deadline) &&
         read_all(w.from, &known[0], 1, deadline) && read_all(w.from, &spacing[0], 8, deadline) &&
         read_all(w.from, &known[1], 1, deadline) && read_all(w.from, &spacing[1], 8, deadline) && rows > 0 &&
         columns > 0;
    if (ok) {
      image.pixels.create(rows, columns, CV_8UC1);
      ok = read_all(w.from, image.pixels.data, image.pixels.total(), deadline);
      for (int k = 0; k < 2; ++k)
        if (known[k]) image.pixel_spacing_mm[k] = spacing[k];
      uint32_t length = 0;
      ok = ok && read_all(w.from, &length, 4, deadline) && length < (1u << 20);
      std::string facts(ok ? length : 0, '\0');
      ok = ok && read_all(w.from, facts.data(), length, deadline);
      try {
        if (ok) image.facts = facts_from_json(facts);
      } catch (const nlohmann::json::exception&) {
        ok = false;  // spoke nonsense
      }
    }
  } else if (ok) {
    uint32_t length = 0;
    ok = read_all(w.from, &length, 4, deadline) && length < (1u << 20);
    message.resize(length);
    ok = ok && read_all(w.from, message.data(), length, deadline);
  }
  if (!ok) {  // it crashed, hung or spoke nonsense: replace it, refuse the upload
    stop(w);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      all_.erase(std::remove_if(all_.begin(), all_.end(), [&](const Worker& x) { return x.to == w.to; }), all_.end());
      try {
        all_.push_back(start());
        idle_.push_back(all_.back());
        ++restarts_;
      } catch (const core::IoError& e) {
        core::log::error("{}", e.what());
      }
    }
    available_.notify_all();
    throw core::DataError(fmt::format("{}: the decoder stopped on this file (it crashed or took over {} s); refused",
                                      id, timeout_s_));
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    idle_.push_back(w);
  }
  available_.notify_one();
  if (kind != 1) throw core::DataError(message);
  return image;
}

int run_decode_worker() {
  ::signal(SIGPIPE, SIG_DFL);
  // A test seam: uploads starting with this text make the worker abort, as GDCM can.
  const char* abort_prefix = std::getenv("PNEUMO_TEST_DECODER_ABORT_PREFIX");
  for (;;) {
    uint32_t id_length = 0, window_length = 0;
    uint64_t size = 0;
    if (!read_blocking(STDIN_FILENO, &id_length, 4) || id_length > 4096) return 0;
    std::string id(id_length, '\0');
    if (!read_blocking(STDIN_FILENO, id.data(), id_length) || !read_blocking(STDIN_FILENO, &window_length, 4) ||
        window_length > 64)
      return 0;
    std::string window(window_length, '\0');
    if (!read_blocking(STDIN_FILENO, window.data(), window_length) || !read_blocking(STDIN_FILENO, &size, 8) ||
        size > (uint64_t{1} << 34))
      return 0;
    std::string bytes(size, '\0');
    if (!read_blocking(STDIN_FILENO, bytes.data(), size)) return 0;
    if (abort_prefix != nullptr && *abort_prefix != '\0' && bytes.rfind(abort_prefix, 0) == 0) std::abort();
    std::string answer;
    try {
      const InputImage image = decode_input(std::move(bytes), id, window);
      cv::Mat pixels = image.pixels.isContinuous() ? image.pixels : image.pixels.clone();
      answer += '\1';
      append(answer, static_cast<int32_t>(pixels.rows));
      append(answer, static_cast<int32_t>(pixels.cols));
      for (int k = 0; k < 2; ++k) {
        answer += image.pixel_spacing_mm[k] ? '\1' : '\0';
        append(answer, image.pixel_spacing_mm[k].value_or(0.0));
      }
      answer.append(reinterpret_cast<const char*>(pixels.data), pixels.total());
      const std::string facts = facts_to_json(image.facts);
      append(answer, static_cast<uint32_t>(facts.size()));
      answer += facts;
    } catch (const core::Error& e) {
      const std::string message = e.what();
      answer += '\0';
      append(answer, static_cast<uint32_t>(message.size()));
      answer += message;
    }
    if (!write_blocking(STDOUT_FILENO, answer.data(), answer.size())) return 0;
  }
}

}  // namespace pneumo::infer
