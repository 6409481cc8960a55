#include "pneumo/infer/cross_validation.h"

#include <cmath>
#include <limits>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"
#include "pneumo/core/log.h"
#include "pneumo/data/class_table.h"
#include "pneumo/data/rle.h"
#include "pneumo/infer/labelled_run.h"
#include "pneumo/infer/outputs.h"
#include "pneumo/infer/tune.h"
#include "pneumo/train/metrics.h"

namespace pneumo::infer {

namespace fs = std::filesystem;

namespace {

constexpr const char* kManifestFormat = "pneumo-cv";
constexpr const char* kOofHeader = "ImageId,height,width,score,gate,truth";
constexpr double kMaxPixels = 1 << 27;  // 134 M: beyond any radiograph, below what would exhaust memory

fs::path manifest_file(const fs::path& top) { return top / "ensemble.json"; }
fs::path finished_file(const fs::path& top, int fold) { return fold_folder(top, fold) / "finished.json"; }
fs::path oof_csv(const fs::path& top, int fold) { return top / "oof" / fmt::format("fold-{}.csv", fold); }
fs::path oof_maps(const fs::path& top, int fold) { return top / "oof" / fmt::format("fold-{}", fold); }

nlohmann::json read_json(const fs::path& file) {
  try {
    return nlohmann::json::parse(core::read_text_file(file));
  } catch (const nlohmann::json::exception& e) {
    throw core::DataError(fmt::format("{}: not valid JSON: {}", file.string(), e.what()));
  }
}

// An image id that is safe as a file name (ids come from image file names, but a label table
// could name anything).
void check_file_name(const std::string& id, const fs::path& csv) {
  if (id.empty() || id == "." || id == ".." || id.find_first_of("/\\") != std::string::npos)
    throw core::DataError(fmt::format("{}: image id '{}' cannot name a file", csv.string(), id));
}

std::string number(double v) { return fmt::format("{:.9g}", v); }

double parse_number(const std::string& text, const fs::path& file, size_t line, const char* column) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size() && std::isfinite(v)) return v;
  } catch (const std::exception&) {
  }
  throw core::DataError(fmt::format("{}:{}: {} '{}' is not a number", file.string(), line, column, text));
}

}  // namespace

bool is_cv_folder(const fs::path& folder) {
  std::error_code ec;
  return fs::is_regular_file(manifest_file(folder), ec) && !fs::exists(folder / "config.yaml", ec);
}

CvManifest read_cv_manifest(const fs::path& top) {
  const fs::path file = manifest_file(top);
  if (!fs::exists(file)) throw core::UsageError(fmt::format("{}: missing; {} is not a pneumo cv run", file.string(), top.string()));
  const nlohmann::json j = read_json(file);
  CvManifest m;
  try {
    if (j.at("format") != kManifestFormat)
      throw core::DataError(fmt::format("{}: format {}; expected \"{}\"", file.string(), j.at("format").dump(), kManifestFormat));
    for (const auto& fold : j.at("folds")) m.folds.push_back(fold.at("fold").get<int>());
    m.members = j.at("members").get<std::string>();
    m.hflip = j.at("oof_hflip").get<bool>();
  } catch (const nlohmann::json::exception& e) {
    throw core::DataError(fmt::format("{}: lacks what pneumo cv writes: {}", file.string(), e.what()));
  }
  if (m.folds.empty()) throw core::DataError(fmt::format("{}: lists no folds", file.string()));
  for (const int fold : m.folds)
    if (fold < 0) throw core::DataError(fmt::format("{}: fold {} is negative", file.string(), fold));
  return m;
}

void write_cv_manifest(const fs::path& top, const CvManifest& m) {
  nlohmann::json folds = nlohmann::json::array();
  for (const int fold : m.folds) folds.push_back({{"fold", fold}, {"run", fold_folder(top, fold).filename().string()}});
  const nlohmann::json j = {{"format", kManifestFormat}, {"folds", folds}, {"members", m.members}, {"oof_hflip", m.hflip}};
  core::write_file_atomic(manifest_file(top), j.dump(2) + "\n");
}

fs::path fold_folder(const fs::path& top, int fold) { return top / fmt::format("fold-{}", fold); }

