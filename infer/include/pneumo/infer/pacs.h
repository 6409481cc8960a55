// `pneumo pacs --orthanc URL | --dicomweb URL [--watch]`: the models as a PACS node. Runs the
// ensemble on every new image instance the input gate accepts and stores a DICOM Segmentation,
// a Structured Report (and, when asked, a Secondary Capture) back, once, across runs and
// restarts: results carry UIDs derived from their source and the models, so storing one again
// after an interruption changes nothing.
//   - Orthanc's REST API: its change log says what is new; a user metadata entry marks each
//     source instance done, refused (the gate's reason) or failed.
//   - DICOMweb (any server; tested with Orthanc's plugin): QIDO-RS lists the instances, an
//     instance whose SEG the server already holds is done, WADO-RS fetches the others and
//     STOW-RS stores the results. Refused and unreadable instances are remembered for the
//     process's life only (there is nowhere to mark them).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pneumo/infer/predict.h"

namespace pneumo::infer {

struct PacsOptions {
  EnsembleOptions ensemble;
  std::string orthanc;      // e.g. http://127.0.0.1:8042
  std::string dicomweb;     // or a DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web
  std::string credentials;  // "user:password" for Orthanc's HTTP authentication, or empty
  bool watch = false;       // keep polling until SIGINT/SIGTERM, riding out Orthanc restarts
  double poll_s = 2;        // pause between polls when nothing is new (--watch)
  int mark = 9901;          // the Orthanc user metadata index (1024..65535) marking done instances
  bool secondary_capture = false;
  double timeout_s = 120;  // per HTTP request
};

struct PacsSummary {
  int64_t processed = 0, positives = 0, failed = 0;
  int64_t refused = 0;  // by the input gate (marked "refused" with the reason; no result stored)
};

// One pass over Orthanc's changes (or, with `watch`, passes until a signal). Throws UsageError
// for bad options or models, IoError when Orthanc cannot be reached (without `watch`).
PacsSummary run_pacs(const PacsOptions& options);

}  // namespace pneumo::infer
