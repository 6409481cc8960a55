// PNG charts for run folders and evaluation reports: line charts (per-epoch metrics, ROC and
// precision-recall curves), histograms and confusion matrices. Drawn with OpenCV and written
// atomically.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pneumo::train {

struct Series {
  std::string name;
  std::vector<double> values;  // y values; NaN values are skipped
  std::vector<double> x;       // empty: 1, 2, ..., N (epochs)
};

struct ChartOptions {
  std::string title;
  std::string x_label = "epoch";
  bool log_scale = false;  // y axis
  std::optional<std::pair<double, double>> x_range, y_range;  // default: the data's
  bool markers = true;      // a dot at every point
  bool diagonal = false;    // the chance line of a ROC chart
};

void write_line_chart(const std::filesystem::path& file, const ChartOptions& options, const std::vector<Series>& series);

// Per-epoch series against epochs 1..N (log scale when `log_scale`), with a legend.
void write_line_chart(const std::filesystem::path& file, const std::string& title, const std::vector<Series>& series,
                      bool log_scale = false);

// Bars of `counts` over equal bins from `low` to `high`.
void write_histogram(const std::filesystem::path& file, const std::string& title, const std::string& x_label,
                     const std::vector<int64_t>& counts, double low, double high);

// The 2x2 table: rows truth (positive, negative), columns prediction.
void write_confusion_matrix(const std::filesystem::path& file, const std::string& title, int64_t tp, int64_t fp,
                            int64_t tn, int64_t fn);

}  // namespace pneumo::train
