// Stratified k-fold splits: every fold gets the same share of positive images, chosen by a
// seed with pneumo's own generator, so a split is the same on every machine.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "pneumo/data/dataset_index.h"

namespace pneumo::data {

// The fold (0..k-1) of each item. Positives and negatives are shuffled separately and dealt
// round-robin, negatives continuing where positives stopped, so fold sizes differ by at most
// one and positive counts by at most one. Throws DataError when there are fewer items than
// folds; k must be at least 2.
std::vector<int> stratified_folds(const std::vector<bool>& positive, int k, uint64_t seed);

// Writes `ImageId,fold,positive` rows (with a header) atomically.
void write_folds_csv(const std::filesystem::path& file, const DatasetIndex& index,
                     const std::vector<int>& folds);

// Reads a folds file written by write_folds_csv (or any `ImageId,fold[,...]` CSV with a
// header) and returns the fold of each index entry. Throws DataError naming the file and
// line for a malformed row or a fold outside 0..k-1, and naming the ImageId of an entry the
// file does not cover.
std::vector<int> read_folds_csv(const std::filesystem::path& file, const DatasetIndex& index,
                                int k);

}  // namespace pneumo::data
