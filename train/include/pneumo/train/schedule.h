// Learning-rate schedules as a factor of the base rate, a function of training progress in
// epochs (fractional when the schedule is applied per step).
#pragma once

#include <vector>

#include "pneumo/train/train_section.h"

namespace pneumo::train {

class LrSchedule {
 public:
  LrSchedule(const ScheduleSection& section, int total_epochs);

  // The factor at `epoch` (0-based, fractional within an epoch). Plateau decays are applied
  // separately through on_validation.
  double factor(double epoch) const;

  // Plateau: call once per epoch with the monitored value (higher is better).
  void on_validation(double value);

  // cosine_restarts: the (1-based) epochs at whose end a cycle finishes (snapshot points).
  std::vector<int> cycle_ends() const;

 private:
  ScheduleSection s_;
  int total_epochs_;
  double plateau_factor_ = 1.0;
  double best_ = -1e300;
  int bad_epochs_ = 0;
};

}  // namespace pneumo::train
