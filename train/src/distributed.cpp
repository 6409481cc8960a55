#include "pneumo/train/distributed.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <optional>
#include <string_view>

#include <fmt/format.h>
#include <torch/torch.h>
#include <torch/version.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef PNEUMO_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "pneumo/core/error.h"

namespace pneumo::train {

namespace {

// The backends (Gloo, NCCL) are c10d::Backend.
using Backend = c10d::Backend;

std::optional<std::string> environment(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

int environment_integer(const char* name, int fallback, int lowest, int highest) {
  const std::optional<std::string> text = environment(name);
  if (!text) return fallback;
  int value = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || end != text->data() + text->size() || value < lowest || value > highest)
    throw core::UsageError(fmt::format("environment variable {}={}: expected an integer in {}..{}", name, *text,
                                       lowest, highest));
  return value;
}

bool is_loopback(const std::string& address) {
  return address == "localhost" || address.rfind("127.", 0) == 0 || address == "::1";
}

}  // namespace

ProcessPlacement placement_from_environment() {
  ProcessPlacement p;
  const bool has_world = environment("WORLD_SIZE").has_value();
  const bool has_rank = environment("RANK").has_value();
  if (has_world != has_rank)
    throw core::UsageError(fmt::format("environment variable {} is set but {} is not; a data-parallel run needs both "
                                       "(pneumo launch sets them)",
                                       has_world ? "WORLD_SIZE" : "RANK", has_world ? "RANK" : "WORLD_SIZE"));
  if (!has_world) return p;
  constexpr int kMaxProcesses = 1 << 16;
  p.world_size = environment_integer("WORLD_SIZE", 1, 1, kMaxProcesses);
  p.rank = environment_integer("RANK", 0, 0, p.world_size - 1);
  p.local_world_size = environment_integer("LOCAL_WORLD_SIZE", 1, 1, p.world_size);
  p.local_rank = environment_integer("LOCAL_RANK", 0, 0, p.local_world_size - 1);
  if (const auto address = environment("MASTER_ADDR")) p.master_addr = *address;
  else if (p.world_size > 1)
    throw core::UsageError("environment variable MASTER_ADDR is not set; the processes meet at rank 0's address");
  p.master_port = environment_integer("MASTER_PORT", 29500, 1, 65535);
  return p;
}

// ---------------------------------------------------------------------------------------
// ProcessGroup

// The meeting point (the TCPStore rank 0 hosts) of this process, kept for its whole life and
// shared by the process groups it opens in turn (pneumo cv opens one per fold), each under its
// own key prefix. A store per group would let a process that finished a fold first meet the
// slower rank 0's previous store on the same port, and read that group's stale addresses.
// Keyed by address, port and rank: tests run several ranks as threads of one process.
namespace {

struct MeetingPoint {
  std::mutex mutex;  // held while the store is made: rank 0's waits for the other ranks
  c10::intrusive_ptr<c10d::TCPStore> store;
  int groups = 0;  // opened so far: every process opens them in the same order
};

// Opens a group's view of its meeting point, creating the store on first use. Only the
// lookup holds the lock of all points: making a store blocks until the ranks meet, and the
// ranks of a test are threads of one process that must reach their own points meanwhile.
c10::intrusive_ptr<c10d::Store> meet(const ProcessPlacement& placement, std::chrono::milliseconds timeout) {
  static std::mutex points_mutex;
  static auto* points = new std::map<std::tuple<std::string, int, int>, MeetingPoint>();  // never destroyed
  MeetingPoint* point = nullptr;
  {
    const std::lock_guard<std::mutex> lock(points_mutex);
    point = &(*points)[{placement.master_addr, placement.master_port, placement.rank}];  // map nodes stay put
  }
  const std::lock_guard<std::mutex> lock(point->mutex);
  if (!point->store) {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(placement.master_port);
    options.isServer = placement.rank == 0;
    options.numWorkers = static_cast<std::size_t>(placement.world_size);
    options.waitWorkers = true;
    options.timeout = timeout;
    point->store = c10::make_intrusive<c10d::TCPStore>(placement.master_addr, options);
  }
  point->store->setTimeout(timeout);
  return c10::make_intrusive<c10d::PrefixStore>(fmt::format("group-{}", point->groups++), point->store);
}

}  // namespace

struct ProcessGroup::Impl {
  int rank = 0, size = 1;
  std::string backend;
  c10::Device device{c10::kCPU};  // where the backend's tensors live
  std::chrono::milliseconds timeout{0};
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<Backend> group;

