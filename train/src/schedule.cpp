#include "pneumo/train/schedule.h"

#include <algorithm>
#include <cmath>

namespace pneumo::train {

namespace {
constexpr double kPi = 3.14159265358979323846;
}

LrSchedule::LrSchedule(const ScheduleSection& section, int total_epochs)
    : s_(section), total_epochs_(total_epochs) {}

double LrSchedule::factor(double epoch) const {
  if (epoch < s_.warmup_epochs)
    return s_.warmup_start + (1.0 - s_.warmup_start) * epoch / s_.warmup_epochs;
  const double e = epoch - s_.warmup_epochs;
  const double span = std::max(1e-9, total_epochs_ - s_.warmup_epochs);
  const auto cosine = [&](double position) {  // position in [0, 1]
    return s_.min_lr_factor + (1.0 - s_.min_lr_factor) * 0.5 * (1.0 + std::cos(kPi * std::min(position, 1.0)));
  };
  if (s_.name == "step") return std::pow(s_.gamma, std::floor(e / s_.step_size));
  if (s_.name == "multistep") {
    int passed = 0;
    for (int m : s_.milestones) passed += epoch >= m;
    return std::pow(s_.gamma, passed);
  }
  if (s_.name == "cosine") return cosine(e / span);
  if (s_.name == "cosine_restarts") {
    double start = 0.0, length = s_.cycle_epochs;
    while (e >= start + length) {
      start += length;
      length *= s_.cycle_multiplier;
    }
    return cosine((e - start) / length);
  }
  if (s_.name == "plateau") return plateau_factor_;
  return 1.0;  // constant
}

void LrSchedule::on_validation(double value) {
  if (s_.name != "plateau") return;
  if (value > best_) {
    best_ = value;
    bad_epochs_ = 0;
  } else if (++bad_epochs_ >= s_.patience) {
    plateau_factor_ *= s_.gamma;
    bad_epochs_ = 0;
  }
}

std::vector<int> LrSchedule::cycle_ends() const {
  std::vector<int> ends;
  if (s_.name != "cosine_restarts") return ends;
  double end = s_.warmup_epochs, length = s_.cycle_epochs;
  while (true) {
    end += length;
    if (end > total_epochs_ + 1e-9) break;
    ends.push_back(static_cast<int>(std::lround(end)));
    length *= s_.cycle_multiplier;
  }
  return ends;
}

}  // namespace pneumo::train
