// `pneumo pacs --orthanc URL --model CKPT_OR_RUN [--watch]`: the models as a PACS node
// (infer/pacs.h).
#include <cstdlib>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.h"
#include "model_options.h"
#include "pneumo/infer/pacs.h"

namespace pneumo::tools {

namespace {

struct PacsCommandOptions {
  ModelOptions model;
  infer::PacsOptions pacs;
};

void run_pacs_command(const PacsCommandOptions& o) {
  infer::PacsOptions options = o.pacs;
  static_cast<infer::ModelSelection&>(options.ensemble) = o.model.selection();  // --tta, --device... stay
  // Credentials on the command line show in `ps`; the environment does not.
  if (options.credentials.empty())
    if (const char* c = std::getenv("PNEUMO_ORTHANC_CREDENTIALS"); c != nullptr) options.credentials = c;
  const infer::PacsSummary s = infer::run_pacs(options);
  fmt::print("{} instance(s) processed, {} positive, {} refused by the input gate, {} could not be read\n",
             s.processed, s.positives, s.refused, s.failed);
}

}  // namespace

void setup_pacs(CLI::App& app) {
  auto options = std::make_shared<PacsCommandOptions>();
  infer::PacsOptions& p = options->pacs;
  CLI::App* cmd = app.add_subcommand(
      "pacs", "Process new images in a PACS (Orthanc's REST API or DICOMweb): store a DICOM Segmentation and a "
              "Structured Report for each, once");
  add_model_options(*cmd, options->model);
  add_gate_option(*cmd, options->model);
  cmd->add_option("--orthanc", p.orthanc, "Orthanc's REST URL, e.g. http://127.0.0.1:8042");
  cmd->add_option("--dicomweb", p.dicomweb,
                  "instead: a DICOMweb root (QIDO-RS, WADO-RS, STOW-RS), e.g. http://127.0.0.1:8042/dicom-web");
  cmd->add_option("--credentials", p.credentials,
                  "user:password for the PACS's HTTP authentication (better: PNEUMO_ORTHANC_CREDENTIALS)");
  cmd->add_flag("--watch", p.watch, "keep watching for new images until SIGINT/SIGTERM, riding out Orthanc restarts");
  cmd->add_option("--poll", p.poll_s, "seconds between polls when nothing is new (--watch)")->capture_default_str();
  cmd->add_option("--mark", p.mark, "Orthanc user metadata index (1024..65535) marking processed instances")
      ->capture_default_str();
  cmd->add_flag("--secondary-capture", p.secondary_capture,
                "also store a Secondary Capture with the overlay burned in, for viewers without SEG support");
  cmd->add_flag("--tta", p.ensemble.hflip, "test-time augmentation: average with the horizontally flipped image");
  cmd->add_option("--device", p.ensemble.device, "auto, cpu, cuda or cuda:N");
  cmd->add_flag("--cuda-graphs", p.ensemble.cuda_graphs, "CUDA: replay the models as CUDA graphs captured per batch shape (ignored on the CPU)");
  cmd->add_option("--precision", p.ensemble.precision, "float32, or bfloat16 (autocast: fast where the CPU has AVX512-BF16 or AMX, and on GPUs)")
      ->check(CLI::IsMember({"float32", "bfloat16"}));
  cmd->add_option("--timeout", p.timeout_s, "seconds per HTTP request to Orthanc")->capture_default_str();
  cmd->callback([options] { run_pacs_command(*options); });
}

}  // namespace pneumo::tools
