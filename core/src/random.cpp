#include "pneumo/core/random.h"

#include <cmath>

#include <torch/cuda.h>
#include <torch/utils.h>

namespace pneumo::core {

namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

void seed_everything(uint64_t seed) {
  torch::manual_seed(seed);
  if (torch::cuda::is_available()) torch::cuda::manual_seed_all(seed);
}

uint64_t derive_seed(uint64_t seed, uint64_t stream, uint64_t index) {
  uint64_t x = seed;
  uint64_t h = splitmix64(x);
  x = h ^ stream;
  h = splitmix64(x);
  x = h ^ index;
  return splitmix64(x);
}

Rng::Rng(uint64_t seed) {
  for (uint64_t& s : state_) s = splitmix64(seed);
}

uint64_t Rng::next_u64() {
  const uint64_t result = rotl(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

double Rng::uniform(double low, double high) { return low + (high - low) * uniform(); }

int64_t Rng::randint(int64_t low, int64_t high) {
  if (high <= low) return low;
  const uint64_t span = static_cast<uint64_t>(high - low) + 1;
  // Rejection sampling removes modulo bias.
  const uint64_t limit = span == 0 ? 0 : (UINT64_MAX - UINT64_MAX % span);
  uint64_t draw = next_u64();
  while (span != 0 && draw >= limit) draw = next_u64();
  return low + static_cast<int64_t>(span == 0 ? draw : draw % span);
}

double Rng::normal(double mean, double stddev) {
  // Box-Muller; 1 - uniform() is in (0, 1], so the log is finite.
  const double u1 = 1.0 - uniform();
  const double u2 = uniform();
  return mean + stddev * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

}  // namespace pneumo::core
