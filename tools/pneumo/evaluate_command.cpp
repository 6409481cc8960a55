// `pneumo evaluate` (metrics and charts against ground truth) and `pneumo tune` (search the
// post-processing thresholds and store them with the run).
#include <cmath>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.h"
#include "model_options.h"
#include "pneumo/core/error.h"
#include "pneumo/infer/evaluate.h"
#include "pneumo/infer/tune.h"

namespace pneumo::tools {

namespace {

struct SetOptions {
  ModelOptions model;
  std::string labels, masks, images, table, split_list, out;
  bool hflip = false;
  int batch_size = 0, workers = 2, worst = 16;
  std::string device = "auto";
};

void add_set_options(CLI::App& cmd, SetOptions& o) {
  add_model_options(cmd, o.model);
  cmd.add_option("--labels", o.labels, "a SIIM label CSV (default: the run's validation fold)");
  cmd.add_option("--masks", o.masks, "instead of --labels: a folder of <ImageId>.png masks for the images of --images");
  cmd.add_option("--images", o.images, "the folder holding the label CSV's (or masks', or table's) images");
  cmd.add_flag("--tta", o.hflip, "test-time augmentation: average with the horizontally flipped image");
  cmd.add_option("--batch-size", o.batch_size, "images per forward pass (0: 1 on the CPU, 8 on a GPU)")->check(CLI::Range(0, 4096));
  cmd.add_option("--workers", o.workers, "threads reading inputs ahead")->check(CLI::Range(0, 256));
  cmd.add_option("--device", o.device, "auto, cpu, cuda or cuda:N");
}

std::string describe(const infer::PostprocessSection& p) {
  return fmt::format("threshold {:.2f}  top_threshold {:.2f}  min_area {}  min_component_area {}  classifier_threshold {:.2f}",
                     p.threshold, p.top_threshold, p.min_area, p.min_component_area, p.classifier_threshold);
}

void fail_on_unreadable(const std::vector<std::pair<std::string, std::string>>& failures, int64_t done) {
  if (failures.empty()) return;
  for (const auto& [file, message] : failures) fmt::print(stderr, "error: {}\n", message);
  throw core::DataError(fmt::format("{} of {} image(s) could not be read (listed above); the figures cover the others",
                                    failures.size(), failures.size() + static_cast<size_t>(done)));
}

infer::LabelledRunOptions labelled_run(const SetOptions& o) {
  infer::LabelledRunOptions run;
  static_cast<infer::ModelSelection&>(run) = o.model.selection();
  run.labels = o.labels;
  run.masks = o.masks;
  run.images = o.images;
  run.table = o.table;
  run.split_list = o.split_list;
  run.hflip = o.hflip;
  run.batch_size = o.batch_size;
  run.workers = o.workers;
  run.device = o.device;
  return run;
}

void run_evaluate(const SetOptions& o) {
  infer::EvaluateOptions options;
  options.run = labelled_run(o);
  options.out = o.out;
  options.worst = o.worst;
  const infer::EvaluationReport r = infer::evaluate(options);
  const auto cell = [](double v) { return std::isnan(v) ? std::string("-") : fmt::format("{:.4f}", v); };
  fmt::print("evaluated {} image(s): {}\n", r.images, r.set);
  if (!r.classes.empty()) {  // CheXNet's table
    fmt::print("  {:<28} {:>7} {:>7} {:>9} {:>9} {:>8}\n", "class", "AUC", "AP", "positive", "negative", "ignored");
    for (const infer::ClassMetrics& m : r.classes)
      fmt::print("  {:<28} {:>7} {:>7} {:>9} {:>9} {:>8}\n", m.name, cell(m.auc), cell(m.average_precision),
                 m.positives, m.negatives, m.ignored);
    fmt::print("  {:<28} {:>7}\n", "mean", cell(r.mean_auc));
    fmt::print("report in {}: metrics.json, class_metrics.csv, per_image.csv, roc_classes.png, roc/\n", o.out);
    fail_on_unreadable(r.failures, r.images);
    return;
  }
  fmt::print("post-processing: {}\n", describe(r.postprocess));
  fmt::print("  Kaggle mean Dice  {}\n  mean IoU          {}\n", cell(r.dice), cell(r.iou));
  fmt::print("  image AUC         {}\n  image AP          {}\n", cell(r.image.auc), cell(r.image.average_precision));
  fmt::print("  sensitivity       {}\n  specificity       {}\n  precision         {}\n  F1                {}\n",
             cell(r.image.recall), cell(r.image.specificity), cell(r.image.precision), cell(r.image.f1));
  fmt::print("  confusion         TP {}  FP {}  TN {}  FN {}\n", r.image.tp, r.image.fp, r.image.tn, r.image.fn);
  fmt::print("report in {}: metrics.json, per_image.csv, roc.png, pr.png, confusion.png, dice_histogram.png, worst.png\n",
             o.out);
  fail_on_unreadable(r.failures, r.images);
}

void run_tune(const SetOptions& o) {
  infer::TuneOptions options;
  options.run = labelled_run(o);
  options.out = o.out;
  const infer::TuneResult r = infer::tune(options);
  fmt::print("tuned on {} image(s): {}\n", r.images, r.set);
  fmt::print("  before  Dice {:.4f}  {}\n", r.start_dice, describe(r.start));
  fmt::print("  best    Dice {:.4f}  {}\n", r.best_dice, describe(r.best));
  for (const auto& [settings, dice] : r.runners_up) fmt::print("          Dice {:.4f}  {}\n", dice, describe(settings));
  fmt::print("wrote {} (predict, evaluate and export of this run use it)\n", r.written.string());
  fail_on_unreadable(r.failures, r.images);
}

}  // namespace

void setup_evaluate(CLI::App& app) {
  auto options = std::make_shared<SetOptions>();
  CLI::App* cmd = app.add_subcommand(
      "evaluate", "Score a model or ensemble against ground truth: metrics.json, per_image.csv and charts");
  add_set_options(*cmd, *options);
  cmd->add_option("--out", options->out, "report folder")->required();
  cmd->add_option("--table", options->table,
                  "an image-level class table (read as the classifier's data section says) instead of --labels");
  cmd->add_option("--split-list", options->split_list,
                  "with --table: only the images this list names (e.g. ChestX-ray14's test_list.txt)");
  cmd->add_option("--worst", options->worst, "images on the worst-cases contact sheet")->check(CLI::Range(0, 400));
  cmd->callback([options] { run_evaluate(*options); });

  auto tune = std::make_shared<SetOptions>();
  CLI::App* tune_cmd = app.add_subcommand(
      "tune", "Search the post-processing thresholds on labelled images and store them as the run's postprocess.yaml");
  add_set_options(*tune_cmd, *tune);
  tune_cmd->add_option("--out", tune->out, "where to write postprocess.yaml (default: the model's run folder)");
  tune_cmd->callback([tune] { run_tune(*tune); });
}

}  // namespace pneumo::tools
