// Line charts of the per-epoch metrics as PNG files in the run folder.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace pneumo::train {

struct Series {
  std::string name;
  std::vector<double> values;  // one per epoch; NaN values are skipped
};

// Draws the series against epochs 1..N on shared axes (log scale when `log_scale`) with a
// legend, and writes the PNG atomically.
void write_line_chart(const std::filesystem::path& file, const std::string& title, const std::vector<Series>& series,
                      bool log_scale = false);

}  // namespace pneumo::train
