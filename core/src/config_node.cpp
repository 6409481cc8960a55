#include "pneumo/core/config_node.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"

namespace pneumo::core {

namespace {
constexpr uint64_t kMaxConfigBytes = uint64_t{16} << 20;  // experiment and pipeline files are small
}  // namespace

std::string SourceLocation::str() const {
  if (source.empty()) return "(default)";
  if (line == 0) return fmt::format("[{}]", source);
  return fmt::format("{}:{}:{}", source, line, column);
}

ConfigNode ConfigNode::null(SourceLocation where) {
  ConfigNode node;
  node.where_ = std::move(where);
  return node;
}

ConfigNode ConfigNode::scalar(std::string text, SourceLocation where) {
  ConfigNode node;
  node.kind_ = Kind::kScalar;
  node.text_ = std::move(text);
  node.where_ = std::move(where);
  return node;
}

ConfigNode ConfigNode::sequence(SourceLocation where) {
  ConfigNode node;
  node.kind_ = Kind::kSequence;
  node.where_ = std::move(where);
  return node;
}

ConfigNode ConfigNode::map(SourceLocation where) {
  ConfigNode node;
  node.kind_ = Kind::kMap;
  node.where_ = std::move(where);
  return node;
}

const char* ConfigNode::kind_name() const {
  switch (kind_) {
    case Kind::kNull: return "null";
    case Kind::kScalar: return "a single value";
    case Kind::kSequence: return "a list";
    case Kind::kMap: return "a section";
  }
  return "?";
}

void ConfigNode::append(ConfigNode item) { items_.push_back(std::move(item)); }

const ConfigNode* ConfigNode::find(std::string_view key) const {
  for (const auto& entry : entries_)
    if (entry.key == key) return &entry.value;
  return nullptr;
}

ConfigNode* ConfigNode::find(std::string_view key) {
  return const_cast<ConfigNode*>(static_cast<const ConfigNode*>(this)->find(key));
}

ConfigNode& ConfigNode::set(std::string key, ConfigNode value, SourceLocation key_where) {
  for (auto& entry : entries_) {
    if (entry.key == key) {
      entry.value = std::move(value);
      entry.key_where = std::move(key_where);
      return entry.value;
    }
  }
  entries_.push_back({std::move(key), std::move(key_where), std::move(value)});
  return entries_.back().value;
}

bool ConfigNode::erase(std::string_view key) {
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const ConfigEntry& e) { return e.key == key; });
  if (it == entries_.end()) return false;
  entries_.erase(it);
  return true;
}

namespace {

SourceLocation location_of(const YAML::Mark& mark, const std::string& source) {
  if (mark.is_null()) return {source, 0, 0};
  return {source, mark.line + 1, mark.column + 1};
}

ConfigNode from_yaml(const YAML::Node& node, const std::string& source) {
  const SourceLocation where = location_of(node.Mark(), source);
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return ConfigNode::null(where);
    case YAML::NodeType::Scalar:
      return ConfigNode::scalar(node.Scalar(), where);
    case YAML::NodeType::Sequence: {
      ConfigNode seq = ConfigNode::sequence(where);
      for (const auto& item : node) seq.append(from_yaml(item, source));
      return seq;
    }
    case YAML::NodeType::Map: {
      ConfigNode map = ConfigNode::map(where);
      for (const auto& kv : node) {
        const SourceLocation key_where = location_of(kv.first.Mark(), source);
        if (!kv.first.IsScalar())
          throw ConfigError(fmt::format("{}: a key must be a plain name; got {}",
                                        key_where.str(), kv.first.IsMap() ? "a map" : "a list"));
        const std::string key = kv.first.Scalar();
        if (map.find(key) != nullptr)
          throw ConfigError(fmt::format("{}: duplicate key '{}'; each key may appear once",
                                        key_where.str(), key));
        map.set(key, from_yaml(kv.second, source), key_where);
      }
      return map;
    }
  }
  return ConfigNode::null(where);
}

// Every node of an override's value points at the override itself.
void set_location_recursive(ConfigNode& node, const SourceLocation& where) {
  node.set_where(where);
  for (auto& item : node.items()) set_location_recursive(item, where);
  for (auto& entry : node.entries()) {
    entry.key_where = where;
    set_location_recursive(entry.value, where);
  }
}

std::vector<std::filesystem::path> base_files(const ConfigNode& base_value,
                                              const std::filesystem::path& file) {
  const auto resolve = [&](const ConfigNode& item) {
    if (!item.is_scalar() || item.text().empty())
      throw ConfigError(fmt::format("{} base: expected a file name or a list of file names; got {}",
                                    item.where().str(), item.kind_name()));
    std::filesystem::path p = item.text();
    return p.is_absolute() ? p : file.parent_path() / p;
  };
  std::vector<std::filesystem::path> files;
  if (base_value.is_sequence()) {
    for (const auto& item : base_value.items()) files.push_back(resolve(item));
  } else {
    files.push_back(resolve(base_value));
  }
  return files;
}

ConfigNode load_with_bases(const std::filesystem::path& file,
                           std::vector<std::filesystem::path>& chain) {
  std::error_code ec;
  const auto canonical = std::filesystem::weakly_canonical(file, ec);
  const auto& key = ec ? file : canonical;
  if (std::find(chain.begin(), chain.end(), key) != chain.end()) {
    std::string cycle;
    for (const auto& p : chain) cycle += p.string() + " -> ";
    throw ConfigError(fmt::format("{}: 'base' files form a cycle: {}{}", file.string(), cycle,
                                  key.string()));
  }
  std::string text;
  try {
    text = read_text_file(file, kMaxConfigBytes);
  } catch (const IoError& e) {
    throw ConfigError(fmt::format("cannot read config file: {}", e.what()));
  }
  ConfigNode doc = parse_yaml(text, file.string());
  if (doc.is_null()) return ConfigNode::map({file.string(), 1, 1});
  if (!doc.is_map())
    throw ConfigError(fmt::format("{}: a config file must be a map of sections; got {}",
                                  doc.where().str(), doc.kind_name()));
  const ConfigNode* base_value = doc.find("base");
  if (base_value == nullptr) return doc;

  chain.push_back(key);
  ConfigNode merged = ConfigNode::map(doc.where());
  for (const auto& base_file : base_files(*base_value, file))
    merge_into(merged, load_with_bases(base_file, chain));
  chain.pop_back();
  doc.erase("base");
  merge_into(merged, doc);
  return merged;
}

