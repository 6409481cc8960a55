#include "pneumo/core/config_schema.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "pneumo/core/error.h"

namespace pneumo::core {

Check<std::string> one_of(std::vector<std::string> choices) {
  std::string expected = "one of: " + config_detail::join(choices);
  return {std::move(expected), [choices = std::move(choices)](const std::string& v) {
            return std::find(choices.begin(), choices.end(), v) != choices.end();
          }};
}

Check<std::string> non_empty() {
  return {"a non-empty string", [](const std::string& v) { return !v.empty(); }};
}

Check<std::string> auto_or_bool() {
  return {"auto, true or false", [](const std::string& v) {
            bool b = false;
            return v == "auto" || config_detail::parse_scalar(v, b);
          }};
}

namespace config_detail {

bool parse_scalar(const std::string& text, bool& out) {
  static const char* const kTrue[] = {"true", "True", "TRUE"};
  static const char* const kFalse[] = {"false", "False", "FALSE"};
  for (const char* t : kTrue)
    if (text == t) return out = true, true;
  for (const char* f : kFalse)
    if (text == f) return out = false, true;
  return false;
}

bool parse_scalar(const std::string& text, int64_t& out) {
  const char* first = text.data();
  const char* last = first + text.size();
  if (first != last && *first == '+') ++first;
  auto [end, ec] = std::from_chars(first, last, out);
  return ec == std::errc() && end == last && first != last;
}

bool parse_scalar(const std::string& text, int& out) {
  int64_t wide = 0;
  if (!parse_scalar(text, wide) || wide < std::numeric_limits<int>::min() ||
      wide > std::numeric_limits<int>::max())
    return false;
  out = static_cast<int>(wide);
  return true;
}

bool parse_scalar(const std::string& text, double& out) {
  const char* first = text.data();
  const char* last = first + text.size();
  if (first != last && *first == '+') ++first;
  if (first == last) return false;
  auto [end, ec] = std::from_chars(first, last, out);
  // Infinities and NaN are never meaningful configuration values.
  return ec == std::errc() && end == last && std::isfinite(out);
}

bool parse_scalar(const std::string& text, float& out) {
  double wide = 0;
  if (!parse_scalar(text, wide) || std::abs(wide) > std::numeric_limits<float>::max())
    return false;
  out = static_cast<float>(wide);
  return true;
}

bool parse_scalar(const std::string& text, std::string& out) {
  out = text;
  return true;
}

std::string format_scalar(bool value) { return value ? "true" : "false"; }
std::string format_scalar(int64_t value) { return std::to_string(value); }
std::string format_scalar(const std::string& value) { return value; }

std::string format_scalar(double value) {
  std::string text = fmt::format("{}", value);  // shortest text that reads back exactly
  if (text.find_first_of(".en") == std::string::npos) text += ".0";
  return text;
}

std::string join(const std::vector<std::string>& items) { return fmt::format("{}", fmt::join(items, ", ")); }

std::string child_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

void fail(const SourceLocation& where, const std::string& path, const std::string& message) {
  throw ConfigError(fmt::format("{} {}: {}", where.str(), path, message));
}

}  // namespace config_detail

ConfigReader::ConfigReader(const ConfigNode* node, std::string path)
    : node_(node), path_(std::move(path)) {}

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

std::string did_you_mean(const std::string& given, const std::vector<std::string>& known) {
  std::string hint;
  size_t best = 3;  // suggest only close spellings
  for (const auto& candidate : known) {
    const size_t d = edit_distance(given, candidate);
    if (d < best) best = d, hint = fmt::format(" (did you mean '{}'?)", candidate);
  }
  return hint;
}

void ConfigReader::finish() const {
  if (node_ == nullptr) return;
  for (const auto& entry : node_->entries()) {
    if (std::find(known_.begin(), known_.end(), entry.key) != known_.end()) continue;
    std::vector<std::string> sorted = known_;
    std::sort(sorted.begin(), sorted.end());
    const std::string hint = did_you_mean(entry.key, sorted);
    throw ConfigError(fmt::format("{} {}: unknown key '{}'{}; known: {}", entry.key_where.str(),
                                  path_.empty() ? "(top level)" : path_, entry.key, hint,
                                  config_detail::join(sorted)));
  }
}

std::string ConfigReader::shown(const ConfigNode& node) {
  if (node.is_scalar()) return node.text();
  std::string yaml = to_yaml(node);
  while (!yaml.empty() && yaml.back() == '\n') yaml.pop_back();
  for (char& c : yaml)
    if (c == '\n') c = ' ';
  return yaml;
}

}  // namespace pneumo::core
