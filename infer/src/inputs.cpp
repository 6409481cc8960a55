#include "pneumo/infer/inputs.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "pneumo/core/error.h"
#include "pneumo/data/class_table.h"
#include "pneumo/data/dataset_index.h"
#include "pneumo/data/dicom.h"
#include "pneumo/data/image_io.h"
#include "pneumo/data/folds.h"
#include "pneumo/data/labels.h"
#include "pneumo/data/masks.h"
#include "pneumo/train/trainer.h"

namespace pneumo::infer {

namespace fs = std::filesystem;

std::vector<InputFile> collect_inputs(const std::vector<fs::path>& paths) {
  std::vector<fs::path> files;
  for (const fs::path& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      for (auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
           !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
        if (it->is_regular_file(ec) && data::is_image_file(it->path())) files.push_back(it->path());
      if (ec) throw core::IoError(fmt::format("{}: cannot list the folder: {}", p.string(), ec.message()));
    } else if (fs::is_regular_file(p, ec)) {
      if (!data::is_image_file(p))
        throw core::UsageError(fmt::format("{}: not an input image; expected .dcm, .png, .jpg or .jpeg files or folders",
                                           p.string()));
      files.push_back(p);
    } else {
      throw core::UsageError(fmt::format("{}: no such file or folder", p.string()));
    }
  }
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  std::vector<InputFile> inputs;
  std::map<std::string, fs::path> seen;
  for (const fs::path& f : files) {
    const std::string id = f.stem().string();
    if (auto [it, fresh] = seen.emplace(id, f); !fresh)
      throw core::DataError(fmt::format("two inputs have the id '{}': {} and {}; outputs are named by id",
                                        id, it->second.string(), f.string()));
    inputs.push_back({id, f});
  }
  return inputs;
}

LabelledSet labelled_set(const fs::path& labels, const fs::path& images, const fs::path& run) {
  LabelledSet set;
  if (!labels.empty() || !images.empty()) {
    if (labels.empty() || images.empty())
      throw core::UsageError("--labels and --images go together: a label CSV and the folder of its DICOMs");
    auto table = std::make_shared<const data::LabelTable>(data::LabelTable::read_csv(labels));
    const data::DatasetIndex index = data::build_dataset_index(*table, images);
    set.masks = std::move(table);
    if (!index.labels_without_image.empty())
      throw core::DataError(fmt::format("{}: {} labelled image(s) have no image file under {} (first: {})", labels.string(),
                                        index.labels_without_image.size(), images.string(),
                                        index.labels_without_image.front()));
    for (const data::IndexEntry& e : index.entries) set.inputs.push_back({e.image_id, e.file});
    set.description = fmt::format("{} ({} images)", labels.string(), set.inputs.size());
    return set;
  }
  if (run.empty())
    throw core::UsageError("no labelled images: give --labels and --images, or a model inside a run folder to use "
                           "its validation fold");
  const train::ExperimentConfig config = train::load_run_config(run);
  data::DataSection section = config.data;
  section.group_by = "none";  // the folds come from the run's folds.csv: no patient headers to read
  section.patients.clear();
  const data::Dataset dataset = data::open_dataset(section);
  const data::DatasetIndex& index = dataset.index();
  set.masks = dataset.shared_masks();
  set.classes = dataset.classes();
  const std::vector<int> folds = data::read_folds_csv(run / "folds.csv", index, config.data.folds);
  for (size_t i = 0; i < index.entries.size(); ++i) {
    if (folds[i] != config.data.fold) continue;
    const data::IndexEntry& e = index.entries[i];
    set.inputs.push_back({e.image_id, e.file});
    if (!set.classes.empty()) set.targets.emplace(e.image_id, e.targets);
  }
  set.description = fmt::format("validation fold {} of {} ({} images)", config.data.fold, run.string(), set.inputs.size());
  return set;
}

LabelledSet mask_folder_set(const fs::path& masks, const fs::path& images) {
  if (images.empty()) throw core::UsageError("--masks needs --images: the folder holding the masks' images");
  auto folder = std::make_shared<const data::MaskFolder>(masks, data::image_ids_in(images), data::MissingMask::kError);
  const data::DatasetIndex index = data::build_dataset_index(*folder, images);
  LabelledSet set;
  set.masks = std::move(folder);
  for (const data::IndexEntry& e : index.entries) set.inputs.push_back({e.image_id, e.file});
  set.description = fmt::format("{} with the masks of {} ({} images)", images.string(), masks.string(), set.inputs.size());
  return set;
}

LabelledSet class_set(const fs::path& table, const fs::path& images, const fs::path& split_list,
                      const data::DataSection& model_data) {
  if (images.empty()) throw core::UsageError("--table needs --images: the folder holding the table's images");
  if (model_data.classes.empty())
    throw core::UsageError(fmt::format("--table {}: the ensemble has no class-table classifier to evaluate on it "
                                       "(a model trained with data.table)", table.string()));
  data::DataSection section = model_data;
  section.table = table.string();
  section.split_list = split_list.string();
  const data::ClassTable classes = data::ClassTable::read(table, data::class_table_options(section));
  const data::DatasetIndex index = data::build_dataset_index(classes, images);
  LabelledSet set;
  set.classes = classes.classes();
  for (const data::IndexEntry& e : index.entries) {
    set.inputs.push_back({e.image_id, e.file});
    set.targets.emplace(e.image_id, e.targets);
  }
  set.description = fmt::format("{}{} ({} images)", table.string(),
                                split_list.empty() ? "" : " restricted to " + split_list.string(), set.inputs.size());
  return set;
}

}  // namespace pneumo::infer
