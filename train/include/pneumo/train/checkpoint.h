// pneumo's checkpoints: one file each, written atomically, in the torch.save format, so Python
// reads them with `torch.load` (`torch.load("best.ckpt")["model"]` is a state_dict an smp or
// torchvision model loads):
//
//   {"format": "pneumo-checkpoint", "version": 1, "pneumo": "<version>",
//    "config": "<the resolved experiment as YAML>", "epoch": N, "step": N,
//    "model": OrderedDict(name -> tensor), "metrics": {name: value},
//    "state": {...},   # optimiser, scheduler, RNG and sampler state, written by the trainer
//    "checksum": CRC-32 of all of the above (models::pickle_checksum)}
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

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

}  // namespace pneumo::train
