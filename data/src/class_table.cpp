#include "pneumo/data/class_table.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"
#include "pneumo/core/log.h"
#include "pneumo/data/image_io.h"

namespace pneumo::data {

namespace fs = std::filesystem;

namespace {

constexpr float kIgnored = std::numeric_limits<float>::quiet_NaN();

std::string trim(const std::string& s) {
  const size_t first = s.find_first_not_of(" \t\r");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t\r") - first + 1);
}

// A table's non-empty lines after the header, each with its 1-based line number.
struct CsvText {
  std::vector<std::string> header;
  std::vector<std::pair<int, std::vector<std::string>>> rows;

  int column(std::initializer_list<const char*> names) const {
    for (const char* name : names)
      for (size_t c = 0; c < header.size(); ++c)
        if (header[c] == name) return static_cast<int>(c);
    return -1;
  }
};

CsvText read_csv_text(const fs::path& file) {
  const std::string text = core::read_text_file(file);
  CsvText csv;
  size_t start = text.rfind("\xEF\xBB\xBF", 0) == 0 ? 3 : 0;
  for (int line = 1; start < text.size(); ++line) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string row = trim(text.substr(start, end - start));
    start = end + 1;
    if (row.empty()) continue;
    std::vector<std::string> fields = split_csv_line(row);
    for (std::string& f : fields) f = trim(f);
    if (csv.header.empty())
      csv.header = std::move(fields);
    else
      csv.rows.emplace_back(line, std::move(fields));
  }
  if (csv.header.empty()) throw core::DataError(fmt::format("{}: empty; expected a CSV table with a header", file.string()));
  return csv;
}

TableFormat detect_format(const CsvText& csv) {
  if (csv.column({"Finding Labels"}) >= 0) return TableFormat::kChestXray14;
  if (csv.column({"Path"}) >= 0 && csv.column({"Frontal/Lateral"}) >= 0) return TableFormat::kChexpert;
  return TableFormat::kGeneric;
}

TableFormat format_named(const std::string& name, const CsvText& csv) {
  if (name == "auto") return detect_format(csv);
  if (name == "generic") return TableFormat::kGeneric;
  if (name == "chestxray14") return TableFormat::kChestXray14;
  if (name == "chexpert") return TableFormat::kChexpert;
  throw core::ConfigError(fmt::format("data.table_format: '{}'; expected auto, generic, chestxray14 or chexpert", name));
}

const std::string& field(const std::vector<std::string>& row, int column) {
  static const std::string empty;
  return column >= 0 && static_cast<size_t>(column) < row.size() ? row[static_cast<size_t>(column)] : empty;
}

// The chosen classes (or `available` when none are asked for), each checked against the table.
std::vector<std::string> choose_classes(const std::vector<std::string>& asked, const std::vector<std::string>& available,
                                        const fs::path& file, TableFormat format) {
  if (asked.empty()) return available;
  std::unordered_set<std::string> seen;
  for (const std::string& name : asked) {
    if (std::find(available.begin(), available.end(), name) == available.end())
      throw core::DataError(fmt::format("data.classes: '{}' is not a class of {} ({} table); its classes: {}", name,
                                        file.string(), table_format_name(format), fmt::join(available, ", ")));
    if (!seen.insert(name).second)
      throw core::DataError(fmt::format("data.classes: '{}' named twice", name));
  }
  return asked;
}

// What the uncertain cells of each chosen class become.
std::vector<CellPolicy> uncertain_policies(const ClassTableOptions& options, const std::vector<std::string>& classes) {
  std::vector<CellPolicy> policies(classes.size(), options.uncertain);
  for (const auto& [name, policy] : options.uncertain_by_class) {
    const auto it = std::find(classes.begin(), classes.end(), name);
    if (it == classes.end())
      throw core::DataError(fmt::format("data.uncertain_by_class: '{}' is not one of the chosen classes ({})", name,
                                        fmt::join(classes, ", ")));
    policies[static_cast<size_t>(it - classes.begin())] = policy;
  }
  return policies;
}

float policy_value(CellPolicy policy) {
  switch (policy) {
    case CellPolicy::kOnes: return 1.0f;
    case CellPolicy::kZeros: return 0.0f;
    case CellPolicy::kIgnore: break;
  }
  return kIgnored;
}

// One cell of a class column: 1, 0, -1 (uncertain) or blank.
float cell_target(const std::string& text, CellPolicy uncertain, CellPolicy blank, const fs::path& file, int line,
                  const std::string& column) {
  if (text.empty()) return policy_value(blank);
  if (text == "1" || text == "1.0") return 1.0f;
  if (text == "0" || text == "0.0") return 0.0f;
  if (text == "-1" || text == "-1.0") return policy_value(uncertain);
  throw core::DataError(fmt::format("{}:{}: column '{}' holds '{}'; expected 1, 0, -1 (uncertain) or blank",
                                    file.string(), line, column, text));
}

std::string id_of_path(const fs::path& path) {
  fs::path without = path;
  without.replace_extension();
  return without.generic_string();
}

// CheXpert's patient is the `patientNNNNN` folder of the path.
std::string patient_in_path(const fs::path& path) {
  for (const fs::path& part : path)
    if (part.string().rfind("patient", 0) == 0) return part.string();
  return "";
}

std::unordered_set<std::string> read_split_list(const fs::path& file) {
  std::unordered_set<std::string> ids;
  const std::string text = core::read_text_file(file);
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string name = trim(text.substr(start, end - start));
    start = end + 1;
    if (!name.empty()) ids.insert(fs::path(name).stem().string());
  }
  if (ids.empty()) throw core::DataError(fmt::format("{}: names no image; expected one file name per line", file.string()));
  return ids;
}

