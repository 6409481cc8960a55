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

// metrics.csv, metrics.jsonl, loss.png, metrics.png and lr.png for the epochs so far. With a
// class table (`classes` named) also the AUC of each class: csv columns `auc:<class>`, and
// `val_class_auc: {class: auc}` in the jsonl.
void write_metrics(const core::RunDirectory& run, const std::vector<EpochResult>& history,
                   const std::vector<std::string>& classes = {});

// ensemble.json: the snapshot checkpoints (and the SWA model) a run offers for ensembling.
void write_manifest(const core::RunDirectory& run, const std::vector<Snapshot>& snapshots,
                    const std::optional<EpochResult>& swa);

// "epoch 3/15: train_loss 0.4123  val_loss ...": logged after each epoch, then the AUC of each
// class when `classes` are named.
void log_epoch(const EpochResult& result, int epochs, const std::vector<std::string>& classes = {});

}  // namespace pneumo::train
