// The data-parallel side of a training run: the process group (none on one process), how each
// step's batch is split over the processes, and the learning-rate factor that follows.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <torch/types.h>

#include "pneumo/train/distributed.h"
#include "pneumo/train/experiment.h"

namespace pneumo::train {

// On an error the group is left open rather than closed: closing waits for the collectives
// still in flight, which the other processes will never finish.
class DataParallel {
 public:
  // Checks the batch split and learning-rate scaling of `train` against `world` processes;
  // throws ConfigError naming the key when they do not fit.
  DataParallel(const TrainSection& train, int world);
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;
  ~DataParallel();

  // Joins the other processes: one GPU and a share of the CPU cores per process, logging left
  // to rank 0. Returns this process's device.
  c10::Device join(const ExperimentConfig& config, const ProcessPlacement& place, c10::Device device);

  bool distributed() const { return group_ != nullptr; }
  bool writer() const { return rank_ == 0; }  // only rank 0 writes the run folder
  int rank() const { return rank_; }
  int world() const { return world_; }
  int64_t global_batch() const { return global_batch_; }
  int64_t process_batch() const { return process_batch_; }
  double lr_factor() const { return lr_factor_; }
  ProcessGroup& group() { return *group_; }  // only when distributed()

  // Copies rank 0's tensors (parameters, BatchNorm statistics) to every process; `what` names
  // the exchange in timeout errors.
  void broadcast_from_first(const std::vector<torch::Tensor>& tensors, const std::string& what);

 private:
  std::unique_ptr<ProcessGroup> group_;
  int rank_ = 0, world_ = 1;
  int64_t global_batch_ = 1, process_batch_ = 1;
  double lr_factor_ = 1.0;
};

}  // namespace pneumo::train
