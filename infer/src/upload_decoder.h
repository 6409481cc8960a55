// Uploads decoded in worker processes: GDCM aborts the whole process on some malformed data sets
// (Debian builds it with assertions; see tests/fuzz/open/README.md), and an upload must never
// take the server down with it. The workers are `pneumo decode-worker` processes of a
// data::WorkerPool (worker_pool.h), which also answer the DICOM requests of dicom_isolation.h;
// a worker that dies or takes longer than the timeout is replaced, and that upload is refused
// with a DataError.
#pragma once

#include <string>

#include "pneumo/data/worker_pool.h"
#include "pneumo/infer/inputs.h"

namespace pneumo::infer {

class UploadDecoder {
 public:
  // Starts `workers` processes of `program` (pneumo itself). Throws IoError when one cannot start.
  UploadDecoder(std::string program, int workers, double timeout_s);

  // Thread-safe; waits for a free worker. `window`: the DICOM grey mapping of the model
  // ("none" or "file", Predictor::window()). Throws DataError naming `id` for bad input.
  InputImage decode(std::string bytes, const std::string& id, const std::string& window);

  int restarts() const { return pool_.restarts(); }

 private:
  data::WorkerPool pool_;
};

// Whether a request is an upload's, and the worker's answer to it (never throws).
bool is_upload_request(const std::string& request);
data::WorkerAnswer answer_upload_request(const std::string& request);

}  // namespace pneumo::infer
