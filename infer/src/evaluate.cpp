#include "pneumo/infer/evaluate.h"

#include <algorithm>
#include <numeric>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>

#include "class_report.h"
#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"
#include "pneumo/data/image_io.h"
#include "pneumo/infer/outputs.h"
#include "pneumo/infer/predictor.h"
#include "pneumo/train/charts.h"

namespace pneumo::infer {

namespace fs = std::filesystem;

double mask_dice(const cv::Mat& predicted, const cv::Mat& truth) {
  const int a = cv::countNonZero(predicted), b = cv::countNonZero(truth);
  if (a + b == 0) return 1.0;
  const int both = cv::countNonZero(predicted & truth);
  return 2.0 * both / (a + b);
}

double mask_iou(const cv::Mat& predicted, const cv::Mat& truth) {
  const int either = cv::countNonZero(predicted | truth);
  if (either == 0) return 1.0;
  return static_cast<double>(cv::countNonZero(predicted & truth)) / either;
}

namespace {

// Sorted by score, highest first; ties form one step.
template <class Point>
std::vector<std::pair<double, double>> sweep(const std::vector<double>& scores, const std::vector<int>& labels,
                                             Point point) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  const auto positives = static_cast<double>(std::count(labels.begin(), labels.end(), 1));
  const auto negatives = static_cast<double>(labels.size()) - positives;
  std::vector<std::pair<double, double>> out;
  double tp = 0, fp = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    (labels[order[i]] == 1 ? tp : fp) += 1;
    if (i + 1 < order.size() && scores[order[i + 1]] == scores[order[i]]) continue;
    out.push_back(point(tp, fp, positives, negatives));
  }
  return out;
}

struct ImageRow {
  std::string id;
  std::string patient;  // from the DICOM header; empty when unknown
  std::optional<double> calibrated;
  int truth_positive = 0;
  double score = 0;
  bool predicted_positive = false;
  double dice = 0, iou = 0;
  int64_t truth_area = 0, predicted_area = 0;
};

