// Work on untrusted input done in worker processes, so that input which crashes or hangs the
// library reading it (Debian's GDCM is built with assertions and aborts on some malformed data
// sets) cannot take the calling process down. A pool of `program ARGUMENTS...` processes, each
// fed one request at a time through a pipe; a worker that dies, answers nonsense or takes
// longer than the timeout is killed and replaced, and that request fails with a DataError
// saying why ("the DICOM decoder stopped: SIGABRT"; "timed out after 60 s").
//
// Requests are framed on the pipe as an 8-byte length (native order: both ends are the same
// program) and the bytes; answers as the answer's length, the length of its bulk part, and the
// answer. The bulk part (a decoded image: a megabyte for a 1024x1024 X-ray) travels through
// shared memory instead (a memfd per worker, its descriptor 3): a pipe costs two copies in the
// kernel and a switch between the processes every 64 KiB.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

namespace pneumo::data {

// The program pneumo's decoder processes run: `pneumo-decoder` in the folder of the running
// program (tools/decoder; built and installed with pneumo). It has no LibTorch, so that one
// starts in milliseconds rather than the half second of CPU pneumo itself takes.
std::string decoder_program();

class WorkerPool {
 public:
  // Starts `workers` processes of `program` (empty: decoder_program()) with `arguments`
  // (argv[1...]). `what` names a worker in messages ("the DICOM decoder"). Throws IoError when
  // one cannot start.
  WorkerPool(std::string program, std::vector<std::string> arguments, int workers, double timeout_s, std::string what);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Thread-safe; waits for a free worker, sends `request`, returns its answer, and hands the
  // answer with its bulk part to `on_bulk` (while the worker is still reserved: the bulk lives in
  // its shared memory). Throws DataError "`name`: <what> stopped: SIGABRT" (or "timed out after
  // N s", or "answered nonsense") after replacing the worker.
  using BulkReceiver = std::function<void(const std::string& answer, const char* data, size_t size)>;
  std::string call(const std::string& request, const std::string& name, const BulkReceiver& on_bulk = {});

  int workers() const { return workers_; }
  int restarts() const;

 private:
  struct Worker {
    pid_t pid = -1;
    int to = -1, from = -1;  // its stdin, its stdout
    int shared = -1;         // the memfd of its bulk answers
    char* map = nullptr;     // our mapping of it
    size_t mapped = 0;
  };
  // The worker's bulk part of `size` bytes, or null when the memory does not hold that much.
  static const char* bulk_of(Worker& w, size_t size);
  Worker start() const;
  // Kills (if still alive) and reaps the worker; how it ended, e.g. "stopped: SIGABRT".
  static std::string stop(Worker& w);

  std::string program_;
  std::vector<std::string> arguments_;
  int workers_;
  double timeout_s_;
  std::string what_;
  mutable std::mutex mutex_;
  std::condition_variable available_;
  std::vector<Worker> idle_;
  std::vector<Worker> all_;  // every running worker (for the destructor)
  int restarts_ = 0;
};

// What a worker answers: the message, and an image whose bytes go as the bulk part.
struct WorkerAnswer {
  std::string message;
  cv::Mat bulk;  // continuous, or empty
};

// The worker's end: requests on stdin, answers on stdout, bulk parts into the shared memory.
class WorkerChannel {
 public:
  WorkerChannel() = default;
  ~WorkerChannel();
  WorkerChannel(const WorkerChannel&) = delete;
  WorkerChannel& operator=(const WorkerChannel&) = delete;
  // False at the end of input or on a damaged request.
  bool read(std::string& request);
  // False when the pool is gone.
  bool write(const WorkerAnswer& answer);

 private:
  char* map_ = nullptr;
  size_t mapped_ = 0;
};

}  // namespace pneumo::data
