// `pneumo predict --model CKPT_OR_RUN [--model ... --weight w ...] INPUT... --out DIR`:
// an ensemble's answers for DICOM/PNG files, folders or a label table's images.
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.h"
#include "model_options.h"
#include "pneumo/core/error.h"
#include "pneumo/infer/predict.h"

namespace pneumo::tools {

namespace {

struct PredictCommandOptions {
  ModelOptions model;
  std::vector<std::string> inputs;
  std::string labels, images, out, dicom_out;
  bool dicom_overlay = false;
  bool no_masks = false, no_overlays = false, hflip = false, cuda_graphs = false;
  std::string precision = "float32";
  bool explain = false;
  infer::ExplainOptions explanation;
  int batch_size = 0, workers = 2;
  std::string device = "auto";
};

void run_predict(const PredictCommandOptions& o) {
  infer::PredictOptions options;
  static_cast<infer::ModelSelection&>(options) = o.model.selection();
  for (const auto& i : o.inputs) options.inputs.emplace_back(i);
  options.labels = o.labels;
  options.images = o.images;
  options.out = o.out;
  options.masks = !o.no_masks;
  options.overlays = !o.no_overlays;
  options.hflip = o.hflip;
  options.dicom_out = o.dicom_out;
  options.dicom_overlay = o.dicom_overlay;
  options.batch_size = o.batch_size;
  options.workers = o.workers;
  options.device = o.device;
  options.cuda_graphs = o.cuda_graphs;
  options.precision = o.precision;
  if (o.explain) options.explain = o.explanation;
  const infer::PredictSummary s = infer::predict(options);
  const infer::PostprocessSection& p = s.postprocess;
  fmt::print("post-processing: threshold {} top_threshold {} min_area {} min_component_area {} classifier_threshold {}\n",
             p.threshold, p.top_threshold, p.min_area, p.min_component_area, p.classifier_threshold);
  fmt::print("{} image(s) predicted, {} positive; outputs in {}\n", s.images, s.positives, o.out);
  fmt::print("  submission.csv, predictions.jsonl, refused.csv{}{}{}\n", options.masks ? ", masks/" : "",
             options.overlays ? ", overlays/" : "", options.explain ? ", explanations/" : "");
  if (!o.dicom_out.empty())
    fmt::print("{} DICOM Segmentation(s) and Structured Report(s){} in {}\n", s.dicom_results,
               o.dicom_overlay ? ", Secondary Capture(s)" : "", o.dicom_out);
  if (!s.refused.empty()) {
    fmt::print("{} input(s) refused by the input gate, not scored (refused.csv; --no-gate scores them):\n",
               s.refused.size());
    for (const auto& [file, decision] : s.refused) fmt::print("  {}: {}\n", file, decision.str());
  }
  if (!s.failures.empty()) {
    for (const auto& [file, message] : s.failures) fmt::print(stderr, "error: {}\n", message);
    throw core::DataError(fmt::format("{} of {} input(s) could not be read (listed above and in predictions.jsonl); "
                                      "the others were predicted",
                                      s.failures.size(), s.failures.size() + static_cast<size_t>(s.images)));
  }
}

}  // namespace

void setup_predict(CLI::App& app) {
  auto options = std::make_shared<PredictCommandOptions>();
  CLI::App* cmd = app.add_subcommand(
      "predict", "Predict with a model or ensemble: submission.csv, predictions.jsonl, masks/ and overlays/");
  add_model_options(*cmd, options->model);
  cmd->add_option("inputs", options->inputs, "DICOM/PNG files or folders (searched recursively)");
  cmd->add_option("--labels", options->labels, "a SIIM label CSV whose images to predict (with --images)");
  cmd->add_option("--images", options->images, "the folder holding the label CSV's DICOMs");
  cmd->add_option("--out", options->out, "output folder")->required();
  cmd->add_flag("--tta", options->hflip, "test-time augmentation: average with the horizontally flipped image");
  cmd->add_option("--dicom-out", options->dicom_out,
                  "for each DICOM input, write a DICOM Segmentation <id>.seg.dcm referencing it into this folder");
  cmd->add_flag("--dicom-overlay", options->dicom_overlay,
                "with --dicom-out, also a Secondary Capture <id>.sc.dcm with the overlay burned in");
  cmd->add_flag("--no-masks", options->no_masks, "do not write masks/<id>.png");
  cmd->add_flag("--no-overlays", options->no_overlays, "do not write overlays/<id>.png");
  cmd->add_option("--batch-size", options->batch_size, "images per forward pass (0: 8 on a GPU; on the CPU about a million input pixels, at most 8)")->check(CLI::Range(0, 4096));
  cmd->add_option("--workers", options->workers, "threads reading inputs ahead")->check(CLI::Range(0, 256));
  cmd->add_option("--device", options->device, "auto, cpu, cuda or cuda:N");
  cmd->add_flag("--cuda-graphs", options->cuda_graphs, "CUDA: replay the models as CUDA graphs captured per batch shape (ignored on the CPU)");
  cmd->add_option("--precision", options->precision, "float32, or bfloat16 (autocast: fast where the CPU has AVX512-BF16 or AMX, and on GPUs)")
      ->check(CLI::IsMember({"float32", "bfloat16"}));
  cmd->add_flag("--explain", options->explain, "also explanations/<id>.png: where the model looked (Grad-CAM)");
  cmd->add_option("--explain-method", options->explanation.method, "gradcam or gradcam++")
      ->check(CLI::IsMember({"gradcam", "gradcam++"}));
  cmd->add_option("--explain-stage", options->explanation.stage,
                  "the encoder stage explained, 1..5 (1/2^stage of the input; default: the deepest)")
      ->check(CLI::Range(0, 5));
  add_gate_option(*cmd, options->model);
  cmd->callback([options] { run_predict(*options); });
}

}  // namespace pneumo::tools
