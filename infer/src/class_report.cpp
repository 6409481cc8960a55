#include "class_report.h"

#include <cctype>
#include <cmath>

#include <fmt/format.h>

#include "pneumo/core/file_io.h"
#include "pneumo/infer/outputs.h"
#include "pneumo/train/charts.h"

namespace pneumo::infer {

namespace fs = std::filesystem;

namespace {

// A class name as a file name: letters, digits, '-' and '_' kept, anything else '_'.
std::string file_name_of(const std::string& name) {
  std::string out;
  for (char c : name) out += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ? c : '_';
  return out.empty() ? "class" : out;
}

std::string number(double v) { return std::isnan(v) ? "" : fmt::format("{:.6f}", v); }

train::Series roc_series(const train::ClassColumn& column, const std::string& name) {
  train::Series series{name, {}, {}};
  for (const auto& [x, y] : roc_curve(column.scores, column.labels)) series.x.push_back(x), series.values.push_back(y);
  return series;
}

}  // namespace

std::vector<ClassMetrics> class_metrics(const ClassPredictions& p, double& mean_auc) {
  std::vector<ClassMetrics> out;
  const train::ClassAucs aucs = train::class_aucs(p.scores, p.targets, p.classes.size());
  mean_auc = aucs.mean;
  for (size_t c = 0; c < p.classes.size(); ++c) {
    const train::ClassColumn column = train::class_column(p.scores, p.targets, p.classes.size(), c);
    ClassMetrics m;
    m.name = p.classes[c];
    m.auc = aucs.per_class[c];
    m.average_precision = train::binary_metrics(column.scores, column.labels, 0.5).average_precision;
    for (int label : column.labels) (label ? m.positives : m.negatives) += 1;
    m.ignored = static_cast<int64_t>(p.ids.size()) - m.positives - m.negatives;
    out.push_back(m);
  }
  return out;
}

void write_class_report(const fs::path& out, const ClassPredictions& p, const std::vector<ClassMetrics>& metrics) {
  std::string table = "class,auc,average_precision,positives,negatives,ignored\n";
  for (const ClassMetrics& m : metrics)
    table += fmt::format("{},{},{},{},{},{}\n", csv_field(m.name), number(m.auc), number(m.average_precision),
                         m.positives, m.negatives, m.ignored);
  core::write_file_atomic(out / "class_metrics.csv", table);

  const size_t k = p.classes.size();
  std::string rows = "ImageId";
  for (const std::string& name : p.classes) rows += "," + csv_field("p:" + name);
  for (const std::string& name : p.classes) rows += "," + csv_field("truth:" + name);
  rows += "\n";
  for (size_t i = 0; i < p.ids.size(); ++i) {
    rows += csv_field(p.ids[i]);
    for (size_t c = 0; c < k; ++c) rows += fmt::format(",{:.6f}", p.scores[i * k + c]);
    for (size_t c = 0; c < k; ++c) {
      const float t = p.targets[i * k + c];
      rows += std::isnan(t) ? std::string(",") : fmt::format(",{}", static_cast<int>(t));
    }
    rows += "\n";
  }
  core::write_file_atomic(out / "per_image.csv", rows);

  train::ChartOptions chart;
  chart.x_range = chart.y_range = std::make_pair(0.0, 1.0);
  chart.markers = false;
  chart.x_label = "false-positive rate";
  chart.diagonal = true;
  std::vector<train::Series> all;
  fs::create_directories(out / "roc");
  for (size_t c = 0; c < k; ++c) {
    const ClassMetrics& m = metrics[c];
    if (std::isnan(m.auc)) continue;  // one label only: no curve
    const train::ClassColumn column = train::class_column(p.scores, p.targets, k, c);
    const std::string label = fmt::format("{} (AUC {:.3f})", m.name, m.auc);
    chart.title = fmt::format("ROC of {} (y: true-positive rate)", m.name);
    train::write_line_chart(out / "roc" / (file_name_of(m.name) + ".png"), chart, {roc_series(column, label)});
    all.push_back(roc_series(column, label));
  }
  if (all.empty()) return;
  chart.title = "ROC per class (y: true-positive rate)";
  train::write_line_chart(out / "roc_classes.png", chart, all);
}

}  // namespace pneumo::infer
