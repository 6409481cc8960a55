// numpy's legacy RandomState(seed) for an integer seed: MT19937 seeded with init_genrand,
// doubles from two 32-bit draws, and the polar Box-Muller normal with its cached second value.
// Albumentations 0.4.x draws elastic and noise fields from it; reproducing it exactly makes
// those ops comparable with Python pixel for pixel.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>

namespace pneumo::augment {

class NumpyRandomState {
 public:
  explicit NumpyRandomState(uint32_t seed) : mt_(seed) {}

  // random_sample(): [0, 1) with 53 random bits.
  double random_double() {
    const uint32_t a = static_cast<uint32_t>(mt_()) >> 5;
    const uint32_t b = static_cast<uint32_t>(mt_()) >> 6;
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

  std::mt19937 mt_;
  bool has_gauss_ = false;
  double gauss_ = 0.0;
};

}  // namespace pneumo::augment