  [[noreturn]] void fail(const std::string& what, const std::exception& e) const {
    std::string message = e.what();
    if (auto cut = message.find("\nException raised from"); cut != std::string::npos) message.resize(cut);
    throw core::DistributedError(fmt::format(
        "rank {} of {}: {} failed: {}. Another process of the run failed, was killed or did not answer within "
        "{} s (train.distributed.timeout_s); see its own messages. The run resumes from its last checkpoint "
        "with `pneumo train --resume RUN_DIR`",
        rank, size, what, message, timeout.count() / 1000.0));
  }

  std::vector<at::Tensor> gather_same_shape(const at::Tensor& local, const std::string& what) const;

  void wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) const {
    try {
      work->wait(timeout);
    } catch (const std::exception& e) {
      fail(what, e);
    }
  }
};

ProcessGroup::ProcessGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProcessGroup::~ProcessGroup() = default;

std::unique_ptr<ProcessGroup> ProcessGroup::connect(const ProcessPlacement& placement, const c10::Device& device,
                                                    std::chrono::milliseconds timeout) {
  auto impl = std::make_unique<Impl>();
  impl->rank = placement.rank;
  impl->size = placement.world_size;
  impl->timeout = timeout;
  impl->backend = device.is_cuda() ? "nccl" : "gloo";
  impl->device = device;
#ifndef PNEUMO_WITH_NCCL
  if (device.is_cuda())
    throw core::DeviceError(fmt::format("data-parallel training on {} needs NCCL, which this build of pneumo does not "
                                        "have (LibTorch {} without c10d NCCL); train on the CPU or rebuild against a "
                                        "CUDA LibTorch with NCCL (see README)",
                                        device.str(), TORCH_VERSION));
#endif
  try {
    impl->store = meet(placement, timeout);
  } catch (const std::exception& e) {
    impl->fail(fmt::format("meeting the other {} process(es) at {}:{} (rank 0 hosts the meeting point)",
                           placement.world_size - 1, placement.master_addr, placement.master_port),
               e);
  }
  try {
    if (impl->backend == "gloo") {
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"); interface != nullptr && *interface != '\0')
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
      else if (is_loopback(placement.master_addr))
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      options->threads = 2;
      impl->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, impl->rank, impl->size, options);
    } else {
#ifdef PNEUMO_WITH_NCCL
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      impl->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl->store, impl->rank, impl->size, options);
#endif
    }
  } catch (const std::exception& e) {
    impl->fail(fmt::format("opening the {} process group", impl->backend), e);
  }
  return std::unique_ptr<ProcessGroup>(new ProcessGroup(std::move(impl)));
}

int ProcessGroup::rank() const { return impl_->rank; }
int ProcessGroup::size() const { return impl_->size; }
const std::string& ProcessGroup::backend() const { return impl_->backend; }
std::chrono::milliseconds ProcessGroup::timeout() const { return impl_->timeout; }

void ProcessGroup::sum(at::Tensor& tensor, const std::string& what) {
  if (tensor.is_contiguous()) {
    sum_async(tensor, what)->wait();
    return;
  }
  at::Tensor dense = tensor.contiguous();
  sum_async(dense, what)->wait();
  tensor.copy_(dense);
}

