#include "pneumo/data/folds.h"

#include <algorithm>
#include <charconv>
#include <functional>
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

namespace {

std::vector<int> binary_strata(const std::vector<bool>& positive) {
  std::vector<int> strata;
  for (bool p : positive) strata.push_back(p ? 0 : 1);
  return strata;
}

void check_strata(const std::vector<int>& stratum, int strata) {
  for (int s : stratum)
    if (s < 0 || s >= strata) throw core::Error(fmt::format("fold stratum {} outside 0..{}", s, strata - 1));
}

}  // namespace

std::vector<int> stratified_folds(const std::vector<bool>& positive, int k, uint64_t seed) {
  return stratified_folds(binary_strata(positive), 2, k, seed);
}

std::vector<int> stratified_folds(const std::vector<int>& stratum, int strata, int k, uint64_t seed) {
  if (k < 2) throw core::ConfigError(fmt::format("folds: expected at least 2; got {}", k));
  if (stratum.size() < static_cast<size_t>(k))
    throw core::DataError(
        fmt::format("cannot split {} images into {} folds; need at least one per fold",
                    stratum.size(), k));
  check_strata(stratum, strata);
  std::vector<std::vector<int64_t>> members(static_cast<size_t>(strata));
  for (size_t i = 0; i < stratum.size(); ++i) members[static_cast<size_t>(stratum[i])].push_back(static_cast<int64_t>(i));

  std::vector<int> folds(stratum.size(), 0);
  int64_t dealt = 0;
  for (int s = 0; s < strata; ++s) {  // each stratum continues the round-robin where the last stopped
    core::Rng rng(core::derive_seed(seed, kFoldStream, static_cast<uint64_t>(strata - 1 - s)));
    shuffle(members[static_cast<size_t>(s)], rng);
    for (int64_t item : members[static_cast<size_t>(s)]) folds[static_cast<size_t>(item)] = static_cast<int>(dealt++ % k);
  }
  return folds;
}

std::vector<int> grouped_stratified_folds(const std::vector<bool>& positive, const std::vector<std::string>& group,
                                          int k, uint64_t seed) {
  return grouped_stratified_folds(binary_strata(positive), 2, group, k, seed);
}

