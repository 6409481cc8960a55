// Stratified k-fold splits: every fold gets the same share of positive images, chosen by a
// seed with pneumo's own generator, so a split is the same on every machine.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

#include "pneumo/data/dataset_index.h"

namespace pneumo::data {

// The fold (0..k-1) of each item. Positives and negatives are shuffled separately and dealt
// round-robin, negatives continuing where positives stopped, so fold sizes differ by at most
// one and positive counts by at most one. Throws DataError when there are fewer items than
// folds; k must be at least 2.
std::vector<int> stratified_folds(const std::vector<bool>& positive, int k, uint64_t seed);

// The same over any strata (DatasetIndex::strata: multi-label tables are stratified by each
// image's rarest positive class): stratum 0 is dealt first, each next one continuing the
// round-robin, so every fold gets its share of each stratum to within one. The binary form is
// strata {positive: 0, negative: 1}.
std::vector<int> stratified_folds(const std::vector<int>& stratum, int strata, int k, uint64_t seed);

// The same with every group (a patient's images) kept in one fold. Groups with a positive
// image are shuffled with the seed and placed by their number of positive images, most first,
// each in the fold with the fewest positives so far; then the other groups, largest first, each
// in the fold with the fewest images (the lowest fold on ties). Positives per fold then differ
// by at most the largest group's positives. Throws DataError when there are fewer groups than
// folds or a group id is empty.
std::vector<int> grouped_stratified_folds(const std::vector<bool>& positive, const std::vector<std::string>& group,
                                          int k, uint64_t seed);

// The same over any strata: a group belongs to the lowest stratum among its images; the groups
// of stratum 0, 1, ... are placed in turn by their images of that stratum, each in the fold
// with the fewest such images so far; the groups of the last stratum (no positive image) fill
// the folds with the fewest images.
std::vector<int> grouped_stratified_folds(const std::vector<int>& stratum, int strata,
                                          const std::vector<std::string>& group, int k, uint64_t seed);

// Writes `ImageId,fold,positive` rows (with a header) atomically.
void write_folds_csv(const std::filesystem::path& file, const DatasetIndex& index,
                     const std::vector<int>& folds);

// Reads a folds file written by write_folds_csv (or any `ImageId,fold[,...]` CSV with a
// header) and returns the fold of each index entry. Throws DataError naming the file and
// line for a malformed row or a fold outside 0..k-1, and naming the ImageId of an entry the
// file does not cover.
std::vector<int> read_folds_csv(const std::filesystem::path& file, const DatasetIndex& index,
                                int k);

// `ImageId,PatientID` rows (a header allowed): the patient of each image, for layouts whose
// images carry no DICOM header (data.patients). Throws DataError naming the file and line.
std::unordered_map<std::string, std::string> read_patients_csv(const std::filesystem::path& file);

}  // namespace pneumo::data
