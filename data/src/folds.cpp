#include "pneumo/data/folds.h"

#include <algorithm>
#include <charconv>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>

#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"
#include "pneumo/core/random.h"

namespace pneumo::data {

namespace {

constexpr uint64_t kFoldStream = 0x666f6c6473ULL;  // "folds": keeps fold draws apart from others

void shuffle(std::vector<int64_t>& items, core::Rng& rng) {
  for (int64_t i = static_cast<int64_t>(items.size()) - 1; i > 0; --i)
    std::swap(items[i], items[rng.randint(0, i)]);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::vector<int> stratified_folds(const std::vector<bool>& positive, int k, uint64_t seed) {
  if (k < 2) throw core::ConfigError(fmt::format("folds: expected at least 2; got {}", k));
  if (positive.size() < static_cast<size_t>(k))
    throw core::DataError(
        fmt::format("cannot split {} images into {} folds; need at least one per fold",
                    positive.size(), k));
  std::vector<int64_t> groups[2];
  for (size_t i = 0; i < positive.size(); ++i) groups[positive[i] ? 1 : 0].push_back(i);

  std::vector<int> folds(positive.size(), 0);
  int64_t dealt = 0;
  for (int cls : {1, 0}) {  // positives first, negatives continue the round-robin
    core::Rng rng(core::derive_seed(seed, kFoldStream, cls));
    shuffle(groups[cls], rng);
    for (int64_t item : groups[cls]) folds[item] = static_cast<int>(dealt++ % k);
  }
  return folds;
}

void write_folds_csv(const std::filesystem::path& file, const DatasetIndex& index,
                     const std::vector<int>& folds) {
  if (folds.size() != index.entries.size())
    throw core::DataError(fmt::format("{}: {} folds for {} images", file.string(), folds.size(),
                                      index.entries.size()));
  std::string text = "ImageId,fold,positive\n";
  for (size_t i = 0; i < folds.size(); ++i)
    text += fmt::format("{},{},{}\n", index.entries[i].image_id, folds[i],
                        index.entries[i].positive ? 1 : 0);
  core::write_file_atomic(file, text);
}

std::vector<int> read_folds_csv(const std::filesystem::path& file, const DatasetIndex& index,
                                int k) {
  const std::string text = core::read_text_file(file);
  std::unordered_map<std::string, int> fold_of;
  size_t start = 0;
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) start = 3;  // UTF-8 byte order mark
  int line = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string_view row = trim(std::string_view(text).substr(start, end - start));
    start = end + 1;
    ++line;
    if (row.empty()) continue;
    const size_t comma = row.find(',');
    const auto fail = [&](const std::string& why) {
      throw core::DataError(fmt::format("{}:{}: {}; expected 'ImageId,fold'", file.string(), line, why));
    };
    if (comma == std::string_view::npos) fail("no comma");
    const std::string_view id = trim(row.substr(0, comma));
    std::string_view rest = row.substr(comma + 1);
    const std::string_view fold_text = trim(rest.substr(0, rest.find(',')));
    if (line == 1 && id == "ImageId") continue;  // header
    int fold = -1;
    const auto [ptr, ec] = std::from_chars(fold_text.data(), fold_text.data() + fold_text.size(), fold);
    if (ec != std::errc() || ptr != fold_text.data() + fold_text.size())
      fail(fmt::format("fold '{}' is not an integer", fold_text));
    if (fold < 0 || fold >= k) fail(fmt::format("fold {} outside 0..{}", fold, k - 1));
    if (id.empty()) fail("empty ImageId");
    const auto [it, inserted] = fold_of.emplace(std::string(id), fold);
    if (!inserted && it->second != fold)
      fail(fmt::format("ImageId '{}' given two different folds", id));
  }
  std::vector<int> folds;
  folds.reserve(index.entries.size());
  for (const IndexEntry& entry : index.entries) {
    const auto it = fold_of.find(entry.image_id);
    if (it == fold_of.end())
      throw core::DataError(
          fmt::format("{}: no fold for ImageId '{}' (file {})", file.string(), entry.image_id,
                      entry.file.string()));
    folds.push_back(it->second);
  }
  return folds;
}

}  // namespace pneumo::data