bool is_index(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

void emit(YAML::Emitter& out, const ConfigNode& node, bool with_docs) {
  switch (node.kind()) {
    case ConfigNode::Kind::kNull: out << YAML::Null; break;
    case ConfigNode::Kind::kScalar: out << node.text(); break;
    case ConfigNode::Kind::kSequence: {
      const bool all_scalars = std::all_of(node.items().begin(), node.items().end(),
                                           [](const ConfigNode& n) { return n.is_scalar(); });
      if (all_scalars) out << YAML::Flow;
      out << YAML::BeginSeq;
      for (const auto& item : node.items()) emit(out, item, with_docs);
      out << YAML::EndSeq;
      break;
    }
    case ConfigNode::Kind::kMap: {
      if (node.entries().empty()) out << YAML::Flow;
      out << YAML::BeginMap;
      for (const auto& e : node.entries()) {
        out << YAML::Key << e.key;
        // A comment on a block (a section, or a list of sections) goes on its key's line.
        const bool nested = (e.value.is_map() && !e.value.entries().empty()) ||
                            (e.value.is_sequence() && !std::all_of(e.value.items().begin(), e.value.items().end(),
                                                                   [](const ConfigNode& n) { return n.is_scalar(); }));
        if (with_docs && nested && !e.value.doc().empty()) out << YAML::Comment(e.value.doc());
        out << YAML::Value;
        emit(out, e.value, with_docs);
        if (with_docs && !nested && !e.value.doc().empty()) out << YAML::Comment(e.value.doc());
      }
      out << YAML::EndMap;
      break;
    }
  }
}

}  // namespace

ConfigNode parse_yaml(std::string_view text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("{}: YAML syntax error: {}", location_of(e.mark, source).str(),
                                  e.msg));
  }
  return from_yaml(root, source);
}

ConfigNode load_yaml_file(const std::filesystem::path& file) {
  std::vector<std::filesystem::path> chain;
  return load_with_bases(file, chain);
}

void merge_into(ConfigNode& base, const ConfigNode& overlay) {
  if (!base.is_map() || !overlay.is_map()) {
    base = overlay;
    return;
  }
  for (const auto& entry : overlay.entries()) {
    ConfigNode* existing = base.find(entry.key);
    if (existing != nullptr && existing->is_map() && entry.value.is_map()) {
      merge_into(*existing, entry.value);
    } else {
      base.set(entry.key, entry.value, entry.key_where);
    }
  }
}

void apply_override(ConfigNode& root, std::string_view assignment) {
  const SourceLocation where{fmt::format("--set {}", assignment), 0, 0};
  const auto eq = assignment.find('=');
  if (eq == std::string_view::npos || eq == 0)
    throw ConfigError(fmt::format("{}: an override must look like 'key.path=value' (e.g. "
                                  "train.epochs=3); got '{}'",
                                  where.str(), assignment));
  const std::string_view path = assignment.substr(0, eq);
  ConfigNode value = parse_yaml(assignment.substr(eq + 1), where.source);
  set_location_recursive(value, where);

  std::vector<std::string> keys;
  for (size_t start = 0;;) {
    const size_t dot = path.find('.', start);
    keys.emplace_back(path.substr(start, dot - start));
    if (keys.back().empty())
      throw ConfigError(fmt::format("{}: empty name in key path '{}'", where.str(), path));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }

  if (root.is_null()) root = ConfigNode::map(where);
  ConfigNode* node = &root;
  std::string walked;
  for (size_t i = 0; i < keys.size(); ++i) {
    const std::string& key = keys[i];
    const bool last = i + 1 == keys.size();
    ConfigNode* child = nullptr;
    if (node->is_sequence() && is_index(key)) {
      const size_t index = std::stoul(key);
      if (index >= node->items().size())
        throw ConfigError(fmt::format("{}: index {} is past the end of '{}' (it has {} items)",
                                      where.str(), index, walked, node->items().size()));
      child = &node->items()[index];
    } else if (node->is_map()) {
      child = node->find(key);
      if (child == nullptr) child = &node->set(key, ConfigNode::null(where), where);
    } else {
      throw ConfigError(fmt::format("{}: cannot set '{}' inside '{}': it is {}, not a section",
                                    where.str(), key, walked, node->kind_name()));
    }
    walked += (walked.empty() ? "" : ".") + key;
    if (last) {
      *child = value;
    } else if (child->is_null()) {
      *child = ConfigNode::map(where);
    }
    node = child;
  }
}

ConfigNode load_config(const std::filesystem::path& file,
                       const std::vector<std::string>& overrides) {
  ConfigNode root = load_yaml_file(file);
  for (const auto& assignment : overrides) apply_override(root, assignment);
  return root;
}

std::string to_yaml(const ConfigNode& node, bool with_docs) {
  YAML::Emitter out;
  out.SetIndent(2);
  emit(out, node, with_docs);
  std::string text = out.c_str();
  if (!text.empty() && text.back() != '\n') text += '\n';
  return text;
}

}  // namespace pneumo::core
