// A YAML document as a tree that remembers where every key and value came from (file, line,
// column, or the `--set` override that produced it), so configuration errors can point at
// the exact spot even after `base:` files were merged and overrides applied.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace pneumo::core {

struct SourceLocation {
  std::string source;  // a file path, or "--set key=value" for a command-line override
  int line = 0;        // 1-based; 0 when the source has no lines (overrides, defaults)
  int column = 0;      // 1-based

  // "configs/demo.yaml:12:5", "[--set train.epochs=3]", or "(default)" when unknown.
  std::string str() const;
};

struct ConfigEntry;

class ConfigNode {
 public:
  enum class Kind { kNull, kScalar, kSequence, kMap };

  ConfigNode() = default;
  static ConfigNode null(SourceLocation where = {});
  static ConfigNode scalar(std::string text, SourceLocation where = {});
  static ConfigNode sequence(SourceLocation where = {});
  static ConfigNode map(SourceLocation where = {});

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::kNull; }
  bool is_scalar() const { return kind_ == Kind::kScalar; }
  bool is_sequence() const { return kind_ == Kind::kSequence; }
  bool is_map() const { return kind_ == Kind::kMap; }
  // "null", "a value", "a list", "a section": for error messages.
  const char* kind_name() const;

  const SourceLocation& where() const { return where_; }
  void set_where(SourceLocation where) { where_ = std::move(where); }
  const std::string& text() const { return text_; }  // scalars only

  // Sequence items (sequences only).
  const std::vector<ConfigNode>& items() const { return items_; }
  std::vector<ConfigNode>& items() { return items_; }
  void append(ConfigNode item);

  // Map entries in document order (maps only).
  const std::vector<ConfigEntry>& entries() const { return entries_; }
  std::vector<ConfigEntry>& entries() { return entries_; }
  const ConfigNode* find(std::string_view key) const;
  ConfigNode* find(std::string_view key);
  // Replaces the value of `key`, or appends the entry if the key is new.
  ConfigNode& set(std::string key, ConfigNode value, SourceLocation key_where = {});
  bool erase(std::string_view key);

  // A description printed as a comment when the node is written back as YAML.
  const std::string& doc() const { return doc_; }
  void set_doc(std::string doc) { doc_ = std::move(doc); }

 private:
  Kind kind_ = Kind::kNull;
  SourceLocation where_;
  std::string text_;
  std::vector<ConfigNode> items_;
  std::vector<ConfigEntry> entries_;
  std::string doc_;
};

struct ConfigEntry {
  std::string key;
  SourceLocation key_where;
  ConfigNode value;
};

// Parses YAML text; `source` names it in error messages. Syntax errors and duplicate keys
// throw ConfigError with the location.
ConfigNode parse_yaml(std::string_view text, const std::string& source);

// Reads a YAML file. A top-level `base: other.yaml` (or a list of files) is resolved relative
// to the file, loaded first and deep-merged under it; `base` chains may nest, cycles are errors.
ConfigNode load_yaml_file(const std::filesystem::path& file);

// Deep merge: maps merge key by key (recursively); any other value in `overlay` replaces the
// one in `base`.
void merge_into(ConfigNode& base, const ConfigNode& overlay);

// Applies one `key.path=value` override. The value is parsed as YAML, so `3`, `vgg19`,
// `[0.5, 1]` and `{p: 0.5}` all work. Missing sections are created; a numeric path element
// indexes a list.
void apply_override(ConfigNode& root, std::string_view assignment);

// load_yaml_file, then every override in order.
ConfigNode load_config(const std::filesystem::path& file,
                       const std::vector<std::string>& overrides = {});

// Writes the tree as block YAML; with `with_docs`, node docs become trailing comments.
std::string to_yaml(const ConfigNode& node, bool with_docs = false);

}  // namespace pneumo::core
