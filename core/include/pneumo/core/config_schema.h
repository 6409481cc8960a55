// Typed configuration sections. A section is a struct with defaults and one `visit` function
// that lists its keys once; that list drives reading (with type and range checks, and an
// error for every unknown key), writing the resolved config back as YAML, and documentation:
//
//   struct TrainSection {
//     int epochs = 10;
//     template <class V> void visit(V& v) {
//       v("epochs", epochs, "passes over the training set", at_least(1));
//     }
//   };
//   auto train = read_section<TrainSection>(*root.find("train"), "train");
//
// Field types: bool, int, int64_t, float, double, std::string, std::vector<T>,
// std::optional<T> (null = unset), ConfigNode (kept raw for a component to interpret) and any
// struct with `visit` (a nested section).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "pneumo/core/config_node.h"

namespace pneumo::core {

// A constraint on a value; `expected` completes "expected ..." in error messages and docs.
template <class T>
struct Check {
  std::string expected;
  std::function<bool(const T&)> accepts;
};

template <class T>
Check<T> at_least(T low);
template <class T>
Check<T> in_range(T low, T high);
Check<std::string> one_of(std::vector<std::string> choices);
Check<std::string> non_empty();
// "auto", or a boolean as parse_scalar reads one: a switch pneumo can also decide by itself.
Check<std::string> auto_or_bool();

// " (did you mean 'seed'?)" when one of `known` is a close spelling of `given`, else "".
std::string did_you_mean(const std::string& given, const std::vector<std::string>& known);

namespace config_detail {

bool parse_scalar(const std::string& text, bool& out);
bool parse_scalar(const std::string& text, int& out);
bool parse_scalar(const std::string& text, int64_t& out);
bool parse_scalar(const std::string& text, float& out);
bool parse_scalar(const std::string& text, double& out);
bool parse_scalar(const std::string& text, std::string& out);
std::string format_scalar(bool value);
std::string format_scalar(int64_t value);
std::string format_scalar(double value);
std::string format_scalar(const std::string& value);
inline std::string format_scalar(int value) { return format_scalar(static_cast<int64_t>(value)); }
inline std::string format_scalar(float value) { return format_scalar(static_cast<double>(value)); }

template <class T> const char* type_name();
template <> inline const char* type_name<bool>() { return "true or false"; }
template <> inline const char* type_name<int>() { return "an integer"; }
template <> inline const char* type_name<int64_t>() { return "an integer"; }
template <> inline const char* type_name<float>() { return "a number"; }
template <> inline const char* type_name<double>() { return "a number"; }
template <> inline const char* type_name<std::string>() { return "a string"; }

std::string join(const std::vector<std::string>& items);
std::string child_path(const std::string& parent, const std::string& key);
[[noreturn]] void fail(const SourceLocation& where, const std::string& path,
                       const std::string& message);

template <class T> struct is_vector : std::false_type {};
template <class T> struct is_vector<std::vector<T>> : std::true_type {};
template <class T> struct is_optional : std::false_type {};
template <class T> struct is_optional<std::optional<T>> : std::true_type {};

struct ProbeVisitor {
  template <class T, class... Rest>
  void operator()(const char*, T&, Rest&&...) {}
};
template <class T, class = void> struct is_section : std::false_type {};
template <class T>
struct is_section<T, std::void_t<decltype(std::declval<T&>().visit(std::declval<ProbeVisitor&>()))>>
    : std::true_type {};

}  // namespace config_detail

// Reads one section (a map node) into a struct via its visit function.
class ConfigReader {
 public:
  // `node` may be null (section absent: everything keeps its default).
  ConfigReader(const ConfigNode* node, std::string path);

  template <class T>
  void operator()(const char* key, T& value, const char* /*doc*/, const Check<T>& check = {}) {
    known_.emplace_back(key);
    if (node_ == nullptr) return;
    const ConfigNode* child = node_->find(key);
    if (child == nullptr) return;
    const std::string path = config_detail::child_path(path_, key);
    read_value(*child, path, value);
    if (check.accepts && !check.accepts(value))
      config_detail::fail(child->where(), path,
                          "invalid value '" + shown(*child) + "'; expected " + check.expected);
  }

  // Reports the first key that no visited field claimed, with the list of valid keys.
  void finish() const;

