#include "pneumo/data/loader.h"

#include <algorithm>

#include <fmt/format.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include "pneumo/core/error.h"

namespace pneumo::data {

namespace {

std::string describe(const cv::Mat& m) {
  return fmt::format("{}x{} {}", m.cols, m.rows,
                     m.type() == CV_8UC1 ? "8-bit" : m.type() == CV_32FC1 ? "float" : "other type");
}

// Pixel value -> model input for one channel: (pixel * scale - mean) / std.
void normalise_into(const cv::Mat& image, float* out, double mean, double std) {
  const bool is_byte = image.type() == CV_8UC1;
  const float scale = static_cast<float>((is_byte ? 1.0 / 255.0 : 1.0) / std);
  const float shift = static_cast<float>(-mean / std);
  for (int y = 0; y < image.rows; ++y) {
    float* row = out + static_cast<size_t>(y) * image.cols;
    if (is_byte) {
      const uint8_t* src = image.ptr<uint8_t>(y);
      for (int x = 0; x < image.cols; ++x) row[x] = static_cast<float>(src[x]) * scale + shift;
    } else {
      const float* src = image.ptr<float>(y);
      for (int x = 0; x < image.cols; ++x) row[x] = src[x] * scale + shift;
    }
  }
}

}  // namespace

Batch Batch::to(const c10::Device& device) const {
  Batch out;
  const bool non_blocking = images.is_pinned();
  out.images = images.to(device, non_blocking);
  out.masks = masks.to(device, non_blocking);
  out.labels = labels.to(device, non_blocking);
  out.ids = ids;
  out.indices = indices;
  return out;
}

Batch collate(std::vector<Sample>& samples, const LoaderOptions& options) {
  if (samples.empty()) throw core::Error("collate: no samples");
  const cv::Size size = samples.front().image.size();
  for (const Sample& s : samples) {
    const bool image_ok = (s.image.type() == CV_8UC1 || s.image.type() == CV_32FC1) &&
                          s.image.size() == size;
    if (!image_ok || s.mask.type() != CV_8UC1 || s.mask.size() != size)
      throw core::DataError(fmt::format(
          "{}: image {} and mask {} after the transform; expected {}x{} 8-bit or float image "
          "and {}x{} 8-bit mask like the batch's first sample ({})",
          s.image_id, describe(s.image), describe(s.mask), size.width, size.height, size.width,
          size.height, samples.front().image_id));
  }
  const auto n = static_cast<int64_t>(samples.size());
  const int64_t c = options.channels;
  const auto options_f32 = torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(options.pin_memory);
  Batch batch;
  batch.images = torch::empty({n, c, size.height, size.width}, options_f32);
  batch.masks = torch::empty({n, 1, size.height, size.width}, options_f32);
  batch.labels = torch::empty({n}, options_f32);
  const size_t plane = static_cast<size_t>(size.height) * size.width;
  float* images = batch.images.data_ptr<float>();
  float* masks = batch.masks.data_ptr<float>();
  float* labels = batch.labels.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) {
    const Sample& s = samples[static_cast<size_t>(i)];
    for (int64_t ch = 0; ch < c; ++ch) {
      const double mean = options.mean.size() == 1 ? options.mean[0] : options.mean[ch];
      const double std = options.std.size() == 1 ? options.std[0] : options.std[ch];
      normalise_into(s.image, images + (i * c + ch) * plane, mean, std);
    }
    normalise_into(s.mask, masks + i * plane, 0.0, 1.0);
    labels[i] = s.label;
    batch.ids.push_back(s.image_id);
    batch.indices.push_back(s.index);
  }
  return batch;
}