namespace {

class PendingWork : public ProcessGroup::Pending {
 public:
  PendingWork(const ProcessGroup::Impl& impl, c10::intrusive_ptr<c10d::Work> work, std::string what)
      : impl_(impl), work_(std::move(work)), what_(std::move(what)) {}
  void wait() override {
    if (work_) impl_.wait(work_, what_);
    work_.reset();
  }

 private:
  const ProcessGroup::Impl& impl_;
  c10::intrusive_ptr<c10d::Work> work_;
  std::string what_;
};

}  // namespace

std::unique_ptr<ProcessGroup::Pending> ProcessGroup::sum_async(at::Tensor& tensor, const std::string& what) {
  std::vector<at::Tensor> tensors{tensor};
  try {
    return std::make_unique<PendingWork>(*impl_, impl_->group->allreduce(tensors), what);
  } catch (const std::exception& e) {
    impl_->fail(what, e);
  }
}

void ProcessGroup::broadcast(at::Tensor& tensor, const std::string& what) {
  if (!tensor.is_contiguous()) {  // e.g. channels-last weights
    at::Tensor dense = tensor.contiguous();
    broadcast(dense, what);
    tensor.copy_(dense);
    return;
  }
  std::vector<at::Tensor> tensors{tensor};
  c10::intrusive_ptr<c10d::Work> work;
  try {
    work = impl_->group->broadcast(tensors);
  } catch (const std::exception& e) {
    impl_->fail(what, e);
  }
  impl_->wait(work, what);
}

std::string ProcessGroup::broadcast(const std::string& text, const std::string& what) {
  at::Tensor length = torch::tensor({static_cast<int64_t>(text.size())}, torch::kInt64).to(impl_->device);
  broadcast(length, what);
  at::Tensor bytes = torch::zeros({length.item<int64_t>()}, torch::kUInt8);
  if (impl_->rank == 0 && !text.empty()) std::memcpy(bytes.data_ptr(), text.data(), text.size());
  if (bytes.numel() > 0) {
    bytes = bytes.to(impl_->device);
    broadcast(bytes, what);
    bytes = bytes.cpu();
  }
  return std::string(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(bytes.numel()));
}

// Every process's tensor of one shape, in rank order (an all-gather).
std::vector<at::Tensor> ProcessGroup::Impl::gather_same_shape(const at::Tensor& local, const std::string& what) const {
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int r = 0; r < size; ++r) outputs[0].push_back(torch::empty_like(local));
  std::vector<at::Tensor> inputs{local};
  c10::intrusive_ptr<c10d::Work> work;
  try {
    work = group->allgather(outputs, inputs);
  } catch (const std::exception& e) {
    fail(what, e);
  }
  wait(work, what);
  return outputs[0];
}

at::Tensor ProcessGroup::gather(const at::Tensor& values, const std::string& what) {
  const at::Tensor flat = values.reshape({-1}).contiguous().to(impl_->device);
  const std::vector<at::Tensor> lengths =
      impl_->gather_same_shape(torch::tensor({flat.numel()}, torch::kInt64).to(flat.device()), what);
  int64_t longest = 0;
  for (const auto& l : lengths) longest = std::max(longest, l.item<int64_t>());
  if (longest == 0) return torch::empty({0}, flat.options());  // nothing anywhere (gloo divides by the size)
  at::Tensor padded = torch::zeros({longest}, flat.options());
  if (flat.numel() > 0) padded.slice(0, 0, flat.numel()).copy_(flat);
  const std::vector<at::Tensor> parts = impl_->gather_same_shape(padded, what);
  std::vector<at::Tensor> trimmed;
  for (size_t r = 0; r < parts.size(); ++r) trimmed.push_back(parts[r].slice(0, 0, lengths[r].item<int64_t>()));
  return torch::cat(trimmed);
}

