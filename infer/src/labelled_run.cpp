#include "pneumo/infer/labelled_run.h"

#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/core/runtime.h"
#include "pneumo/infer/cross_validation.h"

namespace pneumo::infer {

LabelledRunSummary run_labelled(const LabelledRunOptions& options, const std::string& verb, bool needs_segmenter,
                                const std::function<void(Prediction&, const LabelledTruth& truth)>& on_prediction) {
  if (options.models.empty()) throw core::UsageError("no model given; expected --model CHECKPOINT_OR_RUN_FOLDER");
  if (!options.table.empty() + !options.labels.empty() + !options.masks.empty() > 1)
    throw core::UsageError("--labels, --masks and --table: expected one kind of ground truth");
  if (options.table.empty() && !options.split_list.empty())
    throw core::UsageError("--split-list restricts a class table: give --table too");
  std::optional<Predictor> predictor;
  LabelledSet set;
  if (!options.table.empty()) {  // read as the ensemble's classifier was trained
    predictor.emplace(load_predictor(options));
    data::DataSection model_data;
    for (const Member& m : predictor->members())
      if (!m.classes.empty()) model_data = m.config.data;
    set = class_set(options.table, options.images, options.split_list, model_data);
  } else if (!options.masks.empty()) {
    set = mask_folder_set(options.masks, options.images);
  } else {
    if (options.labels.empty() && options.images.empty() && is_cv_folder(options.models.front().path))
      throw core::UsageError(fmt::format(
          "{} is a cross-validation ensemble: its folds together trained on every image of its data set; give "
          "--labels and --images (or --masks) of a held-out set ({} holds the out-of-fold scores)",
          options.models.front().path.string(), (options.models.front().path / "cv.md").string()));
    set = labelled_set(options.labels, options.images, run_folder_of(options.models.front().path));
  }
  if (set.inputs.empty()) throw core::DataError(fmt::format("{}: no images to {}", set.description, verb));
  if (!predictor) predictor.emplace(load_predictor(options));
  if (!set.classes.empty() && predictor->classes() != set.classes)
    throw core::UsageError(fmt::format("{}: the classes ({}) are not those the ensemble predicts ({})", set.description,
                                       fmt::join(set.classes, ", "), fmt::join(predictor->classes(), ", ")));
  LabelledRunSummary summary;
  summary.set = set.description;
  summary.classes = set.classes;
  summary.postprocess = predictor->postprocess();
  summary.calibration = predictor->calibration();
  if (needs_segmenter && !predictor->has_segmenter())
    throw core::UsageError(fmt::format("{} needs masks; the ensemble has no segmenter", verb));
  if (needs_segmenter && !set.masks)
    throw core::UsageError(fmt::format("{} needs masks; {} holds image-level classes only", verb, set.description));
  core::log::info("{} on {}", verb, set.description);
  RunOptions run;
  run.batch_size = options.batch_size;
  run.workers = options.workers;
  run.progress_label = verb;
  run_predictor(
      *predictor, set.inputs, run,
      [&](Prediction& p) {
        LabelledTruth truth;
        if (set.masks) truth.mask = set.masks->mask(p.input.file.id, p.input.pixels.rows, p.input.pixels.cols);
        if (!set.classes.empty()) truth.targets = &set.targets.at(p.input.file.id);
        on_prediction(p, truth);
        ++summary.images;
      },
      [&](const InputFile& file, const std::string& message) { summary.failures.emplace_back(file.path.string(), message); });
  if (summary.images == 0) throw core::DataError(fmt::format("{}: no image could be read", set.description));
  return summary;
}

}  // namespace pneumo::infer
