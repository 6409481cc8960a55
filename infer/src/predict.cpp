#include "pneumo/infer/predict.h"

#include <fmt/format.h>

#include "pneumo/core/build_info.h"
#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/core/runtime.h"
#include "pneumo/infer/outputs.h"
#include "pneumo/infer/predictor.h"

namespace pneumo::infer {

namespace fs = std::filesystem;

PostprocessSection resolve_postprocess(const std::vector<Member>& members, const PostprocessOverrides& o) {
  PostprocessSection p;
  if (!members.empty() && members.front().exported_postprocess) {
    p = *members.front().exported_postprocess;  // what the exported file states
  } else if (!members.empty()) {
    const double t = members.front().config.train.threshold;
    p.threshold = p.top_threshold = p.classifier_threshold = t;
    const Member& first = members.front();
    const fs::path run = postprocess_folder_of(first.model_path.empty() ? first.checkpoint : first.model_path);
    if (!run.empty() && fs::exists(run / "postprocess.yaml")) {
      p = read_postprocess(run / "postprocess.yaml");
      core::log::info("post-processing from {}", (run / "postprocess.yaml").string());
    }
  }
  if (!o.file.empty()) p = read_postprocess(o.file);
  if (o.threshold) p.threshold = *o.threshold;
  if (o.top_threshold) p.top_threshold = *o.top_threshold;
  if (o.classifier_threshold) p.classifier_threshold = *o.classifier_threshold;
  if (o.min_area) p.min_area = *o.min_area;
  if (o.min_component_area) p.min_component_area = *o.min_component_area;
  for (double v : {p.threshold, p.top_threshold, p.classifier_threshold})
    if (!(v >= 0.0 && v <= 1.0)) throw core::UsageError(fmt::format("threshold {}: expected 0..1", v));
  if (p.min_area < 0 || p.min_component_area < 0) throw core::UsageError("areas must be >= 0 pixels");
  return p;
}

std::optional<Calibration> resolve_calibration(const std::vector<Member>& members, const ModelSelection& selection) {
  if (selection.no_calibration) {
    if (!selection.calibration.empty()) throw core::UsageError("--calibration FILE and --no-calibration contradict each other");
    return std::nullopt;
  }
  if (!selection.calibration.empty()) return read_calibration(selection.calibration);
  if (members.empty()) return std::nullopt;
  const Member& first = members.front();
  if (first.script) return first.exported_calibration;
  const fs::path run = postprocess_folder_of(first.model_path.empty() ? first.checkpoint : first.model_path);
  if (run.empty() || !fs::exists(run / "calibration.yaml")) return std::nullopt;
  Calibration c = read_calibration(run / "calibration.yaml");
  core::log::info("calibration from {}: {}", (run / "calibration.yaml").string(), c.describe());
  return c;
}

Predictor load_predictor(const EnsembleOptions& options) {
  const c10::Device device = core::resolve_device(core::parse_device(options.device));
  std::vector<Member> members = load_members(options.models, options.members, options.overrides, device);
  // Threads as train sets them: the run's runtime.threads, else one per core on the CPU.
  const int threads = members.front().config.runtime.threads;
  core::configure_threads(threads > 0 ? threads
                                      : core::plan_threads(core::hardware_threads(), 1, device.is_cuda()).intra_op);
  const PostprocessSection postprocess = resolve_postprocess(members, options.postprocess);
  std::optional<Calibration> calibration = resolve_calibration(members, options);
  PredictorOptions predictor_options;
  predictor_options.hflip = options.hflip;
  predictor_options.cuda_graphs = options.cuda_graphs;
  predictor_options.precision = options.precision;
  predictor_options.gate = !options.no_gate;
  return Predictor(std::move(members), postprocess, predictor_options, device, std::move(calibration));
}

std::string algorithm_name(const Predictor& predictor) {
  std::string name = fmt::format("pneumo {}", PNEUMO_VERSION);
  for (size_t i = 0; i < predictor.members().size(); ++i) {
    const Member& m = predictor.members()[i];
    if (m.script)
      name += fmt::format("{}{}", i == 0 ? " " : "+", m.checkpoint.filename().string());
    else
      name += fmt::format("{}{}/{}", i == 0 ? " " : "+", m.config.model.name, m.config.model.encoder.name);
  }
  return name.size() > 64 ? name.substr(0, 64) : name;  // a DICOM LO value holds 64 characters
}

PredictSummary predict(const PredictOptions& options) {
  std::vector<InputFile> inputs;
  if (!options.labels.empty() || !options.images.empty())
    inputs = labelled_set(options.labels, options.images, {}).inputs;
  const std::vector<InputFile> listed = collect_inputs(options.inputs);
  inputs.insert(inputs.end(), listed.begin(), listed.end());
  if (inputs.empty()) throw core::UsageError("no input images found; give DICOM/PNG files, folders, or --labels with --images");
  if (options.out.empty()) throw core::UsageError("no output folder; expected --out DIR");
  if (options.dicom_overlay && options.dicom_out.empty()) throw core::UsageError("--dicom-overlay needs --dicom-out DIR");

  const Predictor predictor = load_predictor(options);
  PredictSummary summary;
  summary.postprocess = predictor.postprocess();
  core::log::info("predict: {} image(s) with {} model(s) on {}{}", inputs.size(), predictor.members().size(),
                  predictor.device().str(), options.hflip ? ", flip TTA" : "");
  if (!predictor.gate().enabled) core::log::info("the input gate is off: every readable image is scored");
  if (options.explain) check_explain_options(*options.explain);

  fs::create_directories(options.out);
  OutputOptions output;
  output.folder = options.out;
  output.masks = options.masks;
  output.overlays = options.overlays;
  output.dicom_folder = options.dicom_out;
  output.secondary_capture = options.dicom_overlay;
  output.algorithm = algorithm_name(predictor);
  output.classes = predictor.classes();
  output.calibration = predictor.calibration();
  PredictionWriter writer(output);
  RunOptions run;
  run.batch_size = options.batch_size;
  run.workers = options.workers;
  run.gate = true;
  run_predictor(
      predictor, inputs, run,
      [&](Prediction& p) {
        try {
          if (options.explain) p.explanation = predictor.explain(p.input, *options.explain);
          writer.add(p);
        } catch (const core::DataError& e) {  // a DICOM result the source does not allow
          summary.failures.emplace_back(p.input.file.path.string(), e.what());
        }
      },
      [&](const InputFile& file, const std::string& message) {
        writer.add_failure(file, message);
        summary.failures.emplace_back(file.path.string(), message);
      },
      [&](const InputImage& image, const data::GateDecision& decision) {
        writer.add_refusal(image.file, decision);
        summary.refused.emplace_back(image.file.path.empty() ? image.file.id : image.file.path.string(), decision);
      });
  writer.finish();
  summary.images = writer.written();
  summary.positives = writer.positives();
  summary.dicom_results = writer.dicom_written();
  return summary;
}

}  // namespace pneumo::infer