void write_fold_finished(const fs::path& top, int fold, const FoldTraining& t) {
  const nlohmann::json j = {{"fold", fold},
                            {"epochs", t.epochs},
                            {"monitor", t.monitor},
                            {"best_value", t.best_value},
                            {"best_epoch", t.best_epoch},
                            {"stopped_early", t.stopped_early}};
  core::write_file_atomic(finished_file(top, fold), j.dump(2) + "\n");
}

std::optional<FoldTraining> read_fold_finished(const fs::path& top, int fold) {
  const fs::path file = finished_file(top, fold);
  if (!fs::exists(file)) return std::nullopt;
  const nlohmann::json j = read_json(file);
  FoldTraining t;
  try {
    t.epochs = j.at("epochs").get<int>();
    t.monitor = j.at("monitor").get<std::string>();
    t.best_value = j.at("best_value").get<double>();
    t.best_epoch = j.at("best_epoch").get<int>();
    t.stopped_early = j.at("stopped_early").get<bool>();
  } catch (const nlohmann::json::exception& e) {
    throw core::DataError(fmt::format("{}: lacks what pneumo cv writes: {}", file.string(), e.what()));
  }
  return t;
}

bool has_out_of_fold(const fs::path& top, int fold) { return fs::exists(oof_csv(top, fold)); }

int64_t predict_out_of_fold(const fs::path& top, int fold, const CvManifest& manifest, const OofOptions& options) {
  const fs::path csv = oof_csv(top, fold), maps = oof_maps(top, fold);
  std::error_code ec;
  fs::remove(csv, ec);
  fs::remove_all(maps, ec);
  LabelledRunOptions run;
  run.models = {{fold_folder(top, fold), 1.0}};
  run.members = manifest.members;
  run.hflip = manifest.hflip;
  run.device = options.device;
  run.batch_size = options.batch_size;
  run.workers = options.workers;
  std::ostringstream rows;
  rows << kOofHeader << "\n";
  const LabelledRunSummary summary = run_labelled(run, fmt::format("fold {} out-of-fold", fold), false,
                                                  [&](Prediction& p, const LabelledTruth& truth) {
    const std::string& id = p.input.file.id;
    check_file_name(id, csv);
    if (truth.mask.empty())
      throw core::DataError(fmt::format("{}: no mask truth for image {}; pneumo cv needs mask labels", csv.string(), id));
    if (!p.input_size_probability.empty()) {
      cv::Mat quantised;
      p.input_size_probability.convertTo(quantised, CV_8U, 255.0);  // saturating round(p * 255)
      std::vector<uint8_t> png;
      cv::imencode(".png", quantised, png);
      core::write_file_atomic(maps / (id + ".png"), std::string_view(reinterpret_cast<const char*>(png.data()), png.size()),
                              core::Durability::kReplaceOnly);
    }
    rows << csv_field(id) << ',' << p.input.pixels.rows << ',' << p.input.pixels.cols << ',' << number(p.score()) << ','
         << (p.image_probability ? number(*p.image_probability) : "") << ',' << data::encode_rle(truth.mask) << "\n";
  });
  if (!summary.failures.empty())
    throw core::DataError(fmt::format("fold {}: {}: {} (out-of-fold predictions must cover the whole fold)", fold,
                                      summary.failures.front().first, summary.failures.front().second));
  core::write_file_atomic(csv, rows.str());
  return summary.images;
}

std::vector<OofImage> read_out_of_fold(const fs::path& top, int fold) {
  const fs::path csv = oof_csv(top, fold);
  if (!fs::exists(csv))
    throw core::DataError(fmt::format("{}: missing; pneumo cv --resume {} predicts it", csv.string(), top.string()));
  std::istringstream in(core::read_text_file(csv));
  std::string line;
  if (!std::getline(in, line) || line != kOofHeader)
    throw core::DataError(fmt::format("{}:1: expected the header {}", csv.string(), kOofHeader));
  std::vector<OofImage> out;
  for (size_t n = 2; std::getline(in, line); ++n) {
    const std::vector<std::string> f = data::split_csv_line(line);
    if (f.size() != 6) throw core::DataError(fmt::format("{}:{}: expected 6 fields, got {}", csv.string(), n, f.size()));
    OofImage image;
    image.id = f[0];
    check_file_name(image.id, csv);
    const double height = parse_number(f[1], csv, n, "height"), width = parse_number(f[2], csv, n, "width");
    if (height < 1 || width < 1 || height > 65535 || width > 65535 || height != std::floor(height) ||
        width != std::floor(width) || height * width > kMaxPixels)
      throw core::DataError(fmt::format("{}:{}: image size {}x{} is not 1..65535 pixels a side, {} in all", csv.string(),
                                        n, f[1], f[2], kMaxPixels));
    image.height = static_cast<int>(height);
    image.width = static_cast<int>(width);
    image.score = parse_number(f[3], csv, n, "score");
    if (!f[4].empty()) image.gate = parse_number(f[4], csv, n, "gate");
    if (const std::string bad = data::rle_syntax_error(f[5]); !bad.empty())
      throw core::DataError(fmt::format("{}:{}: truth: {}", csv.string(), n, bad));
    image.truth = f[5];
    out.push_back(std::move(image));
  }
  if (out.empty()) throw core::DataError(fmt::format("{}: no images", csv.string()));
  return out;
}

