#include "memory_meter.h"

#include <atomic>
#include <cstring>
#include <fstream>
#include <sstream>
#include <mutex>
#include <string>
#include <unordered_map>

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>
#include <fmt/format.h>
#include <torch/version.h>

#ifdef PNEUMO_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "pneumo/core/error.h"

namespace pneumo::train {

namespace {

// LibTorch 2.3 made Allocator::allocate non-const and added copy_data.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define PNEUMO_ALLOCATE_CONST
#define PNEUMO_ALLOCATOR_COPY_DATA 1
#else
#define PNEUMO_ALLOCATE_CONST const
#define PNEUMO_ALLOCATOR_COPY_DATA 0
#endif

// Counts the bytes held through it and refuses allocations past a limit; forwards to the
// allocator that was in place. c10 wants a CPU allocation's context to be its data pointer
// (raw_allocate relies on it), so what each pointer holds is kept in a table. One for the
// process, never destroyed: tensors it allocated may outlive any meter and still come back to
// release().
class CountingCpuAllocator final : public c10::Allocator {
 public:
  c10::Allocator* base = nullptr;
  std::atomic<int64_t> current{0}, peak{0}, limit{0};
  std::atomic<bool> exceeded{false};

  c10::DataPtr allocate(size_t n) PNEUMO_ALLOCATE_CONST override {
    auto& self = const_cast<CountingCpuAllocator&>(*this);
    const auto bytes = static_cast<int64_t>(n);
    const int64_t now = self.current.fetch_add(bytes) + bytes;
    const int64_t cap = self.limit.load();
    if (cap > 0 && now > cap) {
      self.current.fetch_sub(bytes);
      self.exceeded = true;
      TORCH_CHECK(false, fmt::format("memory budget of {} bytes exceeded: {} more requested with {} held", cap, bytes,
                                     now - bytes));
    }
    for (int64_t seen = self.peak.load(); now > seen && !self.peak.compare_exchange_weak(seen, now);) {
    }
    c10::DataPtr inner = base->allocate(n);
    void* data = inner.get();
    if (data == nullptr) {  // zero bytes
      self.current.fetch_sub(bytes);
      return {nullptr, nullptr, &release, c10::Device(c10::DeviceType::CPU)};
    }
    {
      std::lock_guard<std::mutex> lock(self.mutex_);
      self.held_.emplace(data, Held{std::move(inner), bytes});
    }
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &release; }

#if PNEUMO_ALLOCATOR_COPY_DATA
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }
#endif

 private:
  struct Held {
    c10::DataPtr inner;
    int64_t bytes;
  };
  std::mutex mutex_;
  std::unordered_map<void*, Held> held_;

  static void release(void* data);
};

CountingCpuAllocator& counting_allocator() {
  static auto* allocator = new CountingCpuAllocator();
  return *allocator;
}

void CountingCpuAllocator::release(void* data) {
  if (data == nullptr) return;
  CountingCpuAllocator& self = counting_allocator();
  Held held;
  {
    std::lock_guard<std::mutex> lock(self.mutex_);
    auto it = self.held_.find(data);
    if (it == self.held_.end()) return;
    held = std::move(it->second);
    self.held_.erase(it);
  }
  self.current.fetch_sub(held.bytes);
}  // the base allocator's DataPtr frees the memory here

// Above any allocator LibTorch registers itself (SetAllocator keeps the highest priority).
constexpr uint8_t kMeterPriority = 255;

int64_t available_host_memory() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  throw core::DeviceError("cannot read MemAvailable from /proc/meminfo; give the memory budget (--gpu-memory GB)");
}

}  // namespace

MemoryMeter::MemoryMeter(const c10::Device& device, int64_t limit_bytes) : device_(device) {
  if (device.is_cpu()) {
    CountingCpuAllocator& counter = counting_allocator();
    if (counter.base != nullptr) throw core::DeviceError("a CPU memory meter is already running in this process");
    counter.base = c10::GetCPUAllocator();
    counter.peak = counter.current.load();
    counter.limit = limit_bytes;
    counter.exceeded = false;
    c10::SetCPUAllocator(&counter, kMeterPriority);
    return;
  }
#ifdef PNEUMO_WITH_CUDA
  if (device.is_cuda()) {
    const int index = device.has_index() ? device.index() : 0;
    const double total = static_cast<double>(device_memory_bytes(device));
    c10::cuda::CUDACachingAllocator::emptyCache();
    if (limit_bytes > 0)
      c10::cuda::CUDACachingAllocator::setMemoryFraction(std::min(1.0, static_cast<double>(limit_bytes) / total), index);
    c10::cuda::CUDACachingAllocator::resetPeakStats(index);
    return;
  }
#endif
  throw core::DeviceError(fmt::format("cannot measure memory on {}: this build counts CPU memory{}", device.str(),
#ifdef PNEUMO_WITH_CUDA
                                      " and CUDA memory"
#else
                                      " only (a CUDA LibTorch build adds CUDA)"
#endif
                                      ));
}

MemoryMeter::~MemoryMeter() {
  if (device_.is_cpu()) {
    CountingCpuAllocator& counter = counting_allocator();
    c10::SetCPUAllocator(counter.base, kMeterPriority);
    counter.base = nullptr;
    counter.limit = 0;
    return;
  }
#ifdef PNEUMO_WITH_CUDA
  const int index = device_.has_index() ? device_.index() : 0;
  c10::cuda::CUDACachingAllocator::setMemoryFraction(1.0, index);
  c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

#ifdef PNEUMO_WITH_CUDA
namespace {
// The caching allocator's reserved bytes on a device, now and at their peak. (The statistics'
// types moved from c10::cuda::CUDACachingAllocator to c10::CachingAllocator in LibTorch 2.x.)
struct Reserved {
  int64_t current = 0, peak = 0;
};
Reserved reserved(const c10::Device& device) {
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.has_index() ? device.index() : 0);
  const auto& bytes = stats.reserved_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)];
  return {bytes.current, bytes.peak};
}
}  // namespace
#endif

int64_t MemoryMeter::current_bytes() const {
#ifdef PNEUMO_WITH_CUDA
  if (device_.is_cuda()) return reserved(device_).current;
#endif
  return counting_allocator().current.load();
}

int64_t MemoryMeter::peak_bytes() const {
#ifdef PNEUMO_WITH_CUDA
  if (device_.is_cuda()) return reserved(device_).peak;
#endif
  return counting_allocator().peak.load();
}

void MemoryMeter::reset_peak() {
#ifdef PNEUMO_WITH_CUDA
  if (device_.is_cuda()) {
    c10::cuda::CUDACachingAllocator::emptyCache();
    c10::cuda::CUDACachingAllocator::resetPeakStats(device_.has_index() ? device_.index() : 0);
    return;
  }
#endif
  counting_allocator().peak = counting_allocator().current.load();
}

bool MemoryMeter::exceeded() const {
  return device_.is_cpu() ? counting_allocator().exceeded.load() : false;
}

void MemoryMeter::clear_exceeded() {
  if (device_.is_cpu()) counting_allocator().exceeded = false;
}

int64_t MemoryMeter::device_memory_bytes(const c10::Device& device) {
#ifdef PNEUMO_WITH_CUDA
  if (device.is_cuda())
    return static_cast<int64_t>(at::cuda::getDeviceProperties(device.has_index() ? device.index() : 0)->totalGlobalMem);
#endif
  (void)device;
  return available_host_memory();
}

}  // namespace pneumo::train