// The X-ray with truth (green) and prediction (yellow) outlined, its id and Dice below.
cv::Mat thumbnail(const Prediction& p, const cv::Mat& truth, double dice, int side) {
  cv::Mat overlay = draw_overlay(p.input.pixels, p.probability, p.mask);
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(truth.clone(), contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  cv::drawContours(overlay, contours, -1, cv::Scalar(0, 200, 0), std::max(1, overlay.cols / 256), cv::LINE_AA);
  cv::Mat small;
  cv::resize(overlay, small, cv::Size(side, side), 0, 0, cv::INTER_AREA);
  cv::Mat tile(side + 30, side, CV_8UC3, cv::Scalar(255, 255, 255));
  small.copyTo(tile(cv::Rect(0, 0, side, side)));
  const std::string& id = p.input.file.id;
  const std::string tail = id.size() > 14 ? "..." + id.substr(id.size() - 11) : id;
  cv::putText(tile, fmt::format("Dice {:.3f} {}", dice, tail), {4, side + 20}, cv::FONT_HERSHEY_SIMPLEX, 0.4,
              cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  return tile;
}

void write_contact_sheet(const fs::path& file, std::vector<std::pair<double, cv::Mat>> tiles) {
  if (tiles.empty()) return;
  std::stable_sort(tiles.begin(), tiles.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  const int columns = 4, w = tiles.front().second.cols, h = tiles.front().second.rows;
  const int rows = (static_cast<int>(tiles.size()) + columns - 1) / columns;
  cv::Mat sheet(rows * h, columns * w, CV_8UC3, cv::Scalar(255, 255, 255));
  for (size_t i = 0; i < tiles.size(); ++i)
    tiles[i].second.copyTo(sheet(cv::Rect(static_cast<int>(i % columns) * w, static_cast<int>(i / columns) * h, w, h)));
  data::write_png(file, sheet);
}

}  // namespace

std::vector<std::pair<double, double>> roc_curve(const std::vector<double>& scores, const std::vector<int>& labels) {
  std::vector<std::pair<double, double>> out{{0.0, 0.0}};
  for (const auto& p : sweep(scores, labels, [](double tp, double fp, double pos, double neg) {
         return std::make_pair(neg > 0 ? fp / neg : 0.0, pos > 0 ? tp / pos : 0.0);
       }))
    out.push_back(p);
  return out;
}

std::vector<std::pair<double, double>> pr_curve(const std::vector<double>& scores, const std::vector<int>& labels) {
  return sweep(scores, labels, [](double tp, double fp, double pos, double) {
    return std::make_pair(pos > 0 ? tp / pos : 0.0, tp / (tp + fp));
  });
}

namespace {

// The `limit` lowest Dice values seen, with their thumbnails, for worst.png.
class WorstCases {
 public:
  explicit WorstCases(int limit) : limit_(limit) {}

  void offer(const Prediction& p, const cv::Mat& truth, double dice) {
    if (limit_ <= 0 || dice >= 1.0) return;
    const auto by_dice = [](const auto& x, const auto& y) { return x.first < y.first; };
    const auto highest = std::max_element(tiles_.begin(), tiles_.end(), by_dice);
    if (static_cast<int>(tiles_.size()) < limit_)
      tiles_.emplace_back(dice, thumbnail(p, truth, dice, 192));
    else if (dice < highest->first)
      *highest = {dice, thumbnail(p, truth, dice, 192)};
  }

  void write(const fs::path& file) { write_contact_sheet(file, std::move(tiles_)); }

 private:
  int limit_;
  std::vector<std::pair<double, cv::Mat>> tiles_;  // (dice, tile)
};

ImageRow row_of(const Prediction& p, const cv::Mat& truth) {
  ImageRow row;
  row.id = p.input.file.id;
  row.truth_positive = cv::countNonZero(truth) > 0 ? 1 : 0;
  row.score = p.score();
  row.calibrated = p.calibrated;
  if (p.input.facts.dicom) row.patient = p.input.facts.dicom->patient_id;
  row.predicted_positive = p.positive;
  row.dice = mask_dice(p.mask, truth);
  row.iou = mask_iou(p.mask, truth);
  row.truth_area = cv::countNonZero(truth);
  row.predicted_area = p.area_pixels();
  return row;
}

// Mean Dice and IoU, and the image-level metrics. The image-level decision is the
// post-processed one: positive when a mask survives (or, for classifiers only, the gate),
// expressed as scores 0/1 against threshold 0.5 for the counts; AUC and AP use the
// continuous score.
void summarise(const std::vector<ImageRow>& rows, EvaluationReport& report) {
  std::vector<double> scores, decisions;
  std::vector<int> labels;
  for (const ImageRow& r : rows) {
    report.dice += r.dice;
    report.iou += r.iou;
    scores.push_back(r.score);
    decisions.push_back(r.predicted_positive ? 1.0 : 0.0);
    labels.push_back(r.truth_positive);
  }
  report.images = static_cast<int64_t>(rows.size());
  report.dice /= static_cast<double>(rows.size());
  report.iou /= static_cast<double>(rows.size());
  const train::BinaryMetrics continuous = train::binary_metrics(scores, labels, 0.5);
  report.image = train::binary_metrics(decisions, labels, 0.5);
  report.image.auc = continuous.auc;
  report.image.average_precision = continuous.average_precision;
}

// Calibration before and after, the operating points and the bootstrap intervals.
void summarise_deployment(const std::vector<ImageRow>& rows, const EvaluateOptions& options,
                          const std::optional<Calibration>& calibration, EvaluationReport& report) {
  std::vector<double> scores, calibrated;
  std::vector<int> labels;
  std::vector<std::string> patients;
  for (const ImageRow& r : rows) {
    scores.push_back(r.score);
    labels.push_back(r.truth_positive);
    patients.push_back(r.patient);
    if (r.calibrated) calibrated.push_back(*r.calibrated);
  }
  report.raw = calibration_figures(scores, labels);
  if (calibration && calibrated.size() == rows.size()) {
    report.calibrated = calibration_figures(calibrated, labels);
    report.calibration = fmt::format("{}, fitted on {} image(s) ({})", calibration->describe(), calibration->images,
                                     calibration->fitted_on.empty() ? "unknown" : calibration->fitted_on);
    report.calibrated_on_same_set = !calibration->fitted_on.empty() && calibration->fitted_on == report.set;
  }
  // The statistics every resample recomputes, in this order: mean Dice, AUC, then per target
  // the figure the operating point names.
  struct Target {
    std::string name;
    bool at_specificity;
    double level;
  };
  const std::vector<Target> targets{{"sensitivity at specificity >= 0.90", true, 0.90},
                                    {"sensitivity at specificity >= 0.95", true, 0.95},
                                    {"specificity at sensitivity >= 0.90", false, 0.90},
                                    {"specificity at sensitivity >= 0.95", false, 0.95}};
  const auto point_of = [](const std::vector<double>& s, const std::vector<int>& l, const Target& t) {
    return t.at_specificity ? sensitivity_at_specificity(s, l, t.level) : specificity_at_sensitivity(s, l, t.level);
  };
  std::vector<double> s;
  std::vector<int> l;
  const auto statistics = [&](const std::vector<size_t>& indices) {
    s.clear(), l.clear();
    double dice = 0;
    for (size_t i : indices) s.push_back(scores[i]), l.push_back(labels[i]), dice += rows[i].dice;
    std::vector<double> values{dice / static_cast<double>(indices.size()), train::binary_metrics(s, l, 0.5).auc};
    for (const Target& t : targets) {
      const ThresholdPoint p = point_of(s, l, t);
      values.push_back(t.at_specificity ? p.sensitivity : p.specificity);
    }
    return values;
  };
  const std::vector<Interval> intervals = bootstrap(rows.size(), patients, options.bootstrap, statistics);
  report.dice_interval = intervals[0];
  report.auc_interval = intervals[1];
  for (size_t k = 0; k < targets.size(); ++k)
    report.operating_points.push_back({targets[k].name, point_of(scores, labels, targets[k]), intervals[2 + k]});
  std::set<std::string> known;
  for (const std::string& p : patients)
    if (!p.empty()) known.insert(p);
  report.patients = known.empty() ? 0 : static_cast<int64_t>(known.size());
}

void write_per_image(const fs::path& file, const std::vector<ImageRow>& rows) {
  std::string csv = "ImageId,truth_positive,score,predicted_positive,dice,iou,truth_area,predicted_area,"
                    "calibrated_probability\n";
  for (const ImageRow& r : rows)
    csv += fmt::format("{},{},{:.6f},{},{:.6f},{:.6f},{},{},{}\n", r.id, r.truth_positive, r.score,
                       r.predicted_positive ? 1 : 0, r.dice, r.iou, r.truth_area, r.predicted_area,
                       r.calibrated ? fmt::format("{:.6f}", *r.calibrated) : std::string());
  core::write_file_atomic(file, csv);
}

void write_metrics_json(const fs::path& file, const EvaluateOptions& options, const EvaluationReport& report) {
  const auto number = [](double v) { return std::isnan(v) ? nlohmann::ordered_json() : nlohmann::ordered_json(v); };
  const train::BinaryMetrics& m = report.image;
  nlohmann::ordered_json j;
  j["set"] = report.set;
  j["images"] = report.images;
  j["failed"] = report.failures.size();
  j["kaggle_dice"] = report.dice;
  j["iou"] = report.iou;
  const auto interval = [&](const Interval& i) {
    return nlohmann::ordered_json{{"estimate", number(i.estimate)}, {"low", number(i.low)}, {"high", number(i.high)},
                                  {"resamples", i.resamples}};
  };
  const auto figures = [](const CalibrationFigures& f) {
    return nlohmann::ordered_json{{"ece", f.ece}, {"ece_equal_mass", f.ece_mass}, {"brier", f.brier}};
  };
  j["image_level"] = {{"auc", number(m.auc)},           {"average_precision", number(m.average_precision)},
                      {"precision", m.precision},       {"recall", m.recall},
                      {"f1", m.f1},                     {"specificity", m.specificity},
                      {"tp", m.tp}, {"fp", m.fp}, {"tn", m.tn}, {"fn", m.fn}};
  j["calibration"] = {{"bins", 10},
                      {"raw", figures(report.raw)},
                      {"calibrated", report.calibrated ? figures(*report.calibrated) : nlohmann::ordered_json()},
                      {"calibration", report.calibration.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(report.calibration)},
                      {"fitted_on_these_images", report.calibrated_on_same_set}};
  nlohmann::ordered_json points = nlohmann::ordered_json::array();
  for (const OperatingPointRow& row : report.operating_points)
    points.push_back({{"name", row.name},
                      {"threshold", number(row.point.threshold)},
                      {"sensitivity", number(row.point.sensitivity)},
                      {"specificity", number(row.point.specificity)},
                      {"interval", interval(row.value)}});
  j["operating_points"] = points;
  j["intervals"] = {{"level", options.bootstrap.level},
                    {"resamples", options.bootstrap.resamples},
                    {"seed", options.bootstrap.seed},
                    {"unit", report.patients > 0 ? "patient" : "image"},
                    {"patients", report.patients},
                    {"kaggle_dice", interval(report.dice_interval)},
                    {"auc", interval(report.auc_interval)}};
  const PostprocessSection& post = report.postprocess;
  j["postprocess"] = {{"threshold", post.threshold},   {"top_threshold", post.top_threshold},
                      {"min_area", post.min_area},     {"min_component_area", post.min_component_area},
                      {"classifier_threshold", post.classifier_threshold}};
  nlohmann::ordered_json models = nlohmann::ordered_json::array();
  for (const ModelSpec& model : options.run.models)
    models.push_back({{"model", model.path.string()}, {"weight", model.weight}});
  j["models"] = models;
  j["members"] = options.run.members;
  j["tta"] = options.run.hflip;
  core::write_file_atomic(file, j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n");
}

// roc.png, pr.png, confusion.png and dice_histogram.png.
void write_charts(const fs::path& out, const std::vector<ImageRow>& rows, const EvaluationReport& report) {
  std::vector<double> scores;
  std::vector<int> labels;
  std::vector<int64_t> histogram(20, 0);
  for (const ImageRow& r : rows) {
    scores.push_back(r.score);
    labels.push_back(r.truth_positive);
    ++histogram[std::min<size_t>(19, static_cast<size_t>(r.dice * 20))];
  }
  const train::BinaryMetrics& m = report.image;
  train::Series roc{fmt::format("AUC {:.3f}", m.auc), {}, {}}, pr{fmt::format("AP {:.3f}", m.average_precision), {}, {}};
  for (const auto& [x, y] : roc_curve(scores, labels)) roc.x.push_back(x), roc.values.push_back(y);
  for (const auto& [x, y] : pr_curve(scores, labels)) pr.x.push_back(x), pr.values.push_back(y);
  train::ChartOptions chart;
  chart.x_range = chart.y_range = std::make_pair(0.0, 1.0);
  chart.markers = false;
  chart.title = "ROC of the image-level score (y: true-positive rate)";
  chart.x_label = "false-positive rate";
  chart.diagonal = true;
  train::write_line_chart(out / "roc.png", chart, {roc});
  chart.title = "precision-recall of the image-level score (y: precision)";
  chart.x_label = "recall";
  chart.diagonal = false;
  train::write_line_chart(out / "pr.png", chart, {pr});
  train::write_confusion_matrix(out / "confusion.png", "image-level decisions after post-processing", m.tp, m.fp, m.tn,
                                m.fn);
  {
    train::ChartOptions reliability;
    reliability.x_range = reliability.y_range = std::make_pair(0.0, 1.0);
    reliability.diagonal = true;
    reliability.title = "reliability: observed share of positives per bin of predicted probability";
    reliability.x_label = "predicted probability (mean in each of 10 equal-width bins)";
    std::vector<train::Series> series;
    const auto add = [&](const std::string& name, const std::vector<double>& p) {
      train::Series s{name, {}, {}};
      for (const ReliabilityBin& b : reliability_bins(p, labels, 10, false)) s.x.push_back(b.mean_score), s.values.push_back(b.observed);
      series.push_back(std::move(s));
    };
    add(fmt::format("raw score (ECE {:.3f})", report.raw.ece), scores);
    if (report.calibrated) {
      std::vector<double> calibrated;
      for (const ImageRow& r : rows) calibrated.push_back(r.calibrated.value_or(r.score));
      add(fmt::format("calibrated (ECE {:.3f})", report.calibrated->ece), calibrated);
    }
    train::write_line_chart(out / "reliability.png", reliability, series);
  }
  train::write_histogram(out / "dice_histogram.png", fmt::format("per-image Kaggle Dice (mean {:.4f})", report.dice),
                         "Dice", histogram, 0.0, 1.0);
}

void write_class_metrics_json(const fs::path& file, const EvaluationReport& report) {
  const auto number = [](double v) { return std::isnan(v) ? nlohmann::ordered_json() : nlohmann::ordered_json(v); };
  nlohmann::ordered_json j;
  j["set"] = report.set;
  j["images"] = report.images;
  j["failed"] = report.failures.size();
  j["mean_auc"] = number(report.mean_auc);
  nlohmann::ordered_json classes = nlohmann::ordered_json::array();
  for (const ClassMetrics& m : report.classes)
    classes.push_back({{"class", m.name}, {"auc", number(m.auc)}, {"average_precision", number(m.average_precision)},
                       {"positives", m.positives}, {"negatives", m.negatives}, {"ignored", m.ignored}});
  j["classes"] = classes;
  core::write_file_atomic(file, j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n");
}

}  // namespace

EvaluationReport evaluate(const EvaluateOptions& options) {
  if (options.out.empty()) throw core::UsageError("no report folder; expected --out DIR");
  std::vector<ImageRow> rows;
  ClassPredictions classes;
  WorstCases worst(options.worst);
  const LabelledRunSummary run = run_labelled(options.run, "evaluate", false, [&](Prediction& p, const LabelledTruth& truth) {
    if (truth.targets) {
      classes.ids.push_back(p.input.file.id);
      classes.scores.insert(classes.scores.end(), p.class_probabilities.begin(), p.class_probabilities.end());
      classes.targets.insert(classes.targets.end(), truth.targets->begin(), truth.targets->end());
      return;
    }
    rows.push_back(row_of(p, truth.mask));
    worst.offer(p, truth.mask, rows.back().dice);
  });
  EvaluationReport report;
  report.set = run.set;
  report.postprocess = run.postprocess;
  report.failures = run.failures;
  fs::create_directories(options.out);
  if (!run.classes.empty()) {
    classes.classes = run.classes;
    report.images = static_cast<int64_t>(classes.ids.size());
    report.classes = class_metrics(classes, report.mean_auc);
    write_class_metrics_json(options.out / "metrics.json", report);
    write_class_report(options.out, classes, report.classes);
    return report;
  }
  summarise(rows, report);
  summarise_deployment(rows, options, run.calibration, report);
  write_per_image(options.out / "per_image.csv", rows);
  write_metrics_json(options.out / "metrics.json", options, report);
  write_charts(options.out, rows, report);
  worst.write(options.out / "worst.png");
  return report;
}

}  // namespace pneumo::infer
