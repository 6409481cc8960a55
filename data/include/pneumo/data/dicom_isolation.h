// Every DICOM pneumo reads, decoded in worker processes when the program asks for it, so that a
// file which makes GDCM abort or hang cannot bring the command down: read_dicom, decode_dicom,
// read_dicom_header and read_dicom_patient_id (dicom.h) then send their work to a pool of
// `pneumo-decoder` processes (worker_pool.h, tools/decoder) and that file alone fails, with a DataError
// naming it and saying why ("the DICOM decoder stopped: SIGABRT"; "timed out after 60 s"),
// while the run goes on with the others. Every path goes through those four functions: predict,
// evaluate, tune, calibrate, pacs, data check, the preprocessing cache that train and cv fill,
// plan's fingerprint, the folds' patient IDs and dicom info/convert.
//
// The structure check (dicom_structure.h) still runs first, in the worker: it refuses what it
// knows to be malformed with a precise message; isolation catches what it does not know.
#pragma once

#include <string>

#include "pneumo/data/worker_pool.h"

namespace pneumo::data {

struct DicomIsolation {
  std::string program;  // what the workers run; empty: decoder_program() (worker_pool.h)
  int workers = 0;                          // 0: decode in this process
  double timeout_s = 60;                    // per file
};

// Set once, before the first DICOM is read (pneumo's main does it from --decoders); the workers
// start on first use.
void set_dicom_isolation(const DicomIsolation& isolation);
const DicomIsolation& dicom_isolation();
bool dicom_isolated();
// Workers replaced after a crash or timeout so far (0 without isolation).
int dicom_decoder_restarts();

// The worker's side (`pneumo-decoder`): whether a request is one of these, and its answer
// (which carries the error, if any; it never throws).
bool is_dicom_request(const std::string& request);
WorkerAnswer answer_dicom_request(const std::string& request);

}  // namespace pneumo::data
