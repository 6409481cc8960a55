// Reading one op's parameters from YAML, with Albumentations' conventions (a limit is a number
// for a symmetric range or a [lo, hi] pair; OpenCV flags by number or name) and errors that
// name file:line:column, the op and the parameter.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pneumo/core/config_node.h"
#include "pneumo/core/config_schema.h"

namespace pneumo::augment {

struct Range {
  double lo = 0.0;
  double hi = 0.0;
};

class OpParams {
 public:
  // `params`: the op's map (or null for all defaults); `path`: e.g. "augment.train[2].Blur".
  OpParams(std::string op, const core::ConfigNode* params, std::string path, core::SourceLocation where);

  const std::string& op() const { return op_; }
  const std::string& path() const { return path_; }

  double number(const char* key, double fallback, const core::Check<double>& check = {});
  int integer(const char* key, int fallback, const core::Check<int>& check = {});
  bool flag(const char* key, bool fallback);
  std::optional<double> optional_number(const char* key);
  std::optional<int> optional_integer(const char* key, const core::Check<int>& check = {});

  // Albumentations' to_tuple(value, low, bias): a number v gives (-v, v), or (low, v) ordered
  // when `low` is set; a pair is taken as is; then `bias` is added to both ends. `fallback` is
  // the default before bias. Checks lo <= hi, then `check` on both ends (after bias).
  Range range(const char* key, Range fallback, std::optional<double> low = {}, double bias = 0.0,
              const core::Check<double>& check = {});
  // A pair of integers ([a, b]) or one integer for both.
  std::pair<int, int> int_pair(const char* key, std::pair<int, int> fallback,
                               const core::Check<int>& check = {});
  // One value or a list; returns the list.
  std::vector<double> numbers(const char* key, std::vector<double> fallback);

  // cv::INTER_* by number (0..4) or name (nearest, linear, cubic, area, lanczos).
  int interpolation(const char* key, int fallback);
  // cv::BORDER_* by number (0..4) or name (constant, replicate, reflect, wrap, reflect_101).
  int border_mode(const char* key, int fallback);

  // A raw child (e.g. `transforms`); null when absent.
  const core::ConfigNode* child(const char* key);

  [[noreturn]] void fail(const char* key, const std::string& message) const;
  // Throws for the first parameter no reader asked for, listing the valid ones.
  void finish() const;

 private:
  const core::ConfigNode* find(const char* key);

  std::string op_;
  const core::ConfigNode* params_;
  std::string path_;
  core::SourceLocation where_;
  std::vector<std::string> known_;
};

}  // namespace pneumo::augment