cv::Mat read_out_of_fold_map(const fs::path& top, int fold, const OofImage& image) {
  const fs::path file = oof_maps(top, fold) / (image.id + ".png");
  if (!fs::exists(file)) return {};
  const cv::Mat stored = cv::imread(file.string(), cv::IMREAD_UNCHANGED);
  if (stored.empty() || stored.type() != CV_8UC1 || stored.rows != stored.cols)
    throw core::DataError(fmt::format("{}: expected a square 8-bit grey PNG written by pneumo cv", file.string()));
  cv::Mat probability, native;
  stored.convertTo(probability, CV_32F, 1.0 / 255.0);
  if (probability.rows == image.height && probability.cols == image.width) return probability;
  cv::resize(probability, native, cv::Size(image.width, image.height), 0, 0, cv::INTER_LINEAR);
  return native;
}

namespace {

// One fold's OOF images summarised for tuning, with what the AUC needs.
struct FoldSummaries {
  std::vector<ImageHistogram> images;
  std::vector<double> scores;
  std::vector<int> labels;
  std::vector<int64_t> pixel_counts;
};

// `segments`: whether the folds' ensembles segment (then every image has its map).
FoldSummaries summarise_fold(const fs::path& top, int fold, const std::vector<OofImage>& images, bool segments) {
  FoldSummaries s;
  for (const OofImage& image : images) {
    cv::Mat truth;
    try {
      truth = data::decode_rle(image.truth, image.height, image.width);
    } catch (const core::DataError& e) {
      throw core::DataError(fmt::format("{}: image {}: truth: {}", oof_csv(top, fold).string(), image.id, e.what()));
    }
    cv::Mat probability = read_out_of_fold_map(top, fold, image);
    if (probability.empty() == segments)
      throw core::DataError(fmt::format("{}: image {}: {} probability map {}", oof_maps(top, fold).string(), image.id,
                                        segments ? "no" : "a", segments ? "(the folds segment)" : "(the folds do not segment)"));
    if (!segments) probability = cv::Mat::zeros(truth.size(), CV_32FC1);
    s.images.push_back(summarise(probability, truth, image.gate));
    s.scores.push_back(image.score);
    s.labels.push_back(s.images.back().truth_area > 0 ? 1 : 0);
    s.pixel_counts.push_back(static_cast<int64_t>(image.height) * image.width);
  }
  return s;
}

CvScores score(const std::vector<ImageHistogram>& images, const std::vector<double>& scores,
               const std::vector<int>& labels, const PostprocessSection& start, const PostprocessSection& tuned) {
  CvScores c;
  c.images = static_cast<int64_t>(images.size());
  for (const int label : labels) c.positives += label;
  double iou = 0;
  for (const ImageHistogram& h : images) iou += image_overlap(h, tuned).iou;
  c.dice_start = mean_dice(images, start);
  c.dice = mean_dice(images, tuned);
  c.iou = images.empty() ? 0.0 : iou / static_cast<double>(images.size());
  c.auc = train::binary_metrics(scores, labels, 0.5).auc;
  return c;
}

}  // namespace