BatchLoader::BatchLoader(const Dataset& dataset, std::vector<int64_t> order, LoaderOptions options)
    : dataset_(dataset), order_(std::move(order)), options_(std::move(options)) {
  const LoaderOptions& o = options_;
  if (o.batch_size < 1)
    throw core::ConfigError(fmt::format("batch size: expected >= 1; got {}", o.batch_size));
  if (o.workers < 0) throw core::ConfigError(fmt::format("workers: expected >= 0; got {}", o.workers));
  if (o.prefetch < 1) throw core::ConfigError(fmt::format("prefetch: expected >= 1; got {}", o.prefetch));
  if (o.channels != 1 && o.channels != 3)
    throw core::ConfigError(fmt::format("channels: expected 1 or 3; got {}", o.channels));
  for (const auto* values : {&o.mean, &o.std})
    if (values->size() != 1 && values->size() != static_cast<size_t>(o.channels))
      throw core::ConfigError(fmt::format("{}: expected 1 or {} values; got {}",
                                          values == &o.mean ? "mean" : "std", o.channels,
                                          values->size()));
  for (double s : o.std)
    if (!(s > 0.0)) throw core::ConfigError(fmt::format("std: expected values > 0; got {}", s));
  if (o.pin_memory && !torch::cuda::is_available())
    throw core::ConfigError("pinned memory needs CUDA, which this LibTorch build or machine lacks");
  for (int64_t i : order_)
    if (i < 0 || i >= dataset_.size())
      throw core::Error(fmt::format("loader: dataset index {} outside 0..{}", i, dataset_.size() - 1));

  const auto samples = static_cast<int64_t>(order_.size());
  batch_count_ = o.drop_last ? samples / o.batch_size : (samples + o.batch_size - 1) / o.batch_size;
  const int64_t threads = std::min<int64_t>(o.workers, batch_count_);
  for (int64_t t = 0; t < threads; ++t) threads_.emplace_back([this] { work(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  for (std::thread& t : threads_) t.join();
}

Batch BatchLoader::build(int64_t batch) const {
  const int64_t begin = batch * options_.batch_size;
  const int64_t end = std::min<int64_t>(begin + options_.batch_size, order_.size());
  std::vector<Sample> samples;
  samples.reserve(static_cast<size_t>(end - begin));
  for (int64_t i = begin; i < end; ++i) {
    Sample sample = dataset_.load(order_[static_cast<size_t>(i)]);
    if (options_.transform) {
      core::Rng rng = core::Rng::for_sample(options_.seed, static_cast<uint64_t>(options_.epoch),
                                            static_cast<uint64_t>(sample.index));
      options_.transform(sample, rng);
    }
    samples.push_back(std::move(sample));
  }
  return collate(samples, options_);
}

void BatchLoader::work() {
  for (;;) {
    int64_t batch = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [this] {
        return stopping_ || next_to_claim_ >= batch_count_ ||
               next_to_claim_ < next_to_deliver_ + options_.prefetch;
      });
      if (stopping_ || next_to_claim_ >= batch_count_) return;
      batch = next_to_claim_++;
    }
    std::optional<Batch> built;
    std::exception_ptr error;
    try {
      built = build(batch);
    } catch (...) {
      error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (error)
        failed_.emplace(batch, error);
      else
        ready_.emplace(batch, std::move(*built));
    }
    changed_.notify_all();
  }
}

std::optional<Batch> BatchLoader::next() {
  if (threads_.empty()) {
    if (next_to_deliver_ >= batch_count_) return std::nullopt;
    try {
      return build(next_to_deliver_++);
    } catch (...) {
      next_to_deliver_ = batch_count_;  // the epoch ends at the first error, as with workers
      throw;
    }
  }
  std::unique_lock<std::mutex> lock(mutex_);
  if (next_to_deliver_ >= batch_count_) return std::nullopt;
  const int64_t batch = next_to_deliver_;
  changed_.wait(lock, [&] { return ready_.count(batch) != 0 || failed_.count(batch) != 0; });
  if (auto failed = failed_.find(batch); failed != failed_.end()) {
    const std::exception_ptr error = failed->second;
    next_to_deliver_ = batch_count_;  // the epoch ends here; workers stop claiming
    stopping_ = true;
    lock.unlock();
    changed_.notify_all();
    std::rethrow_exception(error);
  }
  auto ready = ready_.find(batch);
  Batch out = std::move(ready->second);
  ready_.erase(ready);
  ++next_to_deliver_;
  lock.unlock();
  changed_.notify_all();
  return out;
}

}  // namespace pneumo::data