// The table's layout: which columns hold the id or path, the patient and each class.
struct Layout {
  int id = -1, path = -1, patient = -1, findings = -1;
  std::vector<std::string> available;  // class columns (or ChestX-ray14's findings)
  std::vector<int> columns;            // per chosen class: its column (-1 for findings tables)
};

Layout layout_of(const CsvText& csv, TableFormat format, const fs::path& file) {
  Layout l;
  const auto require = [&](int column, const char* what) {
    if (column < 0)
      throw core::DataError(fmt::format("{}: no {} column for a {} table; its header: {}", file.string(), what,
                                        table_format_name(format), fmt::join(csv.header, ",")));
    return column;
  };
  std::vector<int> skip;
  switch (format) {
    case TableFormat::kChestXray14:
      l.id = require(csv.column({"Image Index"}), "'Image Index'");
      l.findings = require(csv.column({"Finding Labels"}), "'Finding Labels'");
      l.patient = csv.column({"Patient ID"});
      l.available = chestxray14_classes();
      return l;
    case TableFormat::kChexpert:
      l.path = require(csv.column({"Path"}), "'Path'");
      skip = {l.path, csv.column({"Sex"}), csv.column({"Age"}), csv.column({"Frontal/Lateral"}), csv.column({"AP/PA"})};
      break;
    case TableFormat::kGeneric:
      l.id = csv.column({"id", "ImageId", "image_id"});
      if (l.id < 0) l.path = require(csv.column({"path", "Path"}), "'id' (or 'ImageId') or 'path'");
      l.patient = csv.column({"patient", "PatientID", "patient_id", "Patient ID"});
      skip = {l.id, l.path, l.patient};
      break;
  }
  for (size_t c = 0; c < csv.header.size(); ++c)
    if (std::find(skip.begin(), skip.end(), static_cast<int>(c)) == skip.end() && !csv.header[c].empty())
      l.available.push_back(csv.header[c]);
  if (l.available.empty())
    throw core::DataError(fmt::format("{}: no class columns; its header: {}", file.string(), fmt::join(csv.header, ",")));
  std::unordered_set<std::string> seen;
  for (const std::string& name : l.available)
    if (!seen.insert(name).second)
      throw core::DataError(fmt::format("{}: column '{}' twice in the header; expected one column per class",
                                        file.string(), name));
  return l;
}

// ChestX-ray14's `Finding Labels`: findings joined by '|', or `No Finding`.
std::vector<float> finding_targets(const std::string& text, const std::vector<std::string>& classes,
                                   const fs::path& file, int line) {
  std::vector<float> targets(classes.size(), 0.0f);
  if (text == "No Finding") return targets;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('|', start);
    if (end == std::string::npos) end = text.size();
    const std::string finding = trim(text.substr(start, end - start));
    start = end + 1;
    const auto& known = chestxray14_classes();
    if (std::find(known.begin(), known.end(), finding) == known.end())
      throw core::DataError(fmt::format("{}:{}: finding '{}' in 'Finding Labels' '{}'; expected 'No Finding' or "
                                        "findings joined by '|' from: {}",
                                        file.string(), line, finding, text, fmt::join(known, ", ")));
    const auto it = std::find(classes.begin(), classes.end(), finding);
    if (it != classes.end()) targets[static_cast<size_t>(it - classes.begin())] = 1.0f;
  }
  return targets;
}

}  // namespace

