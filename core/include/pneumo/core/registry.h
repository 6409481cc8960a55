// A name -> factory table. Models, encoders, transforms, losses... each keep one, and YAML
// names are looked up in it; an unknown name lists the known ones.
//
//   core::Registry<EncoderFactory>& encoders();   // a function-local static in the component
//   encoders().add("resnet34", make_resnet34);
//   auto make = encoders().at(name);               // ConfigError if unknown
#pragma once

#include <algorithm>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "pneumo/core/config_schema.h"
#include "pneumo/core/error.h"

namespace pneumo::core {

template <class Factory>
class Registry {
 public:
  // `kind` names the entries in messages: "encoder", "transform".
  explicit Registry(std::string kind) : kind_(std::move(kind)) {}

  void add(std::string name, Factory factory) {
    if (entries_.count(name) != 0)  // a programming error, not a user error
      throw std::logic_error("Registry<" + kind_ + ">: '" + name + "' registered twice");
    entries_.emplace(std::move(name), std::move(factory));
  }

  const Factory* find(std::string_view name) const {
    const auto it = entries_.find(std::string(name));
    return it == entries_.end() ? nullptr : &it->second;
  }

  const Factory& at(std::string_view name) const {
    if (const Factory* factory = find(name)) return *factory;
    throw ConfigError(unknown_message(name));
  }

  bool contains(std::string_view name) const { return find(name) != nullptr; }

  // Sorted names.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& entry : entries_) out.push_back(entry.first);
    return out;
  }

  // "unknown encoder 'resnet43'; known: densenet121, resnet34"
  std::string unknown_message(std::string_view name) const {
    return "unknown " + kind_ + " '" + std::string(name) + "'" +
           did_you_mean(std::string(name), names()) + "; known: " + config_detail::join(names());
  }

  // A config check that accepts registered names (for a `name` field of a section).
  Check<std::string> check() const {
    return {"a known " + kind_ + " (" + config_detail::join(names()) + ")",
            [this](const std::string& v) { return contains(v); }};
  }

  const std::string& kind() const { return kind_; }

 private:
  std::string kind_;
  std::map<std::string, Factory> entries_;
};

}  // namespace pneumo::core
