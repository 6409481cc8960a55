#include "pneumo/infer/labelled_run.h"

#include <fmt/format.h>

#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/core/runtime.h"

namespace pneumo::infer {

LabelledRunSummary run_labelled(const LabelledRunOptions& options, const std::string& verb, bool needs_segmenter,
                                const std::function<void(Prediction&, const cv::Mat& truth)>& on_prediction) {
  if (options.models.empty()) throw core::UsageError("no model given; expected --model CHECKPOINT_OR_RUN_FOLDER");
  const LabelledSet set = labelled_set(options.labels, options.images, run_folder_of(options.models.front().path));
  if (set.inputs.empty()) throw core::DataError(fmt::format("{}: no images to {}", set.description, verb));
  const Predictor predictor = load_predictor(options);
  LabelledRunSummary summary;
  summary.set = set.description;
  summary.postprocess = predictor.postprocess();
  if (needs_segmenter && !predictor.has_segmenter())
    throw core::UsageError(fmt::format("{} needs masks; the ensemble has no segmenter", verb));
  core::log::info("{} on {}", verb, set.description);
  RunOptions run;
  run.batch_size = options.batch_size;
  run.workers = options.workers;
  run.progress_label = verb;
  run_predictor(
      predictor, set.inputs, run,
      [&](Prediction& p) {
        const cv::Mat truth = set.masks->mask(p.input.file.id, p.input.pixels.rows, p.input.pixels.cols);
        on_prediction(p, truth);
        ++summary.images;
      },
      [&](const InputFile& file, const std::string& message) { summary.failures.emplace_back(file.path.string(), message); });
  if (summary.images == 0) throw core::DataError(fmt::format("{}: no image could be read", set.description));
  return summary;
}

}  // namespace pneumo::infer
