// pneumo's checkpoint format: the one place that says what a checkpoint file holds.
//
// A checkpoint is one file in the torch.save zip format, written atomically (temporary file,
// fsync, rename), so Python reads it with `torch.load` (`torch.load("best.ckpt")["model"]` is a
// state_dict an smp or torchvision model loads). Its outer layer:
//
//   {"format": "pneumo-checkpoint", "version": 1, "pneumo": "<version that wrote it>",
//    "config": "<the resolved experiment as YAML>", "epoch": N, "step": N,
//    "model": OrderedDict(name -> tensor),      # parameters, then buffers (BatchNorm statistics)
//    "metrics": {name: value},                 # the epoch's figures (train/val loss, Dice, ...)
//    "state": {...} | None,                    # the trainer state below; None for plain weights
//    "checksum": CRC-32 of all of the above}   # models::pickle_checksum
//
// The trainer state (TrainingState), everything a resumed run needs to continue exactly:
//
//   {"version": 2,                              # the trainer state's own version (see below)
//    "optimizer": uint8 tensor,                 # LibTorch's optimiser archive, as bytes
//    "rng_cpu": tensor, "rng_cuda": [tensor per GPU],
//    "scaler_scale": float, "scaler_growth_tracker": int,      # float16 loss scaler
//    "plateau_factor": float, "plateau_best": float, "plateau_bad_epochs": int,
//    "best_value": float, "best_epoch": int, "stale_epochs": int,   # train.monitor, early stopping
//    "metrics": [[epoch, lr, train_loss, val_loss, val_dice, val_iou, val_auc, seconds], ...],
//    "class_auc": [[auc per class], ...],      # per metrics row; empty lists without a class table
//    "snapshots": [[epoch, val_loss, val_dice, val_auc], ...],      # cosine-restart cycle ends
//    "swa_count": int, "swa": [tensor], "ema": [tensor],            # in named_parameters order
//    "top": [[monitored value, epoch], ...]}                        # the kept top-NNN.ckpt, best first
//
// Versions and how old files load:
// - Outer format 1: every checkpoint pneumo has written. Without "checksum" (the first
//   checkpoints) the file loads unchecked. A newer outer version is refused, naming both.
// - Trainer state 1: the keys above. States written before the state carried its own
//   "version" (pneumo up to commit c0189b9, 2026-11-27) have the same keys and read as
//   version 1; of those, "rng_cuda", "scaler_*", "ema" and "top" are absent from the oldest
//   files and then read as empty (a fresh scaler, no CUDA states, no EMA, no top-k).
//   A newer state version is refused, naming both.
// - Trainer state 2 (2026-12-02): adds "class_auc" (the per-class validation AUCs of image-level
//   class tables); states of version 1 read with no per-class figures.
// Adding a key: bump TrainingState::kVersion, write it in to_checkpoint, read it in
// from_checkpoint with a default for older versions, and say so in this list.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "pneumo/models/torch_save.h"
#include "pneumo/models/weights.h"

namespace pneumo::train {

constexpr int64_t kCheckpointVersion = 1;

struct Checkpoint {
  std::string config_yaml;
  int64_t epoch = 0;  // completed epochs
  int64_t step = 0;   // optimiser steps taken
  models::NamedTensors model;
  std::map<std::string, double> metrics;
  models::PickleRef state;  // trainer state (null when none, e.g. converted weights)
};

// Atomic (temporary file, fsync, rename): an interrupted write leaves any previous file whole.
void write_checkpoint(const std::filesystem::path& file, const Checkpoint& checkpoint);

// Throws CheckpointError naming the file when it is missing, damaged (unreadable, or its
// contents differ from its checksum), not a pneumo checkpoint, or from a newer format version
// than this pneumo reads.
Checkpoint read_checkpoint(const std::filesystem::path& file);

// One epoch's figures, as metrics.csv holds them (NaN where a metric does not apply).
struct EpochResult {
  int epoch = 0;  // 1-based
  double lr = 0, train_loss = 0, val_loss = 0, val_dice = 0, val_iou = 0, val_auc = 0;
  double seconds = 0;
  std::vector<double> val_class_auc;  // class tables: the AUC per class (val_auc is their mean); else empty
};

// A checkpoint's "metrics" entry for an epoch's figures.
std::map<std::string, double> checkpoint_metrics(const EpochResult& result);

// A cosine-restart cycle's end, kept as snapshot-NNN.ckpt and listed in ensemble.json.
struct Snapshot {
  int epoch = 0;
  double val_loss = 0, val_dice = 0, val_auc = 0;
};

// One of the kept top-NNN.ckpt files.
struct TopEntry {
  double value = 0;  // the monitored figure, higher is better
  int epoch = 0;
};

// Everything that must survive a resume, as a value; the trainer's parts read and update it.
struct TrainingState {
  static constexpr int64_t kVersion = 2;

  int64_t epoch = 0;  // completed epochs
  int64_t step = 0;   // optimiser steps taken
  std::string optimizer;  // LibTorch's optimiser archive
  torch::Tensor rng_cpu;
  std::vector<torch::Tensor> rng_cuda;  // one per GPU, empty without CUDA
  bool has_scaler = false;  // false for the oldest files: the scaler starts fresh
  double scaler_scale = 0;
  int64_t scaler_growth_tracker = 0;
  double plateau_factor = 1.0, plateau_best = -1e300;
  int plateau_bad_epochs = 0;
  double best_value = 0;
  int best_epoch = 0;
  int stale_epochs = 0;  // epochs without improvement
  std::vector<EpochResult> history;
  std::vector<Snapshot> snapshots;
  int64_t swa_count = 0;
  std::vector<torch::Tensor> swa, ema;  // in named_parameters order
  std::vector<TopEntry> top;            // best first

  // Sets `checkpoint`'s epoch, step and state from this one.
  void to_checkpoint(Checkpoint& checkpoint) const;
  // Throws CheckpointError naming `file` when the checkpoint has no trainer state, a key is
  // missing or malformed, or the state's version is newer than this pneumo reads.
  static TrainingState from_checkpoint(const Checkpoint& checkpoint, const std::string& file);
};

}  // namespace pneumo::train
