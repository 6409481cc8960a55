#include "pneumo/train/charts.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

#include <fmt/format.h>
#include <opencv2/imgproc.hpp>

#include "pneumo/data/image_io.h"

namespace pneumo::train {

namespace {

constexpr int kWidth = 720, kHeight = 420, kLeft = 80, kRight = 20, kTop = 40, kBottom = 50;
const cv::Scalar kBlack(0, 0, 0), kGrey(200, 200, 200);

void text(cv::Mat& image, const std::string& s, cv::Point at, double scale = 0.4) {
  cv::putText(image, s, at, cv::FONT_HERSHEY_SIMPLEX, scale, kBlack, 1, cv::LINE_AA);
}

std::pair<double, double> padded(double lo, double hi) {
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi - lo < 1e-12) lo -= 0.5, hi += 0.5;
  const double pad = 0.05 * (hi - lo);
  return {lo - pad, hi + pad};
}

}  // namespace

void write_line_chart(const std::filesystem::path& file, const ChartOptions& options, const std::vector<Series>& series) {
  cv::Mat image(kHeight, kWidth, CV_8UC3, cv::Scalar(255, 255, 255));
  const auto transform = [&](double v) { return options.log_scale ? std::log10(v) : v; };
  const auto usable = [&](double v) { return std::isfinite(v) && (!options.log_scale || v > 0); };
  const auto x_at = [](const Series& s, size_t i) { return s.x.empty() ? static_cast<double>(i + 1) : s.x[i]; };
  double ylo = std::numeric_limits<double>::infinity(), yhi = -ylo, xlo = ylo, xhi = -ylo;
  for (const Series& s : series)
    for (size_t i = 0; i < s.values.size(); ++i)
      if (usable(s.values[i])) {
        ylo = std::min(ylo, transform(s.values[i]));
        yhi = std::max(yhi, transform(s.values[i]));
        xlo = std::min(xlo, x_at(s, i));
        xhi = std::max(xhi, x_at(s, i));
      }
  double lo = 0, hi = 1;  // plain variables: lambdas below capture them
  std::tie(lo, hi) = options.y_range ? *options.y_range : padded(ylo, yhi);
  if (!std::isfinite(xlo)) xlo = 0, xhi = 1;
  if (options.x_range) std::tie(xlo, xhi) = *options.x_range;
  if (xhi - xlo < 1e-12) xlo -= 0.5, xhi += 0.5;
  const int plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  const auto x_of = [&](double x) { return kLeft + static_cast<int>(plot_w * (x - xlo) / (xhi - xlo)); };
  const auto y_of = [&](double v) { return kTop + static_cast<int>(plot_h * (hi - transform(v)) / (hi - lo)); };
  cv::rectangle(image, {kLeft, kTop}, {kWidth - kRight, kHeight - kBottom}, kBlack, 1);
  for (int k = 0; k <= 4; ++k) {  // horizontal grid with labels
    const double t = lo + (hi - lo) * k / 4.0;
    const int y = kTop + static_cast<int>(plot_h * (1.0 - k / 4.0));
    cv::line(image, {kLeft, y}, {kWidth - kRight, y}, kGrey, 1);
    text(image, options.log_scale ? fmt::format("{:.1e}", std::pow(10.0, t)) : fmt::format("{:.3g}", t), {5, y + 4});
  }
  const bool epochs = std::all_of(series.begin(), series.end(), [](const Series& s) { return s.x.empty(); });
  if (epochs) {
    const auto n = static_cast<size_t>(std::max(0.0, xhi));
    for (size_t i = 1; i <= n; ++i)
      if (n <= 20 || (i - 1) % ((n + 19) / 20) == 0)
        text(image, std::to_string(i), {x_of(static_cast<double>(i)) - 5, kHeight - kBottom + 18});
  } else {
    for (int k = 0; k <= 4; ++k) {
      const double x = xlo + (xhi - xlo) * k / 4.0;
      text(image, fmt::format("{:.3g}", x), {x_of(x) - 10, kHeight - kBottom + 18});
    }
  }
  if (options.diagonal) cv::line(image, {x_of(xlo), y_of(lo)}, {x_of(xhi), y_of(hi)}, kGrey, 1, cv::LINE_AA);
  text(image, options.x_label, {kWidth / 2 - 20, kHeight - 12}, 0.5);
  text(image, options.title, {kLeft, 25}, 0.6);
  const cv::Scalar colours[] = {{200, 80, 0}, {0, 120, 230}, {40, 160, 40}, {160, 40, 160}};
  for (size_t k = 0; k < series.size(); ++k) {
    const cv::Scalar colour = colours[k % 4];
    cv::Point previous(-1, -1);
    for (size_t i = 0; i < series[k].values.size(); ++i) {
      const double v = series[k].values[i];
      if (!usable(v)) {
        previous = {-1, -1};
        continue;
      }
      const cv::Point p(x_of(x_at(series[k], i)), y_of(v));
      if (options.markers) cv::circle(image, p, 3, colour, -1, cv::LINE_AA);
      if (previous.x >= 0) cv::line(image, previous, p, colour, 2, cv::LINE_AA);
      previous = p;
    }
    const int y = kTop + 15 + 18 * static_cast<int>(k);
    cv::line(image, {kWidth - kRight - 200, y - 4}, {kWidth - kRight - 175, y - 4}, colour, 2, cv::LINE_AA);
    text(image, series[k].name, {kWidth - kRight - 170, y}, 0.45);
  }
  data::write_png(file, image);
}

