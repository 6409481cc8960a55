// The decoder process's side of an upload (upload_decoder.h is serve's side): its own header,
// free of LibTorch's, for the decoder program (tools/decoder).
#pragma once

#include <string>

#include "pneumo/data/worker_pool.h"

namespace pneumo::infer {

// Whether a request is an upload's, and the decoder's answer to it (never throws).
bool is_upload_request(const std::string& request);
data::WorkerAnswer answer_upload_request(const std::string& request);

}  // namespace pneumo::infer