std::vector<int> grouped_stratified_folds(const std::vector<int>& stratum, int strata,
                                          const std::vector<std::string>& group, int k, uint64_t seed) {
  if (k < 2) throw core::ConfigError(fmt::format("folds: expected at least 2; got {}", k));
  check_strata(stratum, strata);
  std::unordered_map<std::string, std::vector<int64_t>> members;
  std::vector<std::string> order;  // groups in order of first appearance
  for (size_t i = 0; i < group.size(); ++i) {
    if (group[i].empty()) throw core::DataError(fmt::format("image {} has no patient id to group by", i));
    auto [it, fresh] = members.try_emplace(group[i]);
    if (fresh) order.push_back(group[i]);
    it->second.push_back(static_cast<int64_t>(i));
  }
  if (order.size() < static_cast<size_t>(k))
    throw core::DataError(fmt::format("cannot split {} patients into {} folds; need at least one per fold",
                                      order.size(), k));
  const auto& images_of = [&](int64_t g) -> const std::vector<int64_t>& { return members[order[static_cast<size_t>(g)]]; };
  const auto count_in = [&](int64_t g, int s) {
    const auto& m = images_of(g);
    return static_cast<int64_t>(std::count_if(m.begin(), m.end(), [&](int64_t i) { return stratum[i] == s; }));
  };
  // A group belongs to the lowest (rarest) stratum of its images.
  std::vector<std::vector<int64_t>> groups(static_cast<size_t>(strata));
  for (size_t g = 0; g < order.size(); ++g) {
    int lowest = strata - 1;
    for (int64_t i : images_of(static_cast<int64_t>(g))) lowest = std::min(lowest, stratum[i]);
    groups[static_cast<size_t>(lowest)].push_back(static_cast<int64_t>(g));
  }
  // The groups of each stratum but the last are spread by their images of that stratum; the
  // last stratum's groups fill the folds with the fewest images.
  std::vector<int> folds(group.size(), 0);
  std::vector<std::vector<int64_t>> load(static_cast<size_t>(strata), std::vector<int64_t>(static_cast<size_t>(k), 0));
  std::vector<int64_t> images(static_cast<size_t>(k), 0);
  for (int s = 0; s < strata; ++s) {
    const bool last = s == strata - 1;
    std::vector<int64_t>& in_stratum = groups[static_cast<size_t>(s)];
    core::Rng rng(core::derive_seed(seed, kFoldStream, static_cast<uint64_t>(2 + strata - 1 - s)));
    shuffle(in_stratum, rng);
    const auto weight = [&](int64_t g) { return last ? static_cast<int64_t>(images_of(g).size()) : count_in(g, s); };
    std::stable_sort(in_stratum.begin(), in_stratum.end(), [&](int64_t a, int64_t b) { return weight(a) > weight(b); });
    const std::vector<int64_t>& by = last ? images : load[static_cast<size_t>(s)];
    for (int64_t g : in_stratum) {
      const auto fold = static_cast<int>(std::min_element(by.begin(), by.end()) - by.begin());
      for (int64_t i : images_of(g)) {
        folds[static_cast<size_t>(i)] = fold;
        ++load[static_cast<size_t>(stratum[i])][static_cast<size_t>(fold)];
      }
      images[static_cast<size_t>(fold)] += static_cast<int64_t>(images_of(g).size());
    }
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

namespace {

// Calls `take(line, id, value)` for each `ImageId,<value>[,...]` row of a CSV (a UTF-8 byte
// order mark, blank lines and an `ImageId,...` header skipped); `expected` names the columns in
// messages.
void for_each_id_row(const std::filesystem::path& file, const char* expected,
                     const std::function<void(int, std::string_view, std::string_view)>& take) {
  const std::string text = core::read_text_file(file);
  size_t start = text.rfind("\xEF\xBB\xBF", 0) == 0 ? 3 : 0;
  for (int line = 1; start < text.size(); ++line) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string_view row = trim(std::string_view(text).substr(start, end - start));
    start = end + 1;
    if (row.empty()) continue;
    const size_t comma = row.find(',');
    if (comma == std::string_view::npos)
      throw core::DataError(fmt::format("{}:{}: no comma; expected '{}'", file.string(), line, expected));
    const std::string_view id = trim(row.substr(0, comma));
    const std::string_view rest = row.substr(comma + 1);
    if (line == 1 && id == "ImageId") continue;  // header
    if (id.empty()) throw core::DataError(fmt::format("{}:{}: empty ImageId; expected '{}'", file.string(), line, expected));
    take(line, id, trim(rest.substr(0, rest.find(','))));
  }
}

}  // namespace

std::vector<int> read_folds_csv(const std::filesystem::path& file, const DatasetIndex& index,
                                int k) {
  std::unordered_map<std::string, int> fold_of;
  for_each_id_row(file, "ImageId,fold", [&](int line, std::string_view id, std::string_view fold_text) {
    const auto fail = [&](const std::string& why) {
      throw core::DataError(fmt::format("{}:{}: {}; expected 'ImageId,fold'", file.string(), line, why));
    };
    int fold = -1;
    const auto [ptr, ec] = std::from_chars(fold_text.data(), fold_text.data() + fold_text.size(), fold);
    if (ec != std::errc() || ptr != fold_text.data() + fold_text.size())
      fail(fmt::format("fold '{}' is not an integer", fold_text));
    if (fold < 0 || fold >= k) fail(fmt::format("fold {} outside 0..{}", fold, k - 1));
    const auto [it, inserted] = fold_of.emplace(std::string(id), fold);
    if (!inserted && it->second != fold) fail(fmt::format("ImageId '{}' given two different folds", id));
  });
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

std::unordered_map<std::string, std::string> read_patients_csv(const std::filesystem::path& file) {
  std::unordered_map<std::string, std::string> patient_of;
  for_each_id_row(file, "ImageId,PatientID", [&](int line, std::string_view id, std::string_view patient) {
    if (patient.empty())
      throw core::DataError(fmt::format("{}:{}: empty PatientID for '{}'; expected 'ImageId,PatientID'", file.string(),
                                        line, id));
    const auto [it, inserted] = patient_of.emplace(std::string(id), std::string(patient));
    if (!inserted && it->second != patient)
      throw core::DataError(fmt::format("{}:{}: ImageId '{}' given two patients, '{}' and '{}'", file.string(), line, id,
                                        it->second, patient));
  });
  return patient_of;
}

}  // namespace pneumo::data
