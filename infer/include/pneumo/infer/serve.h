// `pneumo serve`: the models behind an HTTP server (cpp-httplib), for a browser and for
// other programs.
//
//   GET  /                  the upload page: DICOM/PNG/JPEG in, overlay, probability, decision, area out
//   GET  /results           the recent results page
//   GET  /health            {"status": "ok", "ready": ..., ...} (no token needed)
//   GET  /metrics           Prometheus text exposition (no token needed; serve_metrics.h)
//   GET  /v1/model          the (first) model: members, input sizes, thresholds, gate, batching
//   POST /v1/predict        image bytes (raw body of any Content-Type, or a multipart "file"
//                           field) -> JSON: {probability, decision, positive, rle, area_px,
//                           area_mm2, width, height, gate, overlay_png (unless ?overlay=false),
//                           explanation_png (with ?explain=true), model_name, model_version, id}
//   GET  /v1/results        the recent results (no images)
//   GET  /v1/results/N/overlay.png
//   KServe v2 / Triton (kserve.h, model_repository.h):
//   GET  /v2, /v2/health/live, /v2/health/ready (ready: every model loaded and warmed up)
//   GET  /v2/models/NAME[/versions/V], .../ready
//   POST /v2/models/NAME[/versions/V]/infer
//   POST /v2/repository/index, /v2/repository/models/NAME/load, .../unload
//
// Requests are decoded on the HTTP threads (or in decoder processes), gated, then batched across
// clients for the models (dynamic_batcher.h). SIGHUP loads the models again without dropping a
// request. Errors are JSON {"error": "..."} with a 4xx/5xx status saying the cause; a full queue
// answers 503 with Retry-After. Logs name requests by number, never by patient data.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "pneumo/infer/predict.h"

namespace pneumo::infer {

struct ServeOptions {
  EnsembleOptions ensemble;        // --model ...: one model, named model_name, version 1
  std::string model_name = "pneumo";
  std::filesystem::path model_repository;  // or DIR/<name>/<version>/ (model_repository.h)
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (printed)
  std::string token;  // when set, /v1/* and /v2/* (but its health probes) need "Authorization: Bearer <token>"
  double max_upload_mb = 64;
  int http_threads = 32;
  int queue = 64;       // requests waiting for the models; more are answered 503
  int max_batch = 4;
  double max_wait_ms = 2;
  double timeout_s = 30;  // a request waiting longer for the models is answered 503
  int history = 50;       // results kept for /results
  int overlay_max_side = 512;  // the returned overlay is drawn at most this wide or high
  // Uploads are decoded in this many worker processes (`pneumo-decoder`), so that a file that
  // crashes the DICOM library cannot take the server down; 0: in the server itself.
  int decoders = 4;
  std::string program;  // what the workers run; empty: data::decoder_program()
  ExplainOptions explain;  // for ?explain=true
};

// Serves until SIGINT or SIGTERM, then finishes the requests in progress and returns. Prints
// "serving on http://HOST:PORT" on stdout once it accepts connections. Throws UsageError for a
// bad option or a port it cannot bind.
void serve(const ServeOptions& options);

}  // namespace pneumo::infer
