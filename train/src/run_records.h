// What a run records besides checkpoints: metrics.csv / metrics.jsonl and the charts of every
// epoch, ensemble.json, and the one-line epoch summary of the log.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "pneumo/core/run_dir.h"
#include "pneumo/train/checkpoint.h"

namespace pneumo::train {

// "0.1234", or "nan".
std::string metric_text(double value);

// metrics.csv, metrics.jsonl, loss.png, metrics.png and lr.png for the epochs so far.
void write_metrics(const core::RunDirectory& run, const std::vector<EpochResult>& history);

// ensemble.json: the snapshot checkpoints (and the SWA model) a run offers for ensembling.
void write_manifest(const core::RunDirectory& run, const std::vector<Snapshot>& snapshots,
                    const std::optional<EpochResult>& swa);

// "epoch 3/15: train_loss 0.4123  val_loss ...": logged after each epoch.
void log_epoch(const EpochResult& result, int epochs);

}  // namespace pneumo::train
