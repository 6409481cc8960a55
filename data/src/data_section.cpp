#include "pneumo/data/data_section.h"

#include <charconv>
#include <unordered_map>

#include <fmt/format.h>

#include "pneumo/core/error.h"
#include "pneumo/data/folds.h"
#include "pneumo/data/image_io.h"

namespace pneumo::data {

namespace {

// One data.uncertain_by_class entry, `Class=ones|zeros|ignore`. Throws ConfigError naming it.
std::pair<std::string, CellPolicy> uncertain_entry(const std::string& entry) {
  const size_t eq = entry.find('=');
  if (eq == std::string::npos || eq == 0)
    throw core::ConfigError(fmt::format("data.uncertain_by_class: '{}'; expected Class=ones|zeros|ignore", entry));
  try {
    return {entry.substr(0, eq), cell_policy(entry.substr(eq + 1))};
  } catch (const core::ConfigError& e) {
    throw core::ConfigError(fmt::format("data.uncertain_by_class: '{}': {}", entry, e.what()));
  }
}

// The table-only keys are refused without a table, so that a typo does not go unnoticed.
void check_table_keys(const DataSection& data) {
  if (!data.table.empty()) {
    for (const std::string& entry : data.uncertain_by_class) uncertain_entry(entry);
    return;
  }
  const DataSection defaults;
  const std::pair<const char*, bool> table_only[] = {
      {"table_format", data.table_format != defaults.table_format}, {"classes", !data.classes.empty()},
      {"uncertain", data.uncertain != defaults.uncertain}, {"uncertain_by_class", !data.uncertain_by_class.empty()},
      {"blank", data.blank != defaults.blank}, {"split_list", !data.split_list.empty()}};
  for (const auto& [key, set] : table_only)
    if (set) throw core::ConfigError(fmt::format("data.{}: read only with data.table (an image-level class table)", key));
}

}  // namespace

void validate(const DataSection& data) {
  const int sources = !data.labels.empty() + !data.masks.empty() + !data.table.empty();
  if (sources == 0)
    throw core::ConfigError("data.labels: required; expected the label CSV (ImageId,EncodedPixels), data.masks: "
                            "a folder of <ImageId>.png masks, or data.table: an image-level class table");
  if (sources > 1)
    throw core::ConfigError(fmt::format("data.labels: '{}', data.masks: '{}' and data.table: '{}': expected one source "
                                        "of labels (set the others to \"\")",
                                        data.labels, data.masks, data.table));
  check_table_keys(data);
  if (!data.patients.empty() && data.group_by != "patient")
    throw core::ConfigError(fmt::format("data.patients: '{}' is read only with data.group_by: patient (now '{}')",
                                        data.patients, data.group_by));
  if (data.images.empty())
    throw core::ConfigError("data.images: required; expected the folder holding the <ImageId>.dcm/.png/.jpg files");
  if (data.fold >= data.folds)
    throw core::ConfigError(fmt::format("data.fold: {} is not a fold of data.folds = {}; expected 0..{}",
                                        data.fold, data.folds, data.folds - 1));
  for (const auto* values : {&data.mean, &data.std}) {
    const char* key = values == &data.mean ? "data.mean" : "data.std";
    if (values->size() != 1 && values->size() != static_cast<size_t>(data.channels))
      throw core::ConfigError(fmt::format("{}: {} values; expected 1 or data.channels = {}", key,
                                          values->size(), data.channels));
  }
  for (double s : data.std)
    if (!(s > 0.0)) throw core::ConfigError(fmt::format("data.std: {} must be > 0", s));
  std::vector<SharePoint> points;
  for (const NegativeSharePoint& p : data.negative_share) points.push_back({p.epoch, p.share});
  try {
    NegativeShareSchedule check(std::move(points));
  } catch (const core::ConfigError& e) {
    throw core::ConfigError(std::string("data.") + e.what());
  }
}

PreprocessOptions preprocess_options(const DataSection& data) {
  PreprocessOptions options;
  options.size = data.size;
  options.interpolation = data.interpolation;
  options.window = data.window == "file" ? DicomReadOptions::Window::kFromFile
                                         : DicomReadOptions::Window::kNone;
  options.cache_dir = resolve_cache_dir(data.cache);
  return options;
}

NegativeShareSchedule negative_share_schedule(const DataSection& data) {
  std::vector<SharePoint> points;
  for (const NegativeSharePoint& p : data.negative_share) points.push_back({p.epoch, p.share});
  return NegativeShareSchedule(std::move(points));
}

namespace {

// data.group_by: patient: every entry's patient, from data.patients, the class table or its
// DICOM header.
void read_patients(DatasetIndex& index, const std::string& patients_csv) {
  if (!patients_csv.empty()) {
    const auto patient_of = read_patients_csv(patients_csv);
    for (IndexEntry& e : index.entries) {
      const auto it = patient_of.find(e.image_id);
      if (it == patient_of.end())
        throw core::DataError(fmt::format("{}: no patient for ImageId '{}' (file {}); data.patients must list every "
                                          "image", patients_csv, e.image_id, e.file.string()));
      e.patient = it->second;
    }
    return;
  }
  for (IndexEntry& e : index.entries) {
    if (!e.patient.empty()) continue;  // named by the class table
    if (is_png_or_jpeg(e.file))
      throw core::ConfigError(fmt::format("data.group_by: patient needs each image's patient; {} is not a DICOM file "
                                          "with a PatientID: give data.patients (a CSV of ImageId,PatientID)",
                                          e.file.string()));
    e.patient = read_dicom_patient_id(e.file);
    if (e.patient.empty())
      throw core::DataError(fmt::format("{}: no PatientID (0010,0020) to group by (data.group_by: patient); give "
                                        "data.patients (a CSV of ImageId,PatientID)",
                                        e.file.string()));
  }
}

}  // namespace

ClassTableOptions class_table_options(const DataSection& data) {
  ClassTableOptions options;
  options.format = data.table_format;
  options.classes = data.classes;
  options.uncertain = cell_policy(data.uncertain);
  for (const std::string& entry : data.uncertain_by_class) options.uncertain_by_class.push_back(uncertain_entry(entry));
  options.blank = cell_policy(data.blank);
  options.split_list = data.split_list;
  return options;
}

Dataset open_dataset(const DataSection& data) {
  validate(data);
  std::shared_ptr<const MaskSource> masks;
  DatasetIndex index;
  std::vector<std::string> classes;
  if (!data.table.empty()) {
    const ClassTable table = ClassTable::read(data.table, class_table_options(data));
    index = build_dataset_index(table, data.images);
    classes = table.classes();
  } else if (!data.masks.empty()) {
    auto folder = std::make_shared<const MaskFolder>(
        data.masks, image_ids_in(data.images),
        data.missing_mask == "negative" ? MissingMask::kNegative : MissingMask::kError);
    index = build_dataset_index(*folder, data.images);
    masks = std::move(folder);
  } else {
    auto labels = std::make_shared<const LabelTable>(LabelTable::read_csv(data.labels));
    index = build_dataset_index(*labels, data.images);
    masks = std::move(labels);
  }
  if (data.group_by == "patient") read_patients(index, data.patients);
  return Dataset(std::move(masks), std::move(index), Preprocessor(preprocess_options(data)), std::move(classes));
}

namespace {

// A folds file must keep each patient in one fold when the experiment groups by patient.
void check_patients_kept_together(const DatasetIndex& index, const std::vector<int>& folds) {
  std::unordered_map<std::string, int> fold_of;
  for (size_t i = 0; i < folds.size(); ++i) {
    const auto [it, fresh] = fold_of.emplace(index.entries[i].patient, folds[i]);
    if (!fresh && it->second != folds[i])
      throw core::DataError(fmt::format("patient '{}' has images in folds {} and {} (image {}); the folds file does not "
                                        "keep patients together",
                                        it->first, it->second, folds[i], index.entries[i].image_id));
  }
}

}  // namespace

std::vector<int> assign_folds(const DataSection& data, const DatasetIndex& index, uint64_t seed) {
  if (!data.folds_file.empty()) {
    std::vector<int> folds = read_folds_csv(data.folds_file, index, data.folds);
    if (data.group_by == "patient") check_patients_kept_together(index, folds);
    return folds;
  }
  if (data.group_by == "patient") {
    std::vector<std::string> patients;
    for (const IndexEntry& e : index.entries) patients.push_back(e.patient);
    return grouped_stratified_folds(index.strata(), index.strata_count(), patients, data.folds, seed);
  }
  return stratified_folds(index.strata(), index.strata_count(), data.folds, seed);
}

FoldSplit split_by_fold(const std::vector<int>& folds, int fold) {
  FoldSplit split;
  for (size_t i = 0; i < folds.size(); ++i)
    (folds[i] == fold ? split.validation : split.train).push_back(static_cast<int64_t>(i));
  return split;
}

bool is_worker_count(const std::string& text) {
  if (text == "auto") return true;
  int count = -1;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), count);
  return error == std::errc() && end == text.data() + text.size() && count >= 0 && count <= 256;
}

int worker_count(const DataSection& data, int auto_workers) {
  if (data.workers == "auto") return auto_workers;
  if (!is_worker_count(data.workers))
    throw core::ConfigError(fmt::format("data.workers: '{}'; expected auto or a count 0..256", data.workers));
  return std::stoi(data.workers);
}

LoaderOptions loader_options(const DataSection& data, int auto_workers) {
  LoaderOptions options;
  options.workers = worker_count(data, auto_workers);
  options.prefetch = data.prefetch;
  options.channels = data.channels;
  options.mean = data.mean;
  options.std = data.std;
  return options;
}

}  // namespace pneumo::data
