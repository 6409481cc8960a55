#include "pneumo/data/dataset_index.h"

#include <algorithm>
#include <cctype>
#include <unordered_map>

#include <fmt/format.h>

#include "pneumo/core/error.h"
#include "pneumo/data/image_io.h"

namespace pneumo::data {

namespace fs = std::filesystem;

namespace {

std::vector<fs::path> find_image_files(const fs::path& image_dir) {
  std::error_code ec;
  if (!fs::is_directory(image_dir, ec))
    throw core::DataError(fmt::format("{}: image folder not found{}", image_dir.string(),
                                      fs::exists(image_dir, ec) ? " (it is not a folder)" : ""));
  std::vector<fs::path> files;
  fs::recursive_directory_iterator it(
      image_dir, fs::directory_options::follow_directory_symlink |
                     fs::directory_options::skip_permission_denied, ec);
  if (ec) throw core::DataError(fmt::format("{}: cannot list: {}", image_dir.string(), ec.message()));
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) throw core::DataError(fmt::format("{}: cannot list: {}", image_dir.string(), ec.message()));
    if (it->is_regular_file(ec) && is_image_file(it->path())) files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());  // directory order differs between file systems
  return files;
}

// Image id -> file; two files with one id are an error naming both.
std::unordered_map<std::string, fs::path> files_by_id(const std::vector<fs::path>& files, const fs::path& image_dir) {
  std::unordered_map<std::string, fs::path> file_of;
  for (const fs::path& file : files) {
    auto [it, inserted] = file_of.emplace(file.stem().string(), file);
    if (!inserted)
      throw core::DataError(fmt::format("{}: ImageId '{}' found twice: {} and {}", image_dir.string(),
                                        file.stem().string(), it->second.string(), file.string()));
  }
  return file_of;
}

}  // namespace

int64_t DatasetIndex::positive_count() const {
  return std::count_if(entries.begin(), entries.end(), [](const IndexEntry& e) { return e.positive; });
}

std::vector<bool> DatasetIndex::positives() const {
  std::vector<bool> out;
  out.reserve(entries.size());
  for (const IndexEntry& e : entries) out.push_back(e.positive);
  return out;
}

std::vector<int> DatasetIndex::strata() const {
  const bool classes = !entries.empty() && !entries.front().targets.empty();
  if (!classes) {
    std::vector<int> out;
    for (const IndexEntry& e : entries) out.push_back(e.positive ? 0 : 1);
    return out;
  }
  const size_t k = entries.front().targets.size();
  std::vector<int64_t> count(k, 0);
  for (const IndexEntry& e : entries)
    for (size_t c = 0; c < k; ++c) count[c] += e.targets[c] == 1.0f ? 1 : 0;
  std::vector<size_t> by_rarity(k);
  for (size_t c = 0; c < k; ++c) by_rarity[c] = c;
  std::stable_sort(by_rarity.begin(), by_rarity.end(), [&](size_t a, size_t b) { return count[a] < count[b]; });
  std::vector<int> rank(k);
  for (size_t r = 0; r < k; ++r) rank[by_rarity[r]] = static_cast<int>(r);
  std::vector<int> out;
  for (const IndexEntry& e : entries) {
    int stratum = static_cast<int>(k);
    for (size_t c = 0; c < k; ++c)
      if (e.targets[c] == 1.0f) stratum = std::min(stratum, rank[c]);
    out.push_back(stratum);
  }
  return out;
}

int DatasetIndex::strata_count() const {
  return entries.empty() || entries.front().targets.empty() ? 2 : static_cast<int>(entries.front().targets.size()) + 1;
}

DatasetIndex build_dataset_index(const LabelTable& labels, const fs::path& image_dir) {
  const std::vector<fs::path> files = find_image_files(image_dir);
  DatasetIndex index;
  index.files_scanned = static_cast<int64_t>(files.size());
  const std::unordered_map<std::string, fs::path> file_of = files_by_id(files, image_dir);
  for (const fs::path& file : files)
    if (!labels.contains(file.stem().string())) index.images_without_label.push_back(file);
  for (const std::string& id : labels.image_ids()) {
    auto it = file_of.find(id);
    if (it == file_of.end()) {
      index.labels_without_image.push_back(id);
      continue;
    }
    index.entries.push_back({id, it->second, labels.is_positive(id), "", {}});
  }
  if (index.entries.empty())
    throw core::DataError(fmt::format(
        "{}: none of the {} ImageIds of {} has an image file here (.dcm, .png, .jpg or .jpeg; {} found)",
        image_dir.string(), labels.image_ids().size(), labels.source().string(), files.size()));
  return index;
}

std::vector<std::string> image_ids_in(const fs::path& image_dir) {
  const std::vector<fs::path> files = find_image_files(image_dir);
  std::vector<std::string> ids;
  for (const auto& [id, file] : files_by_id(files, image_dir)) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

DatasetIndex build_dataset_index(const MaskFolder& masks, const fs::path& image_dir) {
  const std::vector<fs::path> files = find_image_files(image_dir);
  files_by_id(files, image_dir);  // the duplicate check
  if (files.empty())
    throw core::DataError(fmt::format("{}: no image files here (.dcm, .png, .jpg or .jpeg)", image_dir.string()));
  DatasetIndex index;
  index.files_scanned = static_cast<int64_t>(files.size());
  for (const fs::path& file : files) {
    const std::string id = file.stem().string();
    index.entries.push_back({id, file, masks.is_positive(id), "", {}});
  }
  index.labels_without_image = masks.masks_without_image();
  return index;
}

namespace {

IndexEntry table_entry(const ClassRow& row, fs::path file) {
  IndexEntry e;
  e.image_id = row.image_id;
  e.file = std::move(file);
  e.patient = row.patient;
  e.targets = row.targets;
  e.positive = std::find(row.targets.begin(), row.targets.end(), 1.0f) != row.targets.end();
  return e;
}

}  // namespace

DatasetIndex build_dataset_index(const ClassTable& table, const fs::path& image_dir) {
  DatasetIndex index;
  const bool by_path = !table.rows().empty() && !table.rows().front().path.empty();
  if (by_path) {
    std::error_code ec;
    if (!fs::is_directory(image_dir, ec))
      throw core::DataError(fmt::format("{}: image folder not found", image_dir.string()));
    const fs::path beside = table.source().parent_path();
    for (const ClassRow& row : table.rows()) {
      fs::path file = image_dir / row.path;
      if (!fs::is_regular_file(file, ec)) file = beside / row.path;
      if (!fs::is_regular_file(file, ec))
        throw core::DataError(fmt::format("{}:{}: image '{}' not found as {} or {}", table.source().string(), row.line,
                                          row.path.string(), (image_dir / row.path).string(), file.string()));
      index.entries.push_back(table_entry(row, std::move(file)));
    }
    index.files_scanned = static_cast<int64_t>(index.entries.size());
    return index;
  }
  const std::vector<fs::path> files = find_image_files(image_dir);
  index.files_scanned = static_cast<int64_t>(files.size());
  const std::unordered_map<std::string, fs::path> file_of = files_by_id(files, image_dir);
  for (const ClassRow& row : table.rows()) {
    const auto it = file_of.find(row.image_id);
    if (it == file_of.end())
      throw core::DataError(fmt::format("{}:{}: no image file for '{}' under {} (.dcm, .png, .jpg or .jpeg; {} found)",
                                        table.source().string(), row.line, row.image_id, image_dir.string(),
                                        files.size()));
    index.entries.push_back(table_entry(row, it->second));
  }
  return index;
}

}  // namespace pneumo::data