 private:
  template <class T>
  static void read_value(const ConfigNode& node, const std::string& path, T& value) {
    using config_detail::fail;
    if constexpr (std::is_same_v<T, ConfigNode>) {
      value = node;
    } else if constexpr (config_detail::is_optional<T>::value) {
      if (node.is_null()) {
        value.reset();
      } else {
        typename T::value_type inner{};
        read_value(node, path, inner);
        value = std::move(inner);
      }
    } else if constexpr (config_detail::is_vector<T>::value) {
      if (!node.is_sequence()) fail(node.where(), path, std::string("expected a list; got ") +
                                                            node.kind_name());
      T items;
      for (size_t i = 0; i < node.items().size(); ++i) {
        typename T::value_type item{};
        read_value(node.items()[i], path + "[" + std::to_string(i) + "]", item);
        items.push_back(std::move(item));
      }
      value = std::move(items);
    } else if constexpr (config_detail::is_section<T>::value) {
      if (!node.is_map() && !node.is_null())
        fail(node.where(), path, std::string("expected a section (key: value lines); got ") +
                                     node.kind_name() + " '" + shown(node) + "'");
      ConfigReader reader(node.is_null() ? nullptr : &node, path);
      value.visit(reader);
      reader.finish();
    } else if (std::is_same_v<T, std::string> && node.is_null()) {
      value = T{};  // `key:` or `--set key=`: an empty value clears a string
    } else {
      if (!node.is_scalar())
        fail(node.where(), path, std::string("expected ") + config_detail::type_name<T>() +
                                     "; got " + node.kind_name());
      if (!config_detail::parse_scalar(node.text(), value))
        fail(node.where(), path, std::string("invalid value '") + node.text() + "'; expected " +
                                     config_detail::type_name<T>());
    }
  }
  static std::string shown(const ConfigNode& node);

  const ConfigNode* node_;
  std::string path_;
  std::vector<std::string> known_;
};

// Writes a section back as a ConfigNode tree (docs attached for commented output).
class ConfigWriter {
 public:
  explicit ConfigWriter(ConfigNode& out) : out_(out) {}

  template <class T>
  void operator()(const char* key, T& value, const char* doc, const Check<T>& check = {}) {
    ConfigNode& child = out_.set(key, to_node(value));
    std::string text = doc;
    if (!check.expected.empty()) text += " (" + check.expected + ")";
    child.set_doc(std::move(text));
  }

 private:
  template <class T>
  static ConfigNode to_node(T& value) {
    if constexpr (std::is_same_v<T, ConfigNode>) {
      return value;
    } else if constexpr (config_detail::is_optional<T>::value) {
      return value ? to_node(*value) : ConfigNode::null();
    } else if constexpr (config_detail::is_vector<T>::value) {
      ConfigNode seq = ConfigNode::sequence();
      for (auto& item : value) seq.append(to_node(item));
      return seq;
    } else if constexpr (config_detail::is_section<T>::value) {
      ConfigNode map = ConfigNode::map();
      ConfigWriter writer(map);
      value.visit(writer);
      return map;
    } else {
      return ConfigNode::scalar(config_detail::format_scalar(value));
    }
  }

  ConfigNode& out_;
};

template <class Section>
Section read_section(const ConfigNode& node, const std::string& path = "") {
  Section section{};
  if (!node.is_map() && !node.is_null())
    config_detail::fail(node.where(), path.empty() ? "(top level)" : path,
                        std::string("expected a section; got ") + node.kind_name());
  ConfigReader reader(node.is_null() ? nullptr : &node, path);
  section.visit(reader);
  reader.finish();
  return section;
}

template <class Section>
ConfigNode write_section(Section section) {
  ConfigNode map = ConfigNode::map();
  ConfigWriter writer(map);
  section.visit(writer);
  return map;
}

template <class T>
Check<T> at_least(T low) {
  return {">= " + config_detail::format_scalar(low), [low](const T& v) { return v >= low; }};
}

template <class T>
Check<T> in_range(T low, T high) {
  return {"a value in [" + config_detail::format_scalar(low) + ", " +
              config_detail::format_scalar(high) + "]",
          [low, high](const T& v) { return v >= low && v <= high; }};
}

}  // namespace pneumo::core
