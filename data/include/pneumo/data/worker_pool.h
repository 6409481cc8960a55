// Work on untrusted input done in worker processes, so that input which crashes or hangs the
// library reading it (Debian's GDCM is built with assertions and aborts on some malformed data
// sets) cannot take the calling process down. A pool of `program ARGUMENTS...` processes, each
// fed one request at a time through a pipe; a worker that dies, answers nonsense or takes
// longer than the timeout is killed and replaced, and that request fails with a DataError
// saying why ("the DICOM decoder stopped: SIGABRT"; "timed out after 60 s").
//
// Messages are framed on both pipes as an 8-byte length (native order: both ends are the same
// program) and the bytes.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace pneumo::data {

class WorkerPool {
 public:
  // Starts `workers` processes of `program` with `arguments` (argv[1...]). `what` names a worker
  // in messages ("the DICOM decoder"). Throws IoError when one cannot start.
  WorkerPool(std::string program, std::vector<std::string> arguments, int workers, double timeout_s, std::string what);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Thread-safe; waits for a free worker, sends `request`, returns its answer. Throws DataError
  // "`name`: <what> stopped: SIGABRT" (or "timed out after N s", or "answered nonsense") after
  // replacing the worker.
  std::string call(const std::string& request, const std::string& name);

  int workers() const { return workers_; }
  int restarts() const;

 private:
  struct Worker {
    pid_t pid = -1;
    int to = -1, from = -1;  // its stdin, its stdout
  };
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

// The worker's side: one framed message from `fd` (false at end of input or on a damaged
// frame longer than `max_bytes`), and one written to `fd` (false when the pool is gone).
bool read_message(int fd, std::string& message, uint64_t max_bytes = uint64_t{1} << 34);
bool write_message(int fd, const std::string& message);

}  // namespace pneumo::data