CvReport tune_out_of_fold(const fs::path& top, const CvManifest& manifest, const PostprocessSection& start) {
  CvReport report;
  report.folds = manifest.folds;
  report.start = report.tuned = start;
  for (const int fold : manifest.folds) {
    const std::optional<FoldTraining> training = read_fold_finished(top, fold);
    report.training.push_back(training.value_or(FoldTraining{}));
  }
  report.segments = fs::is_directory(oof_maps(top, manifest.folds.front()));
  std::vector<FoldSummaries> folds;
  FoldSummaries pooled;
  std::map<std::string, int> fold_of;  // each image in one fold only
  for (const int fold : manifest.folds) {
    const std::vector<OofImage> images = read_out_of_fold(top, fold);
    for (const OofImage& image : images)
      if (const auto [it, added] = fold_of.emplace(image.id, fold); !added)
        throw core::DataError(fmt::format("{}: image {} is also in fold {}'s out-of-fold predictions; each image belongs "
                                          "to one fold", oof_csv(top, fold).string(), image.id, it->second));
    folds.push_back(summarise_fold(top, fold, images, report.segments));
    const FoldSummaries& f = folds.back();
    pooled.images.insert(pooled.images.end(), f.images.begin(), f.images.end());
    pooled.scores.insert(pooled.scores.end(), f.scores.begin(), f.scores.end());
    pooled.labels.insert(pooled.labels.end(), f.labels.begin(), f.labels.end());
    pooled.pixel_counts.insert(pooled.pixel_counts.end(), f.pixel_counts.begin(), f.pixel_counts.end());
  }
  if (report.segments) {
    report.tuned = search_postprocess(pooled.images, median_pixels(pooled.pixel_counts), start).best;
    write_postprocess(top / "postprocess.yaml", report.tuned);
  }
  for (const FoldSummaries& f : folds) report.per_fold.push_back(score(f.images, f.scores, f.labels, report.start, report.tuned));
  report.overall = score(pooled.images, pooled.scores, pooled.labels, report.start, report.tuned);
  return report;
}

namespace {

nlohmann::json json_number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

nlohmann::json scores_json(const CvScores& c, bool segments) {
  nlohmann::json j = {{"images", c.images}, {"positives", c.positives}, {"auc", json_number(c.auc)}};
  if (segments) {
    j["dice_before_tuning"] = json_number(c.dice_start);
    j["dice"] = json_number(c.dice);
    j["iou"] = json_number(c.iou);
  }
  return j;
}

nlohmann::json postprocess_json(const PostprocessSection& p) {
  return {{"threshold", p.threshold},
          {"top_threshold", p.top_threshold},
          {"min_area", p.min_area},
          {"min_component_area", p.min_component_area},
          {"classifier_threshold", p.classifier_threshold}};
}

// Mean and sample standard deviation (n - 1; NaN for one fold) of one score across folds.
std::pair<double, double> mean_sd(const std::vector<CvScores>& folds, double CvScores::*field) {
  double sum = 0, squares = 0, n = 0;
  for (const CvScores& f : folds) {
    if (!std::isfinite(f.*field)) continue;
    sum += f.*field;
    n += 1;
  }
  const double mean = n > 0 ? sum / n : std::numeric_limits<double>::quiet_NaN();
  for (const CvScores& f : folds)
    if (std::isfinite(f.*field)) squares += (f.*field - mean) * (f.*field - mean);
  return {mean, n > 1 ? std::sqrt(squares / (n - 1)) : std::numeric_limits<double>::quiet_NaN()};
}

std::string cell(double v) { return std::isfinite(v) ? fmt::format("{:.4f}", v) : "-"; }

std::string cell(const std::pair<double, double>& v) {
  return std::isfinite(v.second) ? fmt::format("{:.4f} ± {:.4f}", v.first, v.second) : cell(v.first);
}

std::string postprocess_line(const PostprocessSection& p) {
  return fmt::format("threshold {:g}, top_threshold {:g}, min_area {} px, classifier_threshold {:g}", p.threshold,
                     p.top_threshold, p.min_area, p.classifier_threshold);
}

std::string report_markdown(const fs::path& top, const CvReport& r) {
  std::string md = fmt::format("# Cross-validation: {}\n\n", top.string());
  md += fmt::format("{} folds; every score comes from out-of-fold predictions (each image predicted by the fold model "
                    "that did not train on it), stored in oof/ as 8-bit maps at the segmentation input size.\n\n",
                    r.folds.size());
  if (r.segments) {
    md += "| fold | images | positives | best epoch | OOF Dice before tuning | OOF Dice tuned | OOF IoU tuned | AUC |\n";
    md += "| --- | --- | --- | --- | --- | --- | --- | --- |\n";
  } else {
    md += "| fold | images | positives | best epoch | AUC |\n| --- | --- | --- | --- | --- |\n";
  }
  for (size_t i = 0; i < r.folds.size(); ++i) {
    const CvScores& c = r.per_fold[i];
    const FoldTraining& t = r.training[i];
    const std::string best = t.monitor.empty() ? "-" : fmt::format("{} ({} {:.4f})", t.best_epoch, t.monitor, t.best_value);
    md += r.segments ? fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} |\n", r.folds[i], c.images, c.positives, best,
                                   cell(c.dice_start), cell(c.dice), cell(c.iou), cell(c.auc))
                     : fmt::format("| {} | {} | {} | {} | {} |\n", r.folds[i], c.images, c.positives, best, cell(c.auc));
  }
  const auto dice_start = mean_sd(r.per_fold, &CvScores::dice_start), dice = mean_sd(r.per_fold, &CvScores::dice),
             iou = mean_sd(r.per_fold, &CvScores::iou), auc = mean_sd(r.per_fold, &CvScores::auc);
  const CvScores& o = r.overall;
  if (r.segments) {
    md += fmt::format("| mean ± sd | | | | {} | {} | {} | {} |\n", cell(dice_start), cell(dice), cell(iou), cell(auc));
    md += fmt::format("| all OOF | {} | {} | | {} | {} | {} | {} |\n\n", o.images, o.positives, cell(o.dice_start),
                      cell(o.dice), cell(o.iou), cell(o.auc));
    md += fmt::format("Post-processing tuned on all {} OOF images together (postprocess.yaml):\n\n", o.images);
    md += fmt::format("- before: {}\n- tuned:  {}\n", postprocess_line(r.start), postprocess_line(r.tuned));
  } else {
    md += fmt::format("| mean ± sd | | | | {} |\n| all OOF | {} | {} | | {} |\n\n", cell(auc), o.images, o.positives,
                      cell(o.auc));
    md += "The folds do not segment: no post-processing was tuned.\n";
  }
  md += "\nStandard deviations are across folds (n - 1). Predict with the fold ensemble: "
        "`pneumo predict --model " + top.string() + " ...`.\n";
  return md;
}

}  // namespace

