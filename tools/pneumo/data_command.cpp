// `pneumo data check CONFIG`: index the experiment's data, draw its folds, load every image
// and mask once (filling the preprocessing cache) and report everything that does not fit.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <chrono>
#include <memory>
#include <cmath>
#include <map>
#include <set>
#include <mutex>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.h"
#include "pneumo/train/experiment.h"
#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/core/progress.h"
#include "pneumo/core/runtime.h"
#include "pneumo/data/folds.h"

namespace pneumo::tools {

namespace {

struct CheckOptions {
  std::string file;
  std::vector<std::string> overrides;
  std::string folds_out;
  bool load = true;
  int list = 10;
};

template <class T>
void print_list(const char* title, const std::vector<T>& items, int limit) {
  if (items.empty()) return;
  fmt::print("{} ({}):\n", title, items.size());
  const size_t shown = std::min(items.size(), static_cast<size_t>(std::max(limit, 0)));
  for (size_t i = 0; i < shown; ++i) {
    if constexpr (std::is_same_v<T, std::filesystem::path>)
      fmt::print("  {}\n", items[i].string());
    else
      fmt::print("  {}\n", items[i]);
  }
  if (shown < items.size()) fmt::print("  ... and {} more (--list N shows more)\n", items.size() - shown);
}

struct LoadFailure {
  int64_t index;
  std::string reason;
};

// Loads every sample on `threads` threads; returns the failures in index order.
std::vector<LoadFailure> load_all(const data::Dataset& dataset, int threads) {
  std::atomic<int64_t> next{0}, done{0};
  std::mutex mutex;
  std::vector<LoadFailure> failures;
  auto work = [&] {
    for (int64_t i = next++; i < dataset.size(); i = next++) {
      try {
        dataset.load(i);
      } catch (const core::Error& e) {
        std::lock_guard<std::mutex> lock(mutex);
        failures.push_back({i, e.what()});
      }
      ++done;
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(threads, 1); ++t) pool.emplace_back(work);
  core::Progress progress("load", dataset.size());
  while (progress.done() < dataset.size()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    progress.advance(done.load() - progress.done());
  }
  for (std::thread& t : pool) t.join();
  progress.finish();
  std::sort(failures.begin(), failures.end(),
            [](const LoadFailure& a, const LoadFailure& b) { return a.index < b.index; });
  return failures;
}

// A class table's classes with their positive, negative and ignored targets.
void print_classes(const data::DataSection& section, const data::Dataset& dataset) {
  const auto& classes = dataset.classes();
  fmt::print("table: {} ({} rows, {} classes)\n", section.table, dataset.size(), classes.size());
  for (size_t c = 0; c < classes.size(); ++c) {
    int64_t positive = 0, ignored = 0;
    for (const data::IndexEntry& e : dataset.index().entries) {
      positive += e.targets[c] == 1.0f ? 1 : 0;
      ignored += std::isnan(e.targets[c]) ? 1 : 0;
    }
    fmt::print("  {:<20} {} positive, {} negative, {} ignored\n", classes[c], positive,
               dataset.size() - positive - ignored, ignored);
  }
}

// Where the masks came from, what was indexed, and the mismatches.
void print_sources(const data::DataSection& section, const data::Dataset& dataset, int list) {
  const data::DatasetIndex& index = dataset.index();
  if (!dataset.has_masks()) print_classes(section, dataset);
  else if (const auto* labels = dynamic_cast<const data::LabelTable*>(&dataset.masks()))
    fmt::print("labels: {} ({} rows, {} images)\n", section.labels, labels->row_count(), labels->image_ids().size());
  else if (const auto* folder = dynamic_cast<const data::MaskFolder*>(&dataset.masks()))
    fmt::print("masks: {} ({} images without a mask{})\n", section.masks, folder->missing_masks(),
               folder->missing_masks() > 0 ? ", taken as negatives" : "");
  fmt::print("images: {} ({} image files)\n", section.images, index.files_scanned);
  fmt::print("indexed: {} images, {} positive ({:.1f}%)\n", index.entries.size(),
             index.positive_count(), 100.0 * index.positive_count() / index.entries.size());
  print_list(section.masks.empty() ? "labels without an image" : "masks without an image", index.labels_without_image,
             list);
  print_list("images without labels", index.images_without_label, list);
}

// Patients per fold when the index knows them (data.group_by: patient, or a class table that
// names them), counting each patient in every fold that holds one of its images, and saying how
// many patients are in more than one fold (none with group_by: patient). Empty when patients
// are unknown.
std::vector<int64_t> patients_per_fold(const data::DatasetIndex& index, const std::vector<int>& folds, int k) {
  if (index.entries.empty() || index.entries.front().patient.empty()) return {};
  std::map<std::string, std::set<int>> folds_of;
  for (size_t i = 0; i < folds.size(); ++i) folds_of[index.entries[i].patient].insert(folds[i]);
  std::vector<int64_t> count(static_cast<size_t>(k), 0);
  int64_t split = 0;
  for (const auto& [patient, in] : folds_of) {
    for (int f : in) ++count[static_cast<size_t>(f)];
    split += in.size() > 1 ? 1 : 0;
  }
  if (split == 0)
    fmt::print("patients: {}, each in one fold\n", folds_of.size());
  else
    fmt::print("patients: {}, {} of them in more than one fold (data.group_by: patient keeps them together)\n",
               folds_of.size(), split);
  return count;
}

void run_check(const CheckOptions& options) {
  const train::ExperimentConfig config = train::load_experiment(options.file, options.overrides);
  const data::DataSection& section = config.data;
  data::validate(section);
  const data::Dataset dataset = data::open_dataset(section);
  const data::DatasetIndex& index = dataset.index();
  print_sources(section, dataset, options.list);

  const auto seed = static_cast<uint64_t>(config.experiment.seed);
  const std::vector<int> folds = data::assign_folds(section, index, seed);
  fmt::print("folds: {} ({}), validation fold {}\n", section.folds,
             section.folds_file.empty() ? fmt::format("stratified, seed {}", seed)
                                        : "from " + section.folds_file,
             section.fold);
  std::vector<int64_t> fold_size(section.folds, 0), fold_positive(section.folds, 0);
  for (size_t i = 0; i < folds.size(); ++i) {
    ++fold_size[folds[i]];
    fold_positive[folds[i]] += index.entries[i].positive ? 1 : 0;
  }
  const std::vector<int64_t> patients = patients_per_fold(index, folds, section.folds);
  for (int f = 0; f < section.folds; ++f)
    fmt::print("  fold {}: {} images, {} positive{}\n", f, fold_size[f], fold_positive[f],
               patients.empty() ? "" : fmt::format(", {} patients", patients[f]));
  if (!options.folds_out.empty()) {
    data::write_folds_csv(options.folds_out, index, folds);
    fmt::print("wrote {}\n", options.folds_out);
  }

  const data::FoldSplit split = data::split_by_fold(folds, section.fold);
  std::vector<bool> positive;
  for (int64_t i : split.train) positive.push_back(index.entries[i].positive);
  const data::EpochSampler sampler(split.train, positive, data::negative_share_schedule(section), seed);
  if (section.negative_share.empty()) {
    fmt::print("training epoch: all {} training images\n", split.train.size());
  } else {
    for (const data::NegativeSharePoint& p : section.negative_share)
      fmt::print("training epoch {}: {} images (negative share {:.2f})\n", p.epoch,
                 sampler.size(p.epoch), p.share);
  }

  if (!options.load) return;
  const data::Preprocessor& preprocessor = dataset.preprocessor();
  fmt::print("cache: {}\n", preprocessor.cache_folder().empty() ? std::string("off")
                                                               : preprocessor.cache_folder().string());
  std::fflush(stdout);  // the report so far comes before the progress lines on stderr
  // Nothing else runs meanwhile: auto loads on every core.
  const std::vector<LoadFailure> failures = load_all(dataset, data::worker_count(section, core::hardware_threads()));
  const data::CacheCounts counts = preprocessor.counts();
  fmt::print("loaded: {} ok, {} failed ({} decoded, {} from cache, {} cache entries written)\n",
             dataset.size() - static_cast<int64_t>(failures.size()), failures.size(),
             counts.decodes, counts.hits, counts.writes);
  if (failures.empty()) return;
  std::vector<std::string> lines;
  for (const LoadFailure& f : failures) lines.push_back(f.reason);
  print_list("failed", lines, options.list);
  throw core::DataError(fmt::format("{} of {} images could not be loaded (listed above)",
                                    failures.size(), dataset.size()));
}

}  // namespace

void setup_data(CLI::App& app) {
  CLI::App* data_cmd = app.add_subcommand("data", "Inspect an experiment's data");
  data_cmd->require_subcommand(1);

  auto options = std::make_shared<CheckOptions>();
  CLI::App* check = data_cmd->add_subcommand(
      "check",
      "Index images and labels, draw the folds, load every image and mask once (warming the "
      "cache) and report mismatches and unreadable files; exit 1 if any file fails");
  check->add_option("file", options->file, "experiment YAML file")->required();
  check->add_option("--set", options->overrides, "override a value: key.path=value (repeatable)");
  check->add_option("--folds-out", options->folds_out, "write the folds as CSV (ImageId,fold,positive)");
  check->add_option("--list", options->list, "how many items of each list to print")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  check->add_flag("!--no-load", options->load, "skip loading the images (index and folds only)");
  check->callback([options] { run_check(*options); });
}

}  // namespace pneumo::tools
