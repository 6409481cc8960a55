// `pneumo-decoder`: the worker process pneumo starts to decode files it did not write (DICOM
// files for data/dicom_isolation.h, uploads for pneumo serve's infer/src/upload_decoder.h), so
// that a file which makes GDCM abort or hang takes down this process, not the command. Requests
// come on stdin, answers go to stdout and to the shared memory on descriptor 3 (worker_pool.h);
// it ends when stdin closes. Not for people.
//
// A program of its own, without LibTorch (tools/CMakeLists.txt lists its sources, and a test
// checks what it links), so that one starts in milliseconds: pneumo itself loads LibTorch, and
// CUDA's libraries where it was built with them, about half a second of CPU per process.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <opencv2/core/utility.hpp>

#include "pneumo/core/memory.h"
#include "pneumo/data/dicom_isolation.h"
#include "pneumo/data/worker_pool.h"
#include "upload_request.h"

int main(int argc, char**) {
  using namespace pneumo;
  if (argc > 1 || ::isatty(STDIN_FILENO)) {
    std::fputs("pneumo-decoder: pneumo starts it (see --decoders in `pneumo --help`); it is not run by hand\n", stderr);
    return 2;
  }
  ::signal(SIGPIPE, SIG_DFL);
  core::keep_freed_memory();  // as pneumo does: decoding allocates the same sizes file after file
  // The pool has one process per core: OpenCV's own threads (its resize) would only compete with
  // the other decoders (bench_decode: the isolated row 17-24% below in-process threads with them).
  cv::setNumThreads(1);
  // A test seam: requests holding this text make the decoder abort, as GDCM can.
  const char* abort_prefix = std::getenv("PNEUMO_TEST_DECODER_ABORT_PREFIX");
  data::WorkerChannel channel;
  std::string request;
  while (channel.read(request)) {
    if (abort_prefix != nullptr && *abort_prefix != '\0' && request.find(abort_prefix) != std::string::npos) std::abort();
    data::WorkerAnswer answer;
    if (infer::is_upload_request(request))
      answer = infer::answer_upload_request(request);
    else if (data::is_dicom_request(request))
      answer = data::answer_dicom_request(request);
    else
      answer.message = std::string(1, '\0') + "an unknown request";
    if (!channel.write(answer)) return 0;
  }
  return 0;
}