std::string write_cv_report(const fs::path& top, const CvReport& r) {
  nlohmann::json folds = nlohmann::json::array();
  for (size_t i = 0; i < r.folds.size(); ++i) {
    nlohmann::json f = scores_json(r.per_fold[i], r.segments);
    f["fold"] = r.folds[i];
    const FoldTraining& t = r.training[i];
    f["training"] = {{"epochs", t.epochs}, {"monitor", t.monitor}, {"best_value", json_number(t.best_value)},
                     {"best_epoch", t.best_epoch}, {"stopped_early", t.stopped_early}};
    folds.push_back(f);
  }
  nlohmann::json mean, sd;
  const std::vector<std::pair<const char*, double CvScores::*>> fields =
      r.segments ? std::vector<std::pair<const char*, double CvScores::*>>{{"dice_before_tuning", &CvScores::dice_start},
                                                                           {"dice", &CvScores::dice},
                                                                           {"iou", &CvScores::iou},
                                                                           {"auc", &CvScores::auc}}
                 : std::vector<std::pair<const char*, double CvScores::*>>{{"auc", &CvScores::auc}};
  for (const auto& [name, field] : fields) {
    const auto [m, s] = mean_sd(r.per_fold, field);
    mean[name] = json_number(m);
    sd[name] = json_number(s);
  }
  nlohmann::json j = {{"folds", folds},
                      {"mean", mean},
                      {"sd", sd},
                      {"overall", scores_json(r.overall, r.segments)},
                      {"segments", r.segments},
                      {"oof", {{"maps", "oof/fold-K/<ImageId>.png: round(p * 255), 8-bit, at the segmentation input size"},
                               {"table", "oof/fold-K.csv: ImageId,height,width,score,gate,truth"}}}};
  if (r.segments) j["postprocess"] = {{"before", postprocess_json(r.start)}, {"tuned", postprocess_json(r.tuned)}};
  core::write_file_atomic(top / "cv.json", j.dump(2) + "\n");
  const std::string md = report_markdown(top, r);
  core::write_file_atomic(top / "cv.md", md);
  return md;
}

}  // namespace pneumo::infer
