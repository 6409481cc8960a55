#include "data_parallel.h"

#include <chrono>
#include <cmath>
#include <exception>

#include <fmt/format.h>
#include <torch/torch.h>

#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/core/runtime.h"

namespace pneumo::train {

DataParallel::DataParallel(const TrainSection& t, int world) : world_(world) {
  const DistributedSection& d = t.distributed;
  if (d.batch_size == "global" && d.lr_scaling != "none")
    throw core::ConfigError(fmt::format(
        "train.distributed.lr_scaling: {} applies to per_process batches; with global batches a step is the same on "
        "any number of processes, so keep lr_scaling: none (or set batch_size: per_process)",
        d.lr_scaling));
  if (d.batch_size == "global") {
    if (t.batch_size % world != 0)
      throw core::ConfigError(fmt::format(
          "train.batch_size: {} images cannot be split evenly over {} processes; use a multiple of {}, or "
          "train.distributed.batch_size: per_process",
          t.batch_size, world, world));
    global_batch_ = t.batch_size;
    process_batch_ = t.batch_size / world;
  } else {
    process_batch_ = t.batch_size;
    global_batch_ = static_cast<int64_t>(t.batch_size) * world;
  }
  lr_factor_ = d.lr_scaling == "linear" ? world : d.lr_scaling == "sqrt" ? std::sqrt(static_cast<double>(world)) : 1.0;
}

DataParallel::~DataParallel() {
  if (group_ && std::uncaught_exceptions() > 0) static_cast<void>(group_.release());
}

c10::Device DataParallel::join(const ExperimentConfig& config, const ProcessPlacement& place, c10::Device device) {
  rank_ = place.rank;
  if (place.rank > 0) {
    core::set_log_prefix(fmt::format("rank {}: ", place.rank));
    if (core::log_level() < core::LogLevel::kWarn) core::set_log_level(core::LogLevel::kWarn);
  }
  if (device.is_cuda()) {
    if (config.runtime.device.rfind("cuda:", 0) == 0)
      throw core::ConfigError(fmt::format("runtime.device: {} names one GPU, but each of the {} processes uses the "
                                          "GPU of its LOCAL_RANK; set it to cuda or auto",
                                          config.runtime.device, place.world_size));
    device = core::resolve_device(core::parse_device(fmt::format("cuda:{}", place.local_rank)));
  }
  if (config.runtime.threads == 0)  // the machine's cores are shared by its processes
    core::configure_threads(core::plan_threads(core::hardware_threads(), place.local_world_size, device.is_cuda()).intra_op);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(config.train.distributed.timeout_s * 1000.0));
  group_ = ProcessGroup::connect(place, device, timeout);
  return device;
}

void DataParallel::broadcast_from_first(const std::vector<torch::Tensor>& tensors, const std::string& what) {
  torch::NoGradGuard no_grad;
  for (const torch::Tensor& t : tensors) {
    torch::Tensor data = t.detach();
    group_->broadcast(data, what);
  }
}

}  // namespace pneumo::train
