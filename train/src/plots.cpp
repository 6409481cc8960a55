#include "plots.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <opencv2/imgproc.hpp>

#include "pneumo/data/image_io.h"

namespace pneumo::train {

void write_line_chart(const std::filesystem::path& file, const std::string& title, const std::vector<Series>& series,
                      bool log_scale) {
  const int width = 720, height = 420, left = 80, right = 20, top = 40, bottom = 50;
  cv::Mat image(height, width, CV_8UC3, cv::Scalar(255, 255, 255));
  const auto transform = [&](double v) { return log_scale ? std::log10(v) : v; };
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  size_t epochs = 0;
  for (const Series& s : series) {
    epochs = std::max(epochs, s.values.size());
    for (double v : s.values)
      if (std::isfinite(v) && (!log_scale || v > 0)) {
        lo = std::min(lo, transform(v));
        hi = std::max(hi, transform(v));
      }
  }
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi - lo < 1e-12) lo -= 0.5, hi += 0.5;
  const double pad = 0.05 * (hi - lo);
  lo -= pad;
  hi += pad;
  const auto x_of = [&](size_t i) {
    return left + static_cast<int>(epochs > 1 ? (width - left - right) * static_cast<double>(i) / (epochs - 1)
                                              : (width - left - right) / 2.0);
  };
  const auto y_of = [&](double v) { return top + static_cast<int>((height - top - bottom) * (hi - transform(v)) / (hi - lo)); };
  const cv::Scalar grey(200, 200, 200), black(0, 0, 0);
  cv::rectangle(image, {left, top}, {width - right, height - bottom}, black, 1);
  for (int k = 0; k <= 4; ++k) {  // horizontal grid with labels
    const double t = lo + (hi - lo) * k / 4.0;
    const int y = top + static_cast<int>((height - top - bottom) * (1.0 - k / 4.0));
    cv::line(image, {left, y}, {width - right, y}, grey, 1);
    const std::string label = log_scale ? fmt::format("{:.1e}", std::pow(10.0, t)) : fmt::format("{:.3g}", t);
    cv::putText(image, label, {5, y + 4}, cv::FONT_HERSHEY_SIMPLEX, 0.4, black, 1, cv::LINE_AA);
  }
  for (size_t i = 0; i < epochs; ++i)
    if (epochs <= 20 || i % ((epochs + 19) / 20) == 0)
      cv::putText(image, std::to_string(i + 1), {x_of(i) - 5, height - bottom + 18}, cv::FONT_HERSHEY_SIMPLEX, 0.4,
                  black, 1, cv::LINE_AA);
  cv::putText(image, "epoch", {width / 2 - 20, height - 12}, cv::FONT_HERSHEY_SIMPLEX, 0.5, black, 1, cv::LINE_AA);
  cv::putText(image, title, {left, 25}, cv::FONT_HERSHEY_SIMPLEX, 0.6, black, 1, cv::LINE_AA);
  const cv::Scalar colours[] = {{200, 80, 0}, {0, 120, 230}, {40, 160, 40}, {160, 40, 160}};
  for (size_t k = 0; k < series.size(); ++k) {
    const cv::Scalar colour = colours[k % 4];
    cv::Point previous(-1, -1);
    for (size_t i = 0; i < series[k].values.size(); ++i) {
      const double v = series[k].values[i];
      if (!std::isfinite(v) || (log_scale && v <= 0)) {
        previous = {-1, -1};
        continue;
      }
      const cv::Point p(x_of(i), y_of(v));
      cv::circle(image, p, 3, colour, -1, cv::LINE_AA);
      if (previous.x >= 0) cv::line(image, previous, p, colour, 2, cv::LINE_AA);
      previous = p;
    }
    const int y = top + 15 + 18 * static_cast<int>(k);
    cv::line(image, {width - right - 150, y - 4}, {width - right - 125, y - 4}, colour, 2, cv::LINE_AA);
    cv::putText(image, series[k].name, {width - right - 120, y}, cv::FONT_HERSHEY_SIMPLEX, 0.45, black, 1, cv::LINE_AA);
  }
  data::write_png(file, image);
}

}  // namespace pneumo::train
