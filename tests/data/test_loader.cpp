// The multithreaded batch loader: layout, normalisation, determinism across worker counts,
// bounded prefetch and error propagation.
#include <catch2/catch.hpp>

#include <atomic>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include "pneumo/core/config_schema.h"
#include "pneumo/core/error.h"
#include "pneumo/core/config_node.h"
#include "pneumo/data/data_section.h"
#include "pneumo/data/demo_set.h"
#include "pneumo/data/loader.h"
#include "test_support.h"

using namespace pneumo;
using Catch::Matchers::Contains;
using pneumo::testing::TempDir;
using pneumo::testing::write_file;
namespace fs = std::filesystem;

namespace {

struct DemoData {
  TempDir dir;
  data::Dataset dataset;

  explicit DemoData(int count = 10, bool cache = false) : dataset(open(dir.path(), count, cache)) {}

  static data::Dataset open(const fs::path& dir, int count, bool cache) {
    data::DemoSetOptions demo;
    demo.count = count;
    demo.size = 64;
    data::write_demo_set(dir, demo);
    auto labels = data::LabelTable::read_csv(dir / "train-rle.csv");
    auto index = data::build_dataset_index(labels, dir / "dicom");
    data::PreprocessOptions options;
    options.size = 32;
    if (cache) options.cache_dir = dir / "cache";
    return data::Dataset(std::move(labels), std::move(index), data::Preprocessor(options));
  }
};

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

std::vector<data::Batch> drain(data::BatchLoader& loader) {
  std::vector<data::Batch> out;
  while (auto batch = loader.next()) out.push_back(std::move(*batch));
  CHECK_FALSE(loader.next().has_value());
  return out;
}

// A random flip and brightness change drawn only from the sample's Rng.
void random_transform(data::Sample& s, core::Rng& rng) {
  if (rng.bernoulli(0.5)) {
    cv::flip(s.image, s.image, 1);
    cv::flip(s.mask, s.mask, 1);
  }
  s.image.convertTo(s.image, CV_32F, 1.0 / 255.0, rng.uniform(-0.1, 0.1));
}

}  // namespace

TEST_CASE("batches are NCHW float images, N1HW masks, labels and ids in the given order") {
  DemoData demo(10);
  data::LoaderOptions options;
  options.batch_size = 4;
  options.workers = 2;
  const std::vector<int64_t> order = {9, 3, 0, 5, 1, 2, 8, 7, 6, 4};
  data::BatchLoader loader(demo.dataset, order, options);
  CHECK(loader.batch_count() == 3);
  const auto batches = drain(loader);
  REQUIRE(batches.size() == 3);
  CHECK(batches[0].images.sizes() == torch::IntArrayRef({4, 1, 32, 32}));
  CHECK(batches[0].masks.sizes() == torch::IntArrayRef({4, 1, 32, 32}));
  CHECK(batches[0].labels.sizes() == torch::IntArrayRef({4}));
  CHECK(batches[2].images.size(0) == 2);  // the remainder
  CHECK(batches[0].images.dtype() == torch::kFloat32);
  size_t k = 0;
  for (const auto& batch : batches) {
    for (size_t j = 0; j < batch.ids.size(); ++j, ++k) {
      const data::Sample s = demo.dataset.load(order[k]);
      CHECK(batch.indices[j] == order[k]);
      CHECK(batch.ids[j] == s.image_id);
      CHECK(batch.labels[j].item<float>() == s.label);
      // Pixels are the loaded image / 255, masks 0/1.
      cv::Mat expected;
      s.image.convertTo(expected, CV_32F, 1.0 / 255.0);
      const torch::Tensor want = torch::from_blob(expected.data, {32, 32}, torch::kFloat32);
      CHECK(torch::allclose(batch.images[j][0], want));
      cv::Mat mask;
      s.mask.convertTo(mask, CV_32F, 1.0 / 255.0);
      CHECK(torch::equal(batch.masks[j][0], torch::from_blob(mask.data, {32, 32}, torch::kFloat32)));
    }
  }
  CHECK(k == order.size());
}

TEST_CASE("three channels repeat the grey image and take per-channel mean and std") {
  DemoData demo(2);
  data::LoaderOptions options;
  options.batch_size = 2;
  options.workers = 0;
  options.channels = 3;
  options.mean = {0.485, 0.456, 0.406};
  options.std = {0.229, 0.224, 0.225};
  data::BatchLoader loader(demo.dataset, iota(2), options);
  const auto batch = *loader.next();
  REQUIRE(batch.images.sizes() == torch::IntArrayRef({2, 3, 32, 32}));
  const torch::Tensor grey = (batch.images[0][0] * 0.229 + 0.485);
  for (int c = 1; c < 3; ++c)
    CHECK(torch::allclose(batch.images[0][c] * options.std[c] + options.mean[c], grey, 1e-5, 1e-5));
  CHECK(grey.min().item<float>() >= -1e-5);
  CHECK(grey.max().item<float>() <= 1 + 1e-5);
}

