// `pneumo serve --model CKPT_OR_RUN [--model ...] [--host 127.0.0.1 --port 8080]`: the web page
// and REST API of infer/serve.h.
#include <cstdlib>
#include <memory>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "model_options.h"
#include "pneumo/data/dicom_isolation.h"
#include "pneumo/infer/serve.h"

namespace pneumo::tools {

namespace {

struct ServeCommandOptions {
  ModelOptions model;
  infer::ServeOptions serve;
};

void run_serve(const ServeCommandOptions& o) {
  infer::ServeOptions options = o.serve;
  static_cast<infer::ModelSelection&>(options.ensemble) = o.model.selection();  // --tta, --device... stay
  // A token on the command line shows in `ps`; the environment does not.
  if (options.token.empty())
    if (const char* token = std::getenv("PNEUMO_SERVE_TOKEN"); token != nullptr) options.token = token;
  options.decoders = data::dicom_isolation().workers;  // pneumo's global --decoders: uploads too
  infer::serve(options);
}

}  // namespace

void setup_serve(CLI::App& app) {
  auto options = std::make_shared<ServeCommandOptions>();
  infer::ServeOptions& s = options->serve;
  CLI::App* cmd = app.add_subcommand(
      "serve", "Serve a model or ensemble over HTTP: a web page to upload X-rays and a REST API (POST /v1/predict)");
  add_model_options(*cmd, options->model);
  cmd->get_option("--model")->required(false);  // or --model-repository (serve checks one of them is given)
  add_gate_option(*cmd, options->model);
  cmd->add_flag("--tta", s.ensemble.hflip, "test-time augmentation: average with the horizontally flipped image");
  cmd->add_option("--device", s.ensemble.device, "auto, cpu, cuda or cuda:N");
  cmd->add_flag("--cuda-graphs", s.ensemble.cuda_graphs, "CUDA: replay the models as CUDA graphs captured per batch shape (ignored on the CPU)");
  cmd->add_option("--precision", s.ensemble.precision, "float32, or bfloat16 (autocast: fast where the CPU has AVX512-BF16 or AMX, and on GPUs)")
      ->check(CLI::IsMember({"float32", "bfloat16"}));
  cmd->add_option("--model-name", s.model_name, "the name /v2/models/NAME serves the --model ensemble under")
      ->capture_default_str();
  cmd->add_option("--model-repository", s.model_repository,
                  "instead of --model: serve every DIR/<name>/<version>/ (the highest version; run folders, CV "
                  "folders, checkpoints or exports), reloadable by name or SIGHUP");
  cmd->add_option("--host", s.host, "address to listen on (127.0.0.1: this machine only)")->capture_default_str();
  cmd->add_option("--port", s.port, "TCP port (0: any free port, printed)")->capture_default_str();
  cmd->add_option("--token", s.token,
                  "require 'Authorization: Bearer TOKEN' on /v1/* (better: set PNEUMO_SERVE_TOKEN, unseen by ps)");
  cmd->add_option("--max-upload-mb", s.max_upload_mb, "largest upload accepted (413 above)")->capture_default_str();
  cmd->add_option("--max-batch", s.max_batch, "requests the model takes at once")->capture_default_str()->check(CLI::Range(1, 1024));
  cmd->add_option("--max-wait-ms", s.max_wait_ms, "how long a batch waits for more requests once one arrived")
      ->capture_default_str();
  cmd->add_option("--queue", s.queue, "requests waiting for the model, at most (503 + Retry-After beyond)")
      ->capture_default_str()->check(CLI::Range(1, 100000));
  cmd->add_option("--timeout", s.timeout_s, "seconds a request may wait for the model (503 beyond)")->capture_default_str();
  cmd->add_option("--http-threads", s.http_threads, "threads reading requests and decoding images")
      ->capture_default_str()->check(CLI::Range(1, 1024));
  cmd->add_option("--history", s.history, "recent results kept for the /results page (0: none)")->capture_default_str();
  cmd->add_option("--overlay-max-side", s.overlay_max_side, "the returned overlay is drawn at most this many pixels wide or high (the mask itself: rle)")
      ->capture_default_str();
  cmd->add_option("--explain-method", s.explain.method, "the explanation ?explain=true returns: gradcam or gradcam++")
      ->capture_default_str()->check(CLI::IsMember({"gradcam", "gradcam++"}));
  cmd->add_option("--explain-stage", s.explain.stage, "the encoder stage it explains, 1..5 (0: the deepest)")
      ->capture_default_str()->check(CLI::Range(0, 5));
  cmd->callback([options] { run_serve(*options); });
}

}  // namespace pneumo::tools
