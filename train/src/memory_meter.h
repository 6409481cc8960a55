// The memory a device's tensors hold, counted while a MemoryMeter lives, with a limit.
//
// On the CPU every allocation through c10's CPU allocator is counted (a counting allocator
// is put in front of it for the meter's life): weights, gradients, optimiser state and
// activations. Memory that oneDNN or other libraries take outside c10's allocator is not seen.
// On CUDA the caching allocator's own statistics are read (its reserved bytes: what the
// process holds on the device, cache included) and the limit is set as its memory fraction.
// An allocation past the limit throws c10::Error and exceeded() becomes true.
#pragma once

#include <cstdint>

#include <c10/core/Device.h>

namespace pneumo::train {

class MemoryMeter {
 public:
  MemoryMeter(const c10::Device& device, int64_t limit_bytes);
  ~MemoryMeter();
  MemoryMeter(const MemoryMeter&) = delete;
  MemoryMeter& operator=(const MemoryMeter&) = delete;

  int64_t current_bytes() const;
  int64_t peak_bytes() const;  // since construction or the last reset_peak()
  void reset_peak();
  // Whether an allocation was refused for the limit (since construction or clear_exceeded()).
  bool exceeded() const;
  void clear_exceeded();
  // The memory of the device as a whole: CUDA: its total; CPU: MemAvailable (/proc/meminfo).
  static int64_t device_memory_bytes(const c10::Device& device);

 private:
  c10::Device device_;
};

}  // namespace pneumo::train
