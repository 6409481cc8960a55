// Which checkpoints a run keeps, and the averaged members it builds: best.ckpt (by
// train.monitor), top-NNN.ckpt (train.keep_top), snapshot-NNN.ckpt (cosine-restart cycle ends,
// listed in ensemble.json), last.ckpt, and the SWA / EMA averages of the weights. The policy's
// bookkeeping lives in the TrainingState, so a resumed run carries on with it.
#pragma once

#include <string>
#include <vector>

#include "pneumo/core/run_dir.h"
#include "pneumo/models/network.h"
#include "pneumo/train/checkpoint.h"
#include "pneumo/train/train_section.h"

namespace pneumo::train {

// The figure train.monitor names, higher is better (val_loss negated; a NaN AUC counts as -1).
double monitored_value(const EpochResult& result, const std::string& monitor);

class CheckpointPolicy {
 public:
  // `run` is null on the processes of a data-parallel run that write nothing (rank > 0).
  CheckpointPolicy(const TrainSection& train, const core::RunDirectory* run, std::string config_yaml,
                   std::vector<int> cycle_ends);

  // After an optimiser step that was taken: the EMA of the weights, when train.ema asks.
  void after_step(TrainingState& state, models::Network& net) const;

  // After an epoch's validation (result, and its monitored value): updates the state's best,
  // stale-epoch count, SWA average, top-k list and snapshots, then writes the epoch's
  // checkpoints (best before last: an interruption between the two resumes from the previous
  // last.ckpt, which repeats this epoch). The state's optimiser, RNG, scaler and schedule
  // fields must already be this epoch's. Returns whether the epoch improved on the best.
  bool after_epoch(TrainingState& state, models::Network& net, const EpochResult& result, double value) const;

  // Whether early stopping ends the run after an epoch that did not improve.
  bool stop_early(const TrainingState& state) const;

  // Writes an averaged member (swa.ckpt, ema.ckpt) validated as `result`; with `in_manifest`
  // ensemble.json lists it (as its SWA model) beside the snapshots.
  void write_member(const std::string& file, models::Network& net, const TrainingState& state,
                    const EpochResult& result, bool in_manifest) const;

 private:
  Checkpoint checkpoint_of(models::Network& net, const EpochResult& result) const;
  // Adds the epoch to the top-k list; returns the epoch pushed out, or 0.
  bool join_top(TrainingState& state, int epoch, double value, int& dropped) const;
  void update_swa(TrainingState& state, models::Network& net) const;

  const TrainSection& train_;
  const core::RunDirectory* run_;
  std::string config_yaml_;
  std::vector<int> cycle_ends_;
};

}  // namespace pneumo::train
