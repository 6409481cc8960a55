#include "op_params.h"

#include <algorithm>

#include <fmt/format.h>
#include <opencv2/imgproc.hpp>

#include "pneumo/core/error.h"

namespace pneumo::augment {

namespace {

using core::config_detail::parse_scalar;

const std::vector<std::pair<std::string, int>> kInterpolations = {
    {"nearest", cv::INTER_NEAREST}, {"linear", cv::INTER_LINEAR}, {"cubic", cv::INTER_CUBIC},
    {"area", cv::INTER_AREA},       {"lanczos", cv::INTER_LANCZOS4}};
const std::vector<std::pair<std::string, int>> kBorders = {
    {"constant", cv::BORDER_CONSTANT}, {"replicate", cv::BORDER_REPLICATE},
    {"reflect", cv::BORDER_REFLECT},   {"wrap", cv::BORDER_WRAP},
    {"reflect_101", cv::BORDER_REFLECT_101}};

}  // namespace

OpParams::OpParams(std::string op, const core::ConfigNode* params, std::string path,
                   core::SourceLocation where)
    : op_(std::move(op)), params_(params), path_(std::move(path)), where_(std::move(where)) {
  if (params_ != nullptr && params_->is_null()) params_ = nullptr;
  if (params_ != nullptr && !params_->is_map())
    throw core::ConfigError(fmt::format("{} {}: expected its parameters as a map (key: value); got {}",
                                        params_->where().str(), path_, params_->kind_name()));
}

const core::ConfigNode* OpParams::find(const char* key) {
  known_.emplace_back(key);
  return params_ == nullptr ? nullptr : params_->find(key);
}

void OpParams::fail(const char* key, const std::string& message) const {
  const core::ConfigNode* node = params_ == nullptr ? nullptr : params_->find(key);
  throw core::ConfigError(fmt::format("{} {}.{}: {}", (node ? node->where() : where_).str(), path_,
                                      key, message));
}

double OpParams::number(const char* key, double fallback, const core::Check<double>& check) {
  double value = fallback;
  if (const core::ConfigNode* node = find(key)) {
    if (!node->is_scalar() || !parse_scalar(node->text(), value))
      fail(key, "expected a number");
  }
  if (check.accepts && !check.accepts(value))
    fail(key, fmt::format("invalid value {}; expected {}", value, check.expected));
  return value;
}

int OpParams::integer(const char* key, int fallback, const core::Check<int>& check) {
  int value = fallback;
  if (const core::ConfigNode* node = find(key)) {
    if (!node->is_scalar() || !parse_scalar(node->text(), value)) fail(key, "expected an integer");
  }
  if (check.accepts && !check.accepts(value))
    fail(key, fmt::format("invalid value {}; expected {}", value, check.expected));
  return value;
}

bool OpParams::flag(const char* key, bool fallback) {
  bool value = fallback;
  if (const core::ConfigNode* node = find(key)) {
    if (!node->is_scalar() || !parse_scalar(node->text(), value)) fail(key, "expected true or false");
  }
  return value;
}

std::optional<double> OpParams::optional_number(const char* key) {
  const core::ConfigNode* node = find(key);
  if (node == nullptr || node->is_null()) return std::nullopt;
  double value = 0.0;
  if (!node->is_scalar() || !parse_scalar(node->text(), value)) fail(key, "expected a number or null");
  return value;
}

std::optional<int> OpParams::optional_integer(const char* key, const core::Check<int>& check) {
  const core::ConfigNode* node = find(key);
  if (node == nullptr || node->is_null()) return std::nullopt;
  int value = 0;
  if (!node->is_scalar() || !parse_scalar(node->text(), value)) fail(key, "expected an integer or null");
  if (check.accepts && !check.accepts(value))
    fail(key, fmt::format("invalid value {}; expected {}", value, check.expected));
  return value;
}

Range OpParams::range(const char* key, Range fallback, std::optional<double> low, double bias,
                      const core::Check<double>& check) {
  Range r = fallback;
  if (const core::ConfigNode* node = find(key)) {
    double a = 0.0, b = 0.0;
    if (node->is_scalar() && parse_scalar(node->text(), a)) {
      if (low)
        r = *low < a ? Range{*low, a} : Range{a, *low};
      else
        r = {-a, a};
    } else if (node->is_sequence() && node->items().size() == 2 && node->items()[0].is_scalar() &&
               node->items()[1].is_scalar() && parse_scalar(node->items()[0].text(), a) &&
               parse_scalar(node->items()[1].text(), b)) {
      r = {a, b};
    } else {
      fail(key, "expected a number (a symmetric range) or a [lo, hi] pair");
    }
  }
  r.lo += bias;
  r.hi += bias;
  if (r.lo > r.hi) fail(key, fmt::format("range [{}, {}] has lo > hi", r.lo, r.hi));
  if (check.accepts && (!check.accepts(r.lo) || !check.accepts(r.hi)))
    fail(key, fmt::format("range [{}, {}] leaves the allowed values; expected {}", r.lo, r.hi,
                          check.expected));
  return r;
}

std::pair<int, int> OpParams::int_pair(const char* key, std::pair<int, int> fallback,
                                       const core::Check<int>& check) {
  std::pair<int, int> value = fallback;
  if (const core::ConfigNode* node = find(key)) {
    int a = 0, b = 0;
    if (node->is_scalar() && parse_scalar(node->text(), a)) {
      value = {a, a};
    } else if (node->is_sequence() && node->items().size() == 2 && node->items()[0].is_scalar() &&
               node->items()[1].is_scalar() && parse_scalar(node->items()[0].text(), a) &&
               parse_scalar(node->items()[1].text(), b)) {
      value = {a, b};
    } else {
      fail(key, "expected an integer or a pair [a, b] of integers");
    }
  }
  if (check.accepts && (!check.accepts(value.first) || !check.accepts(value.second)))
    fail(key, fmt::format("invalid value [{}, {}]; expected {}", value.first, value.second, check.expected));
  return value;
}

std::vector<double> OpParams::numbers(const char* key, std::vector<double> fallback) {
  const core::ConfigNode* node = find(key);
  if (node == nullptr) return fallback;
  std::vector<double> out;
  double v = 0.0;
  if (node->is_scalar() && parse_scalar(node->text(), v)) return {v};
  if (!node->is_sequence()) fail(key, "expected a number or a list of numbers");
  for (const core::ConfigNode& item : node->items()) {
    if (!item.is_scalar() || !parse_scalar(item.text(), v)) fail(key, "expected a list of numbers");
    out.push_back(v);
  }
  return out;
}

namespace {

int named_flag(OpParams& params, const core::ConfigNode* node, const char* key,
               const std::vector<std::pair<std::string, int>>& names, int fallback) {
  if (node == nullptr) return fallback;
  std::string text = node->is_scalar() ? node->text() : "";
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const auto& [name, flag] : names) {
    if (text == name || text == std::to_string(flag)) return flag;
    // Albumentations recipes spell them cv2.INTER_LINEAR, cv2.BORDER_CONSTANT (compared lower-cased).
    if (text == "cv2.inter_" + name || text == "cv2.border_" + name ||
        (name == "lanczos" && text == "cv2.inter_lanczos4"))
      return flag;
  }
  std::vector<std::string> valid;
  for (const auto& [name, flag] : names) valid.push_back(fmt::format("{} ({})", name, flag));
  params.fail(key, fmt::format("unknown value '{}'; expected one of {}", node->is_scalar() ? node->text() : node->kind_name(),
                               core::config_detail::join(valid)));
}

}  // namespace

int OpParams::interpolation(const char* key, int fallback) {
  return named_flag(*this, find(key), key, kInterpolations, fallback);
}

int OpParams::border_mode(const char* key, int fallback) {
  return named_flag(*this, find(key), key, kBorders, fallback);
}

const core::ConfigNode* OpParams::child(const char* key) { return find(key); }

void OpParams::finish() const {
  if (params_ == nullptr) return;
  for (const core::ConfigEntry& entry : params_->entries()) {
    if (std::find(known_.begin(), known_.end(), entry.key) != known_.end()) continue;
    std::vector<std::string> sorted = known_;
    std::sort(sorted.begin(), sorted.end());
    sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
    throw core::ConfigError(fmt::format("{} {}: unknown parameter '{}'{}; {} takes: {}",
                                        entry.key_where.str(), path_, entry.key,
                                        core::did_you_mean(entry.key, sorted), op_,
                                        core::config_detail::join(sorted)));
  }
}

}  // namespace pneumo::augment