std::vector<double> ProcessGroup::sum_in_rank_order(const std::vector<double>& values, const std::string& what) {
  // Every process passes the same number of values: one all-gather, no lengths to exchange.
  const at::Tensor local = torch::tensor(values, torch::kFloat64).to(impl_->device);
  const at::Tensor all = torch::stack(impl_->gather_same_shape(local, what)).cpu();
  std::vector<double> total(values.size(), 0.0);
  const auto a = all.accessor<double, 2>();
  for (int r = 0; r < impl_->size; ++r)
    for (size_t k = 0; k < values.size(); ++k) total[k] += a[r][static_cast<int64_t>(k)];
  return total;
}

void ProcessGroup::barrier(const std::string& what) {
  // An all-reduce of one number: a barrier that honours the timeout on every backend.
  at::Tensor one = torch::ones({1}, torch::TensorOptions().device(impl_->device));
  sum(one, what);
}

// ---------------------------------------------------------------------------------------
// GradientAverager

struct GradientAverager::State {
  ProcessGroup* group = nullptr;
  std::vector<at::Tensor> parameters;
  std::vector<std::vector<size_t>> buckets;  // parameter indices, in launch order
  std::vector<size_t> bucket_of;             // parameter -> bucket
  std::vector<unsigned> hooks;

  std::mutex mutex;
  bool armed = false;
  // Per parameter, once its gradient for this backward pass arrived: the whole gradient
  // (earlier local accumulation plus this pass's), taken before LibTorch adds it to .grad.
  std::vector<at::Tensor> incoming;
  std::vector<size_t> waiting;       // per bucket: parameters still without a gradient
  size_t next_bucket = 0;            // buckets start in order
  std::vector<at::Tensor> flat;      // per started bucket
  std::vector<std::unique_ptr<ProcessGroup::Pending>> pending;
  double exposed_seconds = 0.0;

  // The parameter's whole gradient, flat; a parameter this pass gave no gradient keeps what
  // earlier passes accumulated (or zero).
  at::Tensor gradient(size_t i) const {
    const at::Tensor& p = parameters[i];
    const at::Tensor g = incoming[i].defined() ? incoming[i] : p.grad();
    return g.defined() ? g.reshape({-1}) : torch::zeros({p.numel()}, p.options());
  }

  // Starts every bucket whose gradients are all there, in order (the caller holds the mutex).
  void start_ready_buckets(bool all) {
    while (next_bucket < buckets.size() && (all || waiting[next_bucket] == 0)) {
      std::vector<at::Tensor> parts;
      for (size_t i : buckets[next_bucket]) parts.push_back(gradient(i));
      flat.push_back(torch::cat(parts));
      pending.push_back(group->sum_async(flat.back(), fmt::format("gradient all-reduce (bucket {} of {})",
                                                                  next_bucket + 1, buckets.size())));
      ++next_bucket;
    }
  }

  void on_gradient(size_t i, const at::Tensor& grad) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!armed || incoming[i].defined()) return;
    const at::Tensor& accumulated = parameters[i].grad();
    incoming[i] = accumulated.defined() ? accumulated + grad.detach() : grad.detach();
    --waiting[bucket_of[i]];
    start_ready_buckets(false);
  }
};

GradientAverager::GradientAverager(ProcessGroup& group, std::vector<at::Tensor> parameters, int64_t bucket_bytes)
    : state_(std::make_shared<State>()) {
  State& s = *state_;
  s.group = &group;
  s.parameters = std::move(parameters);
  s.bucket_of.resize(s.parameters.size());
  int64_t bytes = 0;
  for (size_t k = s.parameters.size(); k-- > 0;) {
    const at::Tensor& p = s.parameters[k];
    const int64_t size = p.numel() * static_cast<int64_t>(p.element_size());
    const bool same_kind = s.buckets.empty() || (p.scalar_type() == s.parameters[s.buckets.back().front()].scalar_type() &&
                                                 p.device() == s.parameters[s.buckets.back().front()].device());
    if (s.buckets.empty() || !same_kind || (bytes > 0 && bytes + size > bucket_bytes)) {
      s.buckets.emplace_back();
      bytes = 0;
    }
    s.buckets.back().push_back(k);
    s.bucket_of[k] = s.buckets.size() - 1;
    bytes += size;
  }
  std::weak_ptr<State> weak = state_;
  for (size_t i = 0; i < s.parameters.size(); ++i)
    s.hooks.push_back(s.parameters[i].register_hook([weak, i](const at::Tensor& grad) {
      if (auto state = weak.lock()) state->on_gradient(i, grad);
    }));
}