void write_line_chart(const std::filesystem::path& file, const std::string& title, const std::vector<Series>& series,
                      bool log_scale) {
  ChartOptions options;
  options.title = title;
  options.log_scale = log_scale;
  write_line_chart(file, options, series);
}

void write_histogram(const std::filesystem::path& file, const std::string& title, const std::string& x_label,
                     const std::vector<int64_t>& counts, double low, double high) {
  cv::Mat image(kHeight, kWidth, CV_8UC3, cv::Scalar(255, 255, 255));
  const int plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  const int64_t top = std::max<int64_t>(1, counts.empty() ? 1 : *std::max_element(counts.begin(), counts.end()));
  cv::rectangle(image, {kLeft, kTop}, {kWidth - kRight, kHeight - kBottom}, kBlack, 1);
  for (int k = 0; k <= 4; ++k) {
    const int y = kTop + static_cast<int>(plot_h * (1.0 - k / 4.0));
    cv::line(image, {kLeft, y}, {kWidth - kRight, y}, kGrey, 1);
    text(image, fmt::format("{:.3g}", top * k / 4.0), {5, y + 4});
  }
  const auto n = static_cast<int>(counts.size());
  for (int i = 0; i < n; ++i) {
    const int x0 = kLeft + plot_w * i / n, x1 = kLeft + plot_w * (i + 1) / n;
    const int y = kTop + static_cast<int>(plot_h * (1.0 - static_cast<double>(counts[i]) / static_cast<double>(top)));
    cv::rectangle(image, {x0 + 1, y}, {x1 - 1, kHeight - kBottom}, cv::Scalar(200, 80, 0), cv::FILLED);
  }
  for (int k = 0; k <= 4; ++k)
    text(image, fmt::format("{:.3g}", low + (high - low) * k / 4.0), {kLeft + plot_w * k / 4 - 10, kHeight - kBottom + 18});
  text(image, x_label, {kWidth / 2 - 20, kHeight - 12}, 0.5);
  text(image, title, {kLeft, 25}, 0.6);
  data::write_png(file, image);
}

void write_confusion_matrix(const std::filesystem::path& file, const std::string& title, int64_t tp, int64_t fp,
                            int64_t tn, int64_t fn) {
  const int cell = 150, left = 170, top = 90;
  cv::Mat image(top + 2 * cell + 40, left + 2 * cell + 30, CV_8UC3, cv::Scalar(255, 255, 255));
  const int64_t total = std::max<int64_t>(1, tp + fp + tn + fn);
  const int64_t values[2][2] = {{tp, fn}, {fp, tn}};  // rows: truth positive, negative
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 2; ++c) {
      const double share = static_cast<double>(values[r][c]) / static_cast<double>(total);
      const auto shade = static_cast<int>(255 - 155 * share);
      const cv::Rect box(left + c * cell, top + r * cell, cell, cell);
      cv::rectangle(image, box, cv::Scalar(255, shade, shade), cv::FILLED);
      cv::rectangle(image, box, kBlack, 1);
      text(image, std::to_string(values[r][c]), {box.x + 20, box.y + cell / 2}, 0.9);
      text(image, fmt::format("{:.1f}%", 100 * share), {box.x + 20, box.y + cell / 2 + 30}, 0.5);
    }
  text(image, title, {10, 25}, 0.6);
  text(image, "predicted positive", {left + 10, top - 10}, 0.45);
  text(image, "predicted negative", {left + cell + 10, top - 10}, 0.45);
  text(image, "truth positive", {10, top + cell / 2}, 0.45);
  text(image, "truth negative", {10, top + cell + cell / 2}, 0.45);
  data::write_png(file, image);
}

}  // namespace pneumo::train
