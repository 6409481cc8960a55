#include "pneumo/data/sampler.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "pneumo/core/error.h"
#include "pneumo/core/random.h"

namespace pneumo::data {

namespace {

constexpr uint64_t kSamplerStream = 0x73616d706c6572ULL;  // "sampler"

void shuffle(std::vector<int64_t>& items, core::Rng& rng) {
  for (int64_t i = static_cast<int64_t>(items.size()) - 1; i > 0; --i)
    std::swap(items[i], items[rng.randint(0, i)]);
}

}  // namespace

NegativeShareSchedule::NegativeShareSchedule(std::vector<SharePoint> points)
    : points_(std::move(points)) {
  for (size_t i = 0; i < points_.size(); ++i) {
    if (!(points_[i].share >= 0.0 && points_[i].share <= 1.0))
      throw core::ConfigError(fmt::format("negative_share[{}].share: {} is outside [0, 1]", i,
                                          points_[i].share));
    if (i > 0 && points_[i].epoch <= points_[i - 1].epoch)
      throw core::ConfigError(fmt::format(
          "negative_share[{}].epoch: {} must be greater than the previous point's {}", i,
          points_[i].epoch, points_[i - 1].epoch));
  }
}

double NegativeShareSchedule::at(int64_t epoch) const {
  if (points_.empty()) return 1.0;
  if (epoch <= points_.front().epoch) return points_.front().share;
  for (size_t i = 1; i < points_.size(); ++i) {
    const SharePoint& a = points_[i - 1];
    const SharePoint& b = points_[i];
    if (epoch <= b.epoch) {
      const double t = static_cast<double>(epoch - a.epoch) / static_cast<double>(b.epoch - a.epoch);
      return a.share + t * (b.share - a.share);
    }
  }
  return points_.back().share;
}

EpochSampler::EpochSampler(std::vector<int64_t> members, std::vector<bool> positive,
                           NegativeShareSchedule schedule, uint64_t seed, bool shuffle)
    : members_(std::move(members)), schedule_(std::move(schedule)), seed_(seed), shuffle_(shuffle) {
  if (positive.size() != members_.size())
    throw core::Error(fmt::format("EpochSampler: {} members but {} positive flags",
                                  members_.size(), positive.size()));
  for (size_t i = 0; i < members_.size(); ++i)
    (positive[i] ? positives_ : negatives_).push_back(members_[i]);
}

int64_t EpochSampler::size(int64_t epoch) const {
  if (!shuffle_) return static_cast<int64_t>(members_.size());
  const auto negatives = static_cast<int64_t>(
      std::llround(schedule_.at(epoch) * static_cast<double>(negatives_.size())));
  return static_cast<int64_t>(positives_.size()) + negatives;
}

std::vector<int64_t> EpochSampler::order(int64_t epoch) const {
  if (!shuffle_) return members_;
  core::Rng rng(core::derive_seed(seed_, kSamplerStream, static_cast<uint64_t>(epoch)));
  const int64_t take = size(epoch) - static_cast<int64_t>(positives_.size());
  // Partial Fisher-Yates: the first `take` slots become a uniform draw without replacement.
  std::vector<int64_t> negatives = negatives_;
  const auto n = static_cast<int64_t>(negatives.size());
  for (int64_t i = 0; i < take; ++i) std::swap(negatives[i], negatives[rng.randint(i, n - 1)]);

  std::vector<int64_t> out = positives_;
  out.insert(out.end(), negatives.begin(), negatives.begin() + take);
  shuffle(out, rng);
  return out;
}

}  // namespace pneumo::data
