// Uploads decoded in worker processes: GDCM aborts the whole process on some malformed data sets
// (Debian builds it with assertions; see tests/fuzz/open/README.md), and an upload must never
// take the server down with it. Each worker is `pneumo decode-worker`, fed one upload at a time
// through a pipe; a worker that dies or takes longer than the timeout is killed and replaced,
// and that upload is refused with a DataError.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "pneumo/infer/inputs.h"

namespace pneumo::infer {

class UploadDecoder {
 public:
  // Starts `workers` processes of `program` (pneumo itself). Throws IoError when one cannot start.
  UploadDecoder(std::string program, int workers, double timeout_s);
  ~UploadDecoder();
  UploadDecoder(const UploadDecoder&) = delete;
  UploadDecoder& operator=(const UploadDecoder&) = delete;

  // Thread-safe; waits for a free worker. `window`: the DICOM grey mapping of the model
  // ("none" or "file", Predictor::window()). Throws DataError naming `id` for bad input.
  InputImage decode(std::string bytes, const std::string& id, const std::string& window);

  int restarts() const;

 private:
  struct Worker {
    pid_t pid = -1;
    int to = -1, from = -1;  // its stdin, its stdout
  };
  Worker start() const;
  static void stop(Worker& w);

  std::string program_;
  double timeout_s_;
  mutable std::mutex mutex_;
  std::condition_variable available_;
  std::vector<Worker> idle_;
  std::vector<Worker> all_;  // every running worker (for the destructor)
  int restarts_ = 0;
};

}  // namespace pneumo::infer
