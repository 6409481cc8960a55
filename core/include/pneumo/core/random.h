// Seeding and pneumo's own random number generator.
//
// Randomness in data loading and augmentation never comes from a shared generator: each
// sample gets an Rng derived from (seed, epoch, sample index), so results do not depend on
// which loader thread handled a sample or on how many threads there are. Rng's draws use
// fixed formulas (not the standard library's implementation-defined distributions), so they
// are the same on every platform and compiler.
#pragma once

#include <cstdint>

namespace pneumo::core {

// Seeds LibTorch's CPU and CUDA generators.
// OpenCV's generator is never used by pneumo (all draws go through Rng), so it needs none.
void seed_everything(uint64_t seed);

// Mixes the parts into one well-spread 64-bit seed (SplitMix64 finaliser per part).
uint64_t derive_seed(uint64_t seed, uint64_t stream, uint64_t index);

// xoshiro256** seeded through SplitMix64: fast, small state, statistically strong.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  static Rng for_sample(uint64_t seed, uint64_t epoch, uint64_t index) {
    return Rng(derive_seed(seed, epoch, index));
  }

  uint64_t next_u64();
  double uniform();                          // [0, 1)
  double uniform(double low, double high);   // [low, high)
  int64_t randint(int64_t low, int64_t high);  // [low, high], both ends included
  double normal(double mean = 0.0, double stddev = 1.0);
  bool bernoulli(double p) { return uniform() < p; }

 private:
  uint64_t state_[4];
};

}  // namespace pneumo::core
