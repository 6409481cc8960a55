// Data-parallel training on PyTorch's c10d process groups: Gloo between CPU processes, NCCL
// between GPUs (one process per GPU). Processes find each other the torchrun way, through
// RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT (`pneumo launch`
// sets them). Each process trains on its own share of every batch; gradients are averaged
// with bucketed all-reduces that start during the backward pass.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

namespace pneumo::train {

// Where this process sits in the run.
struct ProcessPlacement {
  int rank = 0;              // 0..world_size-1; rank 0 writes the run folder
  int world_size = 1;        // processes in the whole run
  int local_rank = 0;        // index on this machine (the GPU it uses)
  int local_world_size = 1;  // processes on this machine (they share its CPU cores)
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;

  bool distributed() const { return world_size > 1; }
};

// The placement the environment gives: none of the variables set means one process. Throws
// UsageError naming the variable for a value that is malformed or inconsistent (RANK outside
// 0..WORLD_SIZE-1, WORLD_SIZE without RANK, a port outside 1..65535, ...).
ProcessPlacement placement_from_environment();

// The process group joining every process of the run. Each collective names what it is for
// (`what`), so that a failure says where the run stopped; a peer that died or stopped
// answering for longer than the timeout ends the collective with DistributedError.
class ProcessGroup {
 public:
  // Meets the other processes at master_addr:master_port (a c10d TCPStore hosted by rank 0)
  // and opens the backend for `device`: Gloo for the CPU, NCCL for CUDA (DeviceError when this
  // LibTorch has no NCCL). Waits up to `timeout` for everyone to arrive.
  static std::unique_ptr<ProcessGroup> connect(const ProcessPlacement& placement, const c10::Device& device,
                                               std::chrono::milliseconds timeout);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const;
  int size() const;
  const std::string& backend() const;  // "gloo" or "nccl"
  std::chrono::milliseconds timeout() const;

  // In place: the element-wise sum over the processes (blocking).
  void sum(at::Tensor& tensor, const std::string& what);
  // In place: rank 0's values on every process.
  void broadcast(at::Tensor& tensor, const std::string& what);
  std::string broadcast(const std::string& text, const std::string& what);
  // The sum over the processes, added in rank order on every process, so the result is
  // bitwise the same everywhere (decisions taken from it agree). Every process passes as many.
  std::vector<double> sum_in_rank_order(const std::vector<double>& values, const std::string& what);
  // Every process's 1-D tensor (lengths may differ), concatenated in rank order.
  at::Tensor gather(const at::Tensor& values, const std::string& what);
  void barrier(const std::string& what);

  // An all-reduce (sum) running in the background; wait() blocks until it is done.
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual void wait() = 0;
  };
  std::unique_ptr<Pending> sum_async(at::Tensor& tensor, const std::string& what);

  struct Impl;

 private:
  explicit ProcessGroup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Averages parameter gradients over the processes, as PyTorch's DistributedDataParallel:
// parameters are grouped into buckets of about `bucket_bytes` in reverse registration order
// (the order the backward pass produces their gradients); a bucket's all-reduce starts as soon
// as its last gradient is ready, so communication overlaps the rest of the backward pass.
// Buckets start in the same order on every process.
class GradientAverager {
 public:
  GradientAverager(ProcessGroup& group, std::vector<at::Tensor> parameters, int64_t bucket_bytes);
  ~GradientAverager();  // removes its gradient hooks
  GradientAverager(const GradientAverager&) = delete;
  GradientAverager& operator=(const GradientAverager&) = delete;

  // The next backward pass ends a gradient accumulation: its gradients (added to those
  // accumulated before) are averaged. Backward passes without arm() stay local.
  void arm();
  // After that backward pass: waits for every bucket and leaves the averaged gradients in
  // the parameters' .grad. Parameters that got no gradient count as zero.
  void finish();

  int64_t buckets() const;
  // Time finish() spent waiting for communication the backward pass had not hidden.
  double exposed_seconds() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

// One process's share of an epoch's sample order for a global batch split across `world`
// processes. Step i of the single-process run takes order[i*B, (i+1)*B); rank r takes the r-th
// of `world` equal consecutive parts of it, so the processes together see exactly the
// single-process batches. A last batch of R < B samples is split as evenly as possible; when
// R < world, the ranks left without a sample repeat the batch's first one with weight 0.
struct EpochShard {
  std::vector<int64_t> order;         // this rank's samples, step after step
  std::vector<int64_t> batch_sizes;   // samples per step on this rank
  std::vector<double> loss_weights;   // per step: (this rank's real samples * world) / step's samples
  std::vector<int64_t> real_samples;  // per step: this rank's samples that are not repeats
};
EpochShard shard_epoch(const std::vector<int64_t>& order, int64_t global_batch, bool drop_last, int rank, int world);

// Rank r's contiguous part of `items` for evaluation (sizes differ by at most one).
std::vector<int64_t> shard_evenly(const std::vector<int64_t>& items, int rank, int world);

}  // namespace pneumo::train
