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

  // The plateau state, for checkpoints: current factor, best value, epochs without improvement.
  struct State {
    double factor = 1.0;
    double best = -1e300;
    int bad_epochs = 0;
  };
  State state() const { return {plateau_factor_, best_, bad_epochs_}; }
  void restore(const State& s) {
    plateau_factor_ = s.factor;
    best_ = s.best;
    bad_epochs_ = s.bad_epochs;
  }

 private:
  ScheduleSection s_;
  int total_epochs_;
  double plateau_factor_ = 1.0;
  double best_ = -1e300;
  int bad_epochs_ = 0;
};

}  // namespace pneumo::train