TEST_CASE("batches are identical for 0, 1 and 3 workers with a random transform") {
  DemoData demo(11);
  std::vector<std::vector<data::Batch>> runs;
  for (int workers : {0, 1, 3}) {
    data::LoaderOptions options;
    options.batch_size = 3;
    options.workers = workers;
    options.prefetch = 2;
    options.seed = 5;
    options.epoch = 2;
    options.transform = random_transform;
    data::BatchLoader loader(demo.dataset, iota(11), options);
    runs.push_back(drain(loader));
  }
  for (size_t r = 1; r < runs.size(); ++r) {
    REQUIRE(runs[r].size() == runs[0].size());
    for (size_t b = 0; b < runs[0].size(); ++b) {
      CHECK(runs[r][b].ids == runs[0][b].ids);
      CHECK(torch::equal(runs[r][b].images, runs[0][b].images));
      CHECK(torch::equal(runs[r][b].masks, runs[0][b].masks));
    }
  }
  // Another epoch draws other augmentations.
  data::LoaderOptions options;
  options.batch_size = 3;
  options.seed = 5;
  options.epoch = 3;
  options.transform = random_transform;
  data::BatchLoader other(demo.dataset, iota(11), options);
  CHECK_FALSE(torch::equal(other.next()->images, runs[0][0].images));
}

TEST_CASE("drop_last drops a short final batch") {
  DemoData demo(7);
  data::LoaderOptions options;
  options.batch_size = 3;
  options.drop_last = true;
  data::BatchLoader loader(demo.dataset, iota(7), options);
  CHECK(loader.batch_count() == 2);
  CHECK(drain(loader).size() == 2);
}

TEST_CASE("workers never run more than `prefetch` batches ahead of the consumer") {
  DemoData demo(12);
  std::atomic<int> loaded{0};
  data::LoaderOptions options;
  options.batch_size = 1;
  options.workers = 3;
  options.prefetch = 2;
  options.transform = [&](data::Sample&, core::Rng&) { ++loaded; };
  data::BatchLoader loader(demo.dataset, iota(12), options);
  // Wait (generously) for the workers to fill the queue, then give them time to overrun it.
  const auto settle = [&](int expected) {
    for (int i = 0; i < 1000 && loaded.load() < expected; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return loaded.load();
  };
  CHECK(settle(2) == 2);  // nothing consumed yet: exactly `prefetch` batches built
  loader.next();
  CHECK(settle(3) == 3);
  // Destroying a loader with work outstanding stops and joins its workers.
}

TEST_CASE("a worker's error reaches the consumer at its batch, naming the file") {
  DemoData demo(6);
  const fs::path victim = demo.dataset.index().entries[4].file;
  write_file(victim, "truncated");
  for (int workers : {0, 2}) {
    INFO("workers " << workers);
    data::LoaderOptions options;
    options.batch_size = 2;
    options.workers = workers;
    data::BatchLoader loader(demo.dataset, iota(6), options);
    CHECK(loader.next().has_value());
    CHECK(loader.next().has_value());
    CHECK_THROWS_WITH(loader.next(), Contains(victim.filename().string()));
    CHECK_FALSE(loader.next().has_value());  // the epoch ends at the error
  }
}

TEST_CASE("a transform leaving samples of different sizes is a data error naming the sample") {
  DemoData demo(4);
  data::LoaderOptions options;
  options.batch_size = 4;
  options.workers = 1;
  options.transform = [](data::Sample& s, core::Rng&) {
    if (s.index == 2) cv::resize(s.image, s.image, cv::Size(16, 16));
  };
  data::BatchLoader loader(demo.dataset, iota(4), options);
  CHECK_THROWS_WITH(loader.next(), Contains(demo.dataset.index().entries[2].image_id) &&
                                       Contains("16x16"));
}

TEST_CASE("invalid loader options are configuration errors") {
  DemoData demo(2);
  auto make = [&](auto change) {
    data::LoaderOptions options;
    change(options);
    data::BatchLoader loader(demo.dataset, iota(2), options);
  };
  CHECK_THROWS_AS(make([](auto& o) { o.batch_size = 0; }), core::ConfigError);
  CHECK_THROWS_AS(make([](auto& o) { o.mean = {0.1, 0.2}; }), core::ConfigError);
  CHECK_THROWS_AS(make([](auto& o) { o.std = {0.0}; }), core::ConfigError);
  CHECK_THROWS_AS(make([](auto& o) { o.prefetch = 0; }), core::ConfigError);
  if (!torch::cuda::is_available())
    CHECK_THROWS_WITH(make([](auto& o) { o.pin_memory = true; }), Contains("CUDA"));
  CHECK_THROWS(data::BatchLoader(demo.dataset, {0, 5}, data::LoaderOptions{}));
}

TEST_CASE("data.workers is auto or a count, and auto takes the thread plan's figure") {
  const auto read = [](const std::string& yaml) {
    return core::read_section<data::DataSection>(core::parse_yaml(yaml, "data.yaml"), "data");
  };
  CHECK(data::DataSection{}.workers == "auto");
  CHECK(data::loader_options(read("workers: auto"), 3).workers == 3);
  CHECK(data::loader_options(read("workers: 0"), 3).workers == 0);
  CHECK(data::loader_options(read("workers: 5"), 3).workers == 5);
  for (const char* bad : {"workers: many", "workers: -1", "workers: 257", "workers: 2.5"}) {
    INFO(bad);
    CHECK_THROWS_WITH(read(bad), Contains("data.yaml:1") && Contains("auto or a count 0..256"));
  }
}

TEST_CASE("loading through the cache gives the same batches as decoding") {
  DemoData plain(5, /*cache=*/false);
  data::LoaderOptions options;
  options.batch_size = 5;
  data::BatchLoader direct(plain.dataset, iota(5), options);
  const auto expected = *direct.next();

  DemoData cached(5, /*cache=*/true);
  for (int epoch = 0; epoch < 2; ++epoch) {
    data::BatchLoader loader(cached.dataset, iota(5), options);
    CHECK(torch::equal(loader.next()->images, expected.images));
  }
  CHECK(cached.dataset.preprocessor().counts().decodes == 5);
  CHECK(cached.dataset.preprocessor().counts().hits == 5);
}