const std::vector<std::string>& chestxray14_classes() {
  static const std::vector<std::string> names{"Atelectasis",  "Cardiomegaly", "Effusion",      "Infiltration",
                                              "Mass",         "Nodule",       "Pneumonia",     "Pneumothorax",
                                              "Consolidation", "Edema",       "Emphysema",     "Fibrosis",
                                              "Pleural_Thickening", "Hernia"};
  return names;
}

const char* table_format_name(TableFormat format) {
  switch (format) {
    case TableFormat::kChestXray14: return "chestxray14";
    case TableFormat::kChexpert: return "chexpert";
    case TableFormat::kGeneric: break;
  }
  return "generic";
}

CellPolicy cell_policy(const std::string& name) {
  if (name == "ones") return CellPolicy::kOnes;
  if (name == "zeros") return CellPolicy::kZeros;
  if (name == "ignore") return CellPolicy::kIgnore;
  throw core::ConfigError(fmt::format("'{}': expected ones, zeros or ignore", name));
}

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        fields.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else {
      fields.back() += c;
    }
  }
  return fields;
}

ClassTable ClassTable::read(const fs::path& file, const ClassTableOptions& options) {
  const CsvText csv = read_csv_text(file);
  ClassTable table;
  table.source_ = file;
  table.format_ = format_named(options.format, csv);
  Layout layout = layout_of(csv, table.format_, file);
  table.classes_ = choose_classes(options.classes, layout.available, file, table.format_);
  for (const std::string& name : table.classes_)
    layout.columns.push_back(layout.findings >= 0 ? -1 : csv.column({name.c_str()}));
  const std::vector<CellPolicy> uncertain = uncertain_policies(options, table.classes_);

  std::unordered_set<std::string> split;
  if (!options.split_list.empty()) split = read_split_list(options.split_list);
  int needed = std::max({layout.id, layout.path, layout.patient, layout.findings});
  for (int column : layout.columns) needed = std::max(needed, column);
  std::unordered_map<std::string, int> line_of;
  for (const auto& [line, row] : csv.rows) {
    if (static_cast<int>(row.size()) <= needed)  // a cut row must not read as blanks
      throw core::DataError(fmt::format("{}:{}: {} fields; expected at least {} ('{}' is column {} of the header)",
                                        file.string(), line, row.size(), needed + 1, csv.header[needed], needed + 1));
    ClassRow r;
    r.line = line;
    if (layout.id >= 0) {
      const std::string& id = field(row, layout.id);
      if (id.empty()) throw core::DataError(fmt::format("{}:{}: empty '{}'", file.string(), line, csv.header[layout.id]));
      r.image_id = is_image_file(id) ? fs::path(id).stem().string() : id;  // "00000001_000.png" -> its stem
    } else {
      r.path = field(row, layout.path);
      if (r.path.empty()) throw core::DataError(fmt::format("{}:{}: empty '{}'", file.string(), line, csv.header[layout.path]));
      r.image_id = id_of_path(r.path);
    }
    if (!split.empty() && split.count(r.image_id) == 0) continue;
    r.patient = layout.patient >= 0 ? field(row, layout.patient)
                                    : table.format_ == TableFormat::kChexpert ? patient_in_path(r.path) : "";
    if (layout.findings >= 0) {
      r.targets = finding_targets(field(row, layout.findings), table.classes_, file, line);
    } else {
      for (size_t k = 0; k < table.classes_.size(); ++k)
        r.targets.push_back(cell_target(field(row, layout.columns[k]), uncertain[k], options.blank, file, line,
                                        table.classes_[k]));
    }
    const auto [it, fresh] = line_of.emplace(r.image_id, line);
    if (!fresh)
      throw core::DataError(fmt::format("{}:{}: image '{}' already on line {}; expected one row per image",
                                        file.string(), line, r.image_id, it->second));
    table.rows_.push_back(std::move(r));
  }
  if (!split.empty()) {
    if (table.rows_.empty())
      throw core::DataError(fmt::format("{}: none of its {} images is a row of {}", options.split_list.string(),
                                        split.size(), file.string()));
    if (table.rows_.size() < split.size())
      core::log::warn("{}: {} of its {} images are not rows of {}", options.split_list.string(),
                      split.size() - table.rows_.size(), split.size(), file.string());
  }
  if (table.rows_.empty()) throw core::DataError(fmt::format("{}: no rows after the header", file.string()));
  return table;
}

}  // namespace pneumo::data
