// `pneumo evaluate` (metrics and charts against ground truth), `pneumo tune` (search the
// post-processing thresholds, for Dice or for an operating point, and store them with the run)
// and `pneumo calibrate` (fit the image-level probability's calibration and store it with the
// run). The three share how the labelled images and the models are given.
#include <cmath>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.h"
#include "model_options.h"
#include "pneumo/core/error.h"
#include "pneumo/infer/calibrate.h"
#include "pneumo/infer/evaluate.h"
#include "pneumo/infer/tune.h"

namespace pneumo::tools {

namespace {

struct SetOptions {
  ModelOptions model;
  std::string labels, masks, images, table, split_list, out;
  bool hflip = false;
  std::string precision = "float32";
  int batch_size = 0, workers = 2, worst = 16;
  std::string device = "auto";
  int resamples = 1000;          // evaluate's bootstrap
  std::string operating_point;   // tune: e.g. sensitivity=0.95
  std::string method = "temperature";  // calibrate
};

void add_set_options(CLI::App& cmd, SetOptions& o) {
  add_model_options(cmd, o.model);
  cmd.add_option("--labels", o.labels, "a SIIM label CSV (default: the run's validation fold)");
  cmd.add_option("--masks", o.masks, "instead of --labels: a folder of <ImageId>.png masks for the images of --images");
  cmd.add_option("--images", o.images, "the folder holding the label CSV's (or masks', or table's) images");
  cmd.add_flag("--tta", o.hflip, "test-time augmentation: average with the horizontally flipped image");
  cmd.add_option("--precision", o.precision, "float32, or bfloat16 (autocast: fast where the CPU has AVX512-BF16 or AMX, and on GPUs)")
      ->check(CLI::IsMember({"float32", "bfloat16"}));
  cmd.add_option("--batch-size", o.batch_size, "images per forward pass (0: 8 on a GPU; on the CPU about a million input pixels, at most 8)")->check(CLI::Range(0, 4096));
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
  run.precision = o.precision;
  run.batch_size = o.batch_size;
  run.workers = o.workers;
  run.device = o.device;
  return run;
}

std::string with_interval(const infer::Interval& i) {
  const auto cell = [](double v) { return std::isnan(v) ? std::string("-") : fmt::format("{:.4f}", v); };
  if (std::isnan(i.estimate)) return "-";
  return fmt::format("{}  [{}, {}]", cell(i.estimate), cell(i.low), cell(i.high));
}

// Calibration before and after, the operating points and the bootstrap intervals.
void print_deployment_figures(const infer::EvaluationReport& r, int resamples) {
  fmt::print("calibration of the image-level probability (10 bins; ECE equal-width / equal-mass, Brier):\n");
  fmt::print("  raw score         ECE {:.4f} / {:.4f}  Brier {:.4f}\n", r.raw.ece, r.raw.ece_mass, r.raw.brier);
  if (r.calibrated) {
    fmt::print("  calibrated        ECE {:.4f} / {:.4f}  Brier {:.4f}   ({})\n", r.calibrated->ece,
               r.calibrated->ece_mass, r.calibrated->brier, r.calibration);
    if (r.calibrated_on_same_set)
      fmt::print("  (the calibration was fitted on these images: the calibrated figures are optimistic)\n");
  } else {
    fmt::print("  calibrated        - (the run has no calibration.yaml; fit one with pneumo calibrate)\n");
  }
  fmt::print("95% bootstrap intervals ({} resamples of {}):\n", resamples,
             r.patients > 0 ? fmt::format("{} patients", r.patients) : std::string("images"));
  fmt::print("  Kaggle mean Dice  {}\n  image AUC         {}\n", with_interval(r.dice_interval),
             with_interval(r.auc_interval));
  fmt::print("operating points of the image-level score (threshold: score >= it is called positive):\n");
  for (const infer::OperatingPointRow& row : r.operating_points) {
    if (std::isnan(row.point.threshold)) {
      fmt::print("  {:<36} not reached on these images\n", row.name);
      continue;
    }
    fmt::print("  {:<36} {}  (threshold {:.4f}; sensitivity {:.4f}, specificity {:.4f})\n", row.name,
               with_interval(row.value), row.point.threshold, row.point.sensitivity, row.point.specificity);
  }
}

void run_evaluate(const SetOptions& o) {
  infer::EvaluateOptions options;
  options.run = labelled_run(o);
  options.out = o.out;
  options.worst = o.worst;
  options.bootstrap.resamples = o.resamples;
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
  print_deployment_figures(r, o.resamples);
  fmt::print("report in {}: metrics.json, per_image.csv, roc.png, pr.png, confusion.png, reliability.png, "
             "dice_histogram.png, worst.png\n",
             o.out);
  fail_on_unreadable(r.failures, r.images);
}

void run_tune(const SetOptions& o) {
  infer::TuneOptions options;
  options.run = labelled_run(o);
  options.out = o.out;
  if (!o.operating_point.empty()) options.operating_point = infer::parse_operating_point(o.operating_point);
  const infer::TuneResult r = infer::tune(options);
  fmt::print("tuned on {} image(s): {}\n", r.images, r.set);
  fmt::print("  before  Dice {:.4f}  {}\n", r.start_dice, describe(r.start));
  if (options.operating_point) {
    fmt::print("  chosen for {} (then the highest {}, then Dice):\n", options.operating_point->describe(),
               options.operating_point->sensitivity ? "specificity" : "sensitivity");
    fmt::print("          Dice {:.4f}  {}\n", r.best_dice, describe(r.best));
    fmt::print("          sensitivity {:.4f}  specificity {:.4f}  (image decisions on these images: TP {} FP {} TN {} "
               "FN {})\n",
               r.decisions.recall, r.decisions.specificity, r.decisions.tp, r.decisions.fp, r.decisions.tn,
               r.decisions.fn);
  } else {
    fmt::print("  best    Dice {:.4f}  {}\n", r.best_dice, describe(r.best));
    for (const auto& [settings, dice] : r.runners_up) fmt::print("          Dice {:.4f}  {}\n", dice, describe(settings));
  }
  fmt::print("wrote {} (predict, evaluate and export of this run use it)\n", r.written.string());
  fail_on_unreadable(r.failures, r.images);
}

void run_calibrate(const SetOptions& o) {
  infer::CalibrateOptions options;
  options.run = labelled_run(o);
  options.method = o.method;
  options.out = o.out;
  const infer::CalibrateResult r = infer::calibrate(options);
  fmt::print("calibrated on {} image(s), {} positive: {}\n", r.calibration.images, r.calibration.positives, r.set);
  fmt::print("  {}\n", r.calibration.describe());
  fmt::print("  on these images   ECE {:.4f} -> {:.4f} (equal-width), {:.4f} -> {:.4f} (equal-mass); Brier {:.4f} -> "
             "{:.4f}\n",
             r.before.ece, r.after.ece, r.before.ece_mass, r.after.ece_mass, r.before.brier, r.after.brier);
  if (const std::string caveat = infer::calibration_caveat(r); !caveat.empty()) fmt::print("  ({})\n", caveat);
  fmt::print("wrote {} (predict, evaluate, serve, pacs and export of this run report calibrated probabilities)\n",
             r.written.string());
  fmt::print("the decisions (thresholds, gate) stay on the raw score; evaluate on other images tells how well it "
             "holds\n");
  fail_on_unreadable(r.failures, r.calibration.images);
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
  cmd->add_option("--bootstrap", options->resamples,
                  "resamples for the 95% intervals (whole patients when the DICOMs name them)")
      ->check(CLI::Range(10, 100000));
  cmd->callback([options] { run_evaluate(*options); });

  auto tune = std::make_shared<SetOptions>();
  CLI::App* tune_cmd = app.add_subcommand(
      "tune", "Search the post-processing thresholds on labelled images and store them as the run's postprocess.yaml");
  add_set_options(*tune_cmd, *tune);
  tune_cmd->add_option("--out", tune->out, "where to write postprocess.yaml (default: the model's run folder)");
  tune_cmd->add_option("--operating-point", tune->operating_point,
                       "instead of the best Dice: the settings reaching sensitivity=S (then the most specific) or "
                       "specificity=S (then the most sensitive), e.g. sensitivity=0.95");
  tune_cmd->callback([tune] { run_tune(*tune); });

  auto calibrate = std::make_shared<SetOptions>();
  CLI::App* calibrate_cmd = app.add_subcommand(
      "calibrate", "Fit the calibration of the image-level probability on labelled images (by default the run's "
                   "validation fold, or a CV folder's out-of-fold predictions) and store it as calibration.yaml");
  add_set_options(*calibrate_cmd, *calibrate);
  calibrate_cmd->add_option("--method", calibrate->method, "temperature (scaling) or isotonic (regression)")
      ->check(CLI::IsMember({"temperature", "isotonic"}));
  calibrate_cmd->add_option("--out", calibrate->out, "where to write calibration.yaml (default: the model's run folder)");
  calibrate_cmd->callback([calibrate] { run_calibrate(*calibrate); });
}

}  // namespace pneumo::tools