GradientAverager::~GradientAverager() {
  for (size_t i = 0; i < state_->parameters.size(); ++i) state_->parameters[i].remove_hook(state_->hooks[i]);
}

void GradientAverager::arm() {
  State& s = *state_;
  std::lock_guard<std::mutex> lock(s.mutex);
  s.armed = true;
  s.incoming.assign(s.parameters.size(), at::Tensor());
  s.waiting.clear();
  for (const auto& bucket : s.buckets) s.waiting.push_back(bucket.size());
  s.next_bucket = 0;
  s.flat.clear();
  s.pending.clear();
}

void GradientAverager::finish() {
  State& s = *state_;
  const auto started = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    s.start_ready_buckets(true);  // parameters without a gradient this pass contribute zeros
    s.armed = false;
  }
  const double world = static_cast<double>(s.group->size());
  torch::NoGradGuard no_grad;
  for (size_t b = 0; b < s.buckets.size(); ++b) {
    s.pending[b]->wait();
    int64_t offset = 0;
    for (size_t i : s.buckets[b]) {
      at::Tensor& p = s.parameters[i];
      const at::Tensor averaged = s.flat[b].slice(0, offset, offset + p.numel()).view(p.sizes()) / world;
      offset += p.numel();
      if (p.grad().defined())
        p.mutable_grad().copy_(averaged);
      else
        p.mutable_grad() = averaged.clone();
    }
  }
  s.exposed_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  s.incoming.clear();
  s.flat.clear();
  s.pending.clear();
}

int64_t GradientAverager::buckets() const { return static_cast<int64_t>(state_->buckets.size()); }
double GradientAverager::exposed_seconds() const { return state_->exposed_seconds; }

// ---------------------------------------------------------------------------------------
// Sharding

EpochShard shard_epoch(const std::vector<int64_t>& order, int64_t global_batch, bool drop_last, int rank, int world) {
  if (global_batch < 1 || world < 1 || rank < 0 || rank >= world)
    throw core::UsageError(fmt::format("shard_epoch: invalid batch {}, rank {} or world size {}", global_batch, rank,
                                       world));
  EpochShard shard;
  const auto n = static_cast<int64_t>(order.size());
  for (int64_t begin = 0; begin < n; begin += global_batch) {
    const int64_t count = std::min(global_batch, n - begin);
    if (count < global_batch && drop_last) break;
    // Rank r takes [begin + r*count/world, begin + (r+1)*count/world): sizes differ by <= 1.
    const int64_t first = begin + rank * count / world, last = begin + (rank + 1) * count / world;
    const int64_t real = last - first;
    if (real > 0) {
      shard.order.insert(shard.order.end(), order.begin() + first, order.begin() + last);
    } else {
      shard.order.push_back(order[static_cast<size_t>(begin)]);  // a repeat, weighted 0
    }
    shard.batch_sizes.push_back(std::max<int64_t>(real, 1));
    shard.real_samples.push_back(real);
    shard.loss_weights.push_back(static_cast<double>(real * world) / static_cast<double>(count));
  }
  return shard;
}

std::vector<int64_t> shard_evenly(const std::vector<int64_t>& items, int rank, int world) {
  const auto n = static_cast<int64_t>(items.size());
  const int64_t first = rank * n / world, last = (rank + 1) * n / world;
  return std::vector<int64_t>(items.begin() + first, items.begin() + last);
}

}  // namespace pneumo::train
