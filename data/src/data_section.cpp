#include "pneumo/data/data_section.h"

#include <charconv>

#include <fmt/format.h>

#include "pneumo/core/error.h"
#include "pneumo/data/folds.h"

namespace pneumo::data {

void validate(const DataSection& data) {
  if (data.labels.empty())
    throw core::ConfigError("data.labels: required; expected the label CSV (ImageId,EncodedPixels)");
  if (data.images.empty())
    throw core::ConfigError("data.images: required; expected the folder holding <ImageId>.dcm files");
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

Dataset open_dataset(const DataSection& data) {
  validate(data);
  LabelTable labels = LabelTable::read_csv(data.labels);
  DatasetIndex index = build_dataset_index(labels, data.images);
  return Dataset(std::move(labels), std::move(index), Preprocessor(preprocess_options(data)));
}

std::vector<int> assign_folds(const DataSection& data, const DatasetIndex& index, uint64_t seed) {
  if (!data.folds_file.empty()) return read_folds_csv(data.folds_file, index, data.folds);
  return stratified_folds(index.positives(), data.folds, seed);
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
