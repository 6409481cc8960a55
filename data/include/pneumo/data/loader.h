// The multithreaded batch loader.
//
// Worker threads each build whole batches (load, transform, stack) into a bounded queue that
// holds at most `prefetch` finished or in-progress batches ahead of the consumer. Batches come
// out in order, and every sample's transform gets an Rng seeded from (seed, epoch, dataset
// index), so the batches are identical for any number of workers, including none.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "pneumo/core/ordered_workers.h"
#include "pneumo/core/random.h"
#include "pneumo/data/dataset.h"

namespace pneumo::data {

// Changes a sample in place (augmentation). Must be thread-safe and use only `rng` for
// randomness; the image may become CV_32FC1 (0..1) and change size, as long as every sample
// of a batch ends up the same size.
using SampleTransform = std::function<void(Sample&, core::Rng&)>;

struct LoaderOptions {
  int64_t batch_size = 8;
  bool drop_last = false;  // drop a last batch smaller than batch_size
  int workers = 2;         // 0: batches are built on the calling thread
  int prefetch = 4;        // batches built ahead of the consumer, at least 1
  uint64_t seed = 0;
  int64_t epoch = 0;
  int channels = 1;          // 1, or 3 (grey repeated, for ImageNet encoders)
  std::vector<double> mean{0.0};  // per channel (or one for all), applied to pixels in 0..1
  std::vector<double> std{1.0};
  bool pin_memory = false;  // allocate batches in page-locked memory (CUDA builds only)
  SampleTransform transform;  // optional
};

struct Batch {
  at::Tensor images;  // [N, C, H, W] float32, (pixel / 255 - mean) / std
  at::Tensor masks;   // [N, 1, H, W] float32, 0..1
  at::Tensor labels;  // [N] float32, 0 or 1
  at::Tensor targets;  // [N, classes] float32, 1, 0 or NaN (ignored); class tables only, else undefined
  std::vector<std::string> ids;
  std::vector<int64_t> indices;  // dataset indices

  // A copy on `device`; non-blocking when the batch is in pinned memory.
  Batch to(const c10::Device& device) const;
};

class BatchLoader {
 public:
  // `order`: dataset indices in visiting order (from an EpochSampler). Throws ConfigError for
  // invalid options (batch size < 1, negative workers, mean/std lengths not 1 or channels,
  // pinned memory without CUDA).
  BatchLoader(const Dataset& dataset, std::vector<int64_t> order, LoaderOptions options);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  int64_t batch_count() const { return batch_count_; }

  // The next batch, or nullopt after the last. Rethrows a worker's error (DataError naming
  // the file, ...) at the batch where it happened.
  std::optional<Batch> next();

 private:
  Batch build(int64_t batch) const;

  const Dataset& dataset_;
  std::vector<int64_t> order_;
  LoaderOptions options_;
  int64_t batch_count_ = 0;
  std::unique_ptr<core::OrderedWorkers<Batch>> workers_;  // last: its threads use the above
};

// Stacks samples into a batch (used by BatchLoader; exposed for tests and inference).
// Throws DataError naming the sample whose image or mask size or type differs from the first.
Batch collate(std::vector<Sample>& samples, const LoaderOptions& options);

// Stacks images of one size (CV_8UC1, or CV_32FC1 in 0..1) into [N, C, H, W] float32,
// normalised as batches are (options.channels, mean, std, pin_memory). Inference uses it.
at::Tensor image_tensor(const std::vector<cv::Mat>& images, const LoaderOptions& options);

}  // namespace pneumo::data
