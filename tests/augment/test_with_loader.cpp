// An augmentation pipeline plugged into the data loader: batches stay identical for any number
// of workers, and differ between epochs.
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include "pneumo/augment/pipeline.h"
#include "pneumo/data/demo_set.h"
#include "pneumo/data/loader.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

using namespace pneumo;

TEST_CASE("a seed recipe in the loader gives the same batches for 0, 1 and 2 workers") {
  pneumo::testing::TempDir dir;
  data::DemoSetOptions demo;
  demo.count = 8;
  demo.size = 64;
  data::write_demo_set(dir.path(), demo);
  auto labels = data::LabelTable::read_csv(dir / "train-rle.csv");
  auto index = data::build_dataset_index(labels, dir / "dicom");
  data::PreprocessOptions pre;
  pre.size = 64;
  const data::Dataset dataset(std::move(labels), std::move(index), data::Preprocessor(pre));
  const auto pipeline = augment::Pipeline::from_config(
      core::parse_yaml(R"(
- HorizontalFlip: {p: 0.5}
- ShiftScaleRotate: {p: 0.8}
- ElasticTransform: {alpha: 20, sigma: 4, alpha_affine: 2, p: 0.5}
- OneOf: {p: 0.5, transforms: [RandomContrast, RandomGamma, RandomBrightness]}
- ToFloat: {max_value: 255}
)", "recipe"),
      "augment.train");

  auto batches = [&](int workers, int64_t epoch) {
    data::LoaderOptions options;
    options.batch_size = 3;
    options.workers = workers;
    options.seed = 42;
    options.epoch = epoch;
    options.transform = [&pipeline](data::Sample& s, core::Rng& rng) { pipeline.apply(s.image, s.mask, rng); };
    data::BatchLoader loader(dataset, {0, 1, 2, 3, 4, 5, 6, 7}, options);
    std::vector<data::Batch> out;
    while (auto b = loader.next()) out.push_back(std::move(*b));
    return out;
  };
  const auto reference = batches(0, 1);
  for (int workers : {1, 2}) {
    const auto other = batches(workers, 1);
    REQUIRE(other.size() == reference.size());
    for (size_t b = 0; b < reference.size(); ++b) {
      CHECK(torch::equal(other[b].images, reference[b].images));
      CHECK(torch::equal(other[b].masks, reference[b].masks));
    }
  }
  CHECK_FALSE(torch::equal(batches(2, 2)[0].images, reference[0].images));
  // Masks stay binary through nearest-neighbour warps.
  CHECK(torch::equal(reference[0].masks, (reference[0].masks > 0.5).to(torch::kFloat32)));
}
