// Which images an epoch visits, and in what order.
//
// The SIIM winners trained segmenters on all positive images plus a random share of the
// negatives that changed over epochs (many negatives early, fewer later, or the reverse).
// NegativeShareSchedule gives that share per epoch; EpochSampler draws the epoch's images.
#pragma once

#include <cstdint>
#include <vector>

namespace pneumo::data {

struct SharePoint {
  int64_t epoch = 0;
  double share = 1.0;  // fraction of the negatives to include, 0..1
};

// Piecewise-linear in the epoch between the given points, constant before the first and after
// the last; no points means every negative every epoch. Throws ConfigError when epochs are
// not strictly increasing or a share is outside [0, 1].
class NegativeShareSchedule {
 public:
  NegativeShareSchedule() = default;
  explicit NegativeShareSchedule(std::vector<SharePoint> points);
  double at(int64_t epoch) const;

 private:
  std::vector<SharePoint> points_;
};

class EpochSampler {
 public:
  // `members`: dataset indices this sampler draws from (e.g. the training folds);
  // `positive`: whether each member is positive (same length). Without `shuffle` every
  // member is visited in the given order and the schedule is ignored (validation).
  EpochSampler(std::vector<int64_t> members, std::vector<bool> positive,
               NegativeShareSchedule schedule, uint64_t seed, bool shuffle = true);

  // All positive members plus round(share * negatives) negatives drawn without replacement,
  // shuffled; the same for the same (seed, epoch) on every machine and thread count.
  std::vector<int64_t> order(int64_t epoch) const;

  int64_t size(int64_t epoch) const;  // the length of order(epoch)

 private:
  std::vector<int64_t> positives_;
  std::vector<int64_t> negatives_;
  std::vector<int64_t> members_;
  NegativeShareSchedule schedule_;
  uint64_t seed_;
  bool shuffle_;
};

}  // namespace pneumo::data
