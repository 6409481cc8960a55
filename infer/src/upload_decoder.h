// Uploads decoded in worker processes: GDCM aborts the whole process on some malformed data sets
// (Debian builds it with assertions; see tests/fuzz/open/README.md), and an upload must never
// take the server down with it. The workers are `pneumo-decoder` processes (tools/decoder) of a
// data::WorkerPool (worker_pool.h), which also answer the DICOM requests of dicom_isolation.h;
// a worker that dies or takes longer than the timeout is replaced, and that upload is refused
// with a DataError.
#pragma once

#include <string>

#include "pneumo/data/worker_pool.h"
#include "pneumo/infer/inputs.h"
#include "upload_request.h"

namespace pneumo::infer {

class UploadDecoder {
 public:
  // Starts `workers` processes of `program` (empty: data::decoder_program()). Throws IoError
  // when one cannot start.
  UploadDecoder(std::string program, int workers, double timeout_s);

  // Thread-safe; waits for a free worker. `window`: the DICOM grey mapping of the model
  // ("none" or "file", Predictor::window()). Throws DataError naming `id` for bad input.
  InputImage decode(std::string bytes, const std::string& id, const std::string& window);

  int restarts() const { return pool_.restarts(); }

 private:
  data::WorkerPool pool_;
};

}  // namespace pneumo::infer
