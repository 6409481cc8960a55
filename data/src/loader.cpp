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

// All channels of one image: the grey image repeated, normalised per channel.
void write_channels(const cv::Mat& image, float* out, const LoaderOptions& options) {
  const size_t plane = static_cast<size_t>(image.rows) * image.cols;
  for (int ch = 0; ch < options.channels; ++ch) {
    const double mean = options.mean.size() == 1 ? options.mean[0] : options.mean[ch];
    const double std = options.std.size() == 1 ? options.std[0] : options.std[ch];
    normalise_into(image, out + ch * plane, mean, std);
  }
}

}  // namespace

at::Tensor image_tensor(const std::vector<cv::Mat>& images, const LoaderOptions& options) {
  if (images.empty()) throw core::Error("image_tensor: no images");
  const cv::Size size = images.front().size();
  for (const cv::Mat& image : images)
    if ((image.type() != CV_8UC1 && image.type() != CV_32FC1) || image.size() != size)
      throw core::DataError(fmt::format("image {} among {}x{} images; expected all the same size, 8-bit or float",
                                        describe(image), size.width, size.height));
  const auto n = static_cast<int64_t>(images.size());
  at::Tensor out = torch::empty({n, options.channels, size.height, size.width},
                                torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(options.pin_memory));
  const size_t stride = static_cast<size_t>(options.channels) * size.height * size.width;
  for (int64_t i = 0; i < n; ++i) write_channels(images[static_cast<size_t>(i)], out.data_ptr<float>() + i * stride, options);
  return out;
}

Batch Batch::to(const c10::Device& device) const {
  Batch out;
  const bool non_blocking = images.is_pinned();
  out.images = images.to(device, non_blocking);
  out.masks = masks.to(device, non_blocking);
  out.labels = labels.to(device, non_blocking);
  if (targets.defined()) out.targets = targets.to(device, non_blocking);
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
  const auto classes = static_cast<int64_t>(samples.front().targets.size());
  if (classes > 0) batch.targets = torch::empty({n, classes}, options_f32);
  for (int64_t i = 0; i < n; ++i) {
    const Sample& s = samples[static_cast<size_t>(i)];
    write_channels(s.image, images + i * c * plane, options);
    normalise_into(s.mask, masks + i * plane, 0.0, 1.0);
    labels[i] = s.label;
    if (static_cast<int64_t>(s.targets.size()) != classes)
      throw core::DataError(fmt::format("{}: {} class targets; expected {} like the batch's first sample ({})",
                                        s.image_id, s.targets.size(), classes, samples.front().image_id));
    if (classes > 0) std::copy(s.targets.begin(), s.targets.end(), batch.targets.data_ptr<float>() + i * classes);
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
  workers_ = std::make_unique<core::OrderedWorkers<Batch>>(batch_count_, o.workers, o.prefetch,
                                                           [this](int64_t batch) { return build(batch); });
}

BatchLoader::~BatchLoader() = default;

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

std::optional<Batch> BatchLoader::next() { return workers_->next(); }

}  // namespace pneumo::data
