// Checkpoints: round trip, Python reads them, damaged and foreign files are refused by name.
#include <catch2/catch.hpp>

#include <torch/torch.h>

#include "pneumo/core/error.h"
#include "pneumo/models/torch_save.h"
#include "pneumo/train/checkpoint.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

using namespace pneumo;
using Catch::Matchers::Contains;

TEST_CASE("a checkpoint keeps weights, counters, metrics, config and trainer state") {
  pneumo::testing::TempDir dir;
  train::Checkpoint c;
  c.config_yaml = "model:\n  name: unet\n";
  c.epoch = 3;
  c.step = 120;
  c.model = {{"encoder.conv1.weight", torch::randn({4, 1, 3, 3})},
             {"encoder.bn1.num_batches_tracked", torch::tensor(7, torch::kLong)}};
  c.metrics = {{"val_dice", 0.8125}, {"train_loss", 0.25}};
  c.state = models::pickle_dict({{"optimizer", models::pickle_dict({{"lr", models::pickle_float(1e-3)}})},
                                 {"rng", models::pickle_tensor(torch::arange(10, torch::kByte))}});
  train::write_checkpoint(dir / "last.ckpt", c);

  const train::Checkpoint r = train::read_checkpoint(dir / "last.ckpt");
  CHECK(r.config_yaml == c.config_yaml);
  CHECK(r.epoch == 3);
  CHECK(r.step == 120);
  REQUIRE(r.model.size() == 2);
  CHECK(r.model[0].first == "encoder.conv1.weight");
  CHECK(torch::equal(r.model[0].second, c.model[0].second));
  CHECK(r.model[1].second.item<int64_t>() == 7);
  CHECK(r.metrics == c.metrics);
  REQUIRE(r.state);
  CHECK(models::pickle_get(models::pickle_get(r.state, "optimizer"), "lr")->number == 1e-3);
  CHECK(torch::equal(models::pickle_get(r.state, "rng")->tensor, torch::arange(10, torch::kByte)));

  // Python reads it with torch.load, and its "model" is a state dict.
  const auto python = pneumo::testing::run_command(
      {PNEUMO_REFERENCE_PYTHON, "-c",
       "import sys, torch; c = torch.load(sys.argv[1]); "
       "print(c['format'], c['version'], c['epoch'], c['step'], type(c['model']).__name__, "
       "list(c['model'])[0], tuple(c['model']['encoder.conv1.weight'].shape), c['metrics']['val_dice'])",
       (dir / "last.ckpt").string()});
  INFO(python.err);
  CHECK(python.exit_code == 0);
  CHECK_THAT(python.out, Contains("pneumo-checkpoint 1 3 120 OrderedDict encoder.conv1.weight (4, 1, 3, 3) 0.8125"));
}

TEST_CASE("foreign, damaged and newer checkpoints are refused with the reason") {
  pneumo::testing::TempDir dir;
  models::save_weights(models::NamedTensors{{"w", torch::ones({2})}}, dir / "weights.pth");
  CHECK_THROWS_WITH(train::read_checkpoint(dir / "weights.pth"),
                    Contains("weights.pth") && Contains("not a pneumo checkpoint"));
  CHECK_THROWS_WITH(train::read_checkpoint(dir / "none.ckpt"), Contains("none.ckpt") && Contains("not found"));
  train::Checkpoint c;
  c.model = {{"w", torch::ones({1000})}};
  train::write_checkpoint(dir / "good.ckpt", c);
  const std::string bytes = pneumo::testing::read_file(dir / "good.ckpt");
  for (size_t cut : {size_t{100}, bytes.size() / 2, bytes.size() - 30}) {
    pneumo::testing::write_file(dir / "cut.ckpt", bytes.substr(0, cut));
    CHECK_THROWS_AS(train::read_checkpoint(dir / "cut.ckpt"), core::CheckpointError);
  }
  models::save_weights(models::NamedTensors{}, dir / "empty.pth");  // an empty OrderedDict
  const auto newer = models::pickle_dict({{"format", models::pickle_string("pneumo-checkpoint")},
                                          {"version", models::pickle_int(train::kCheckpointVersion + 1)}});
  const std::string newer_bytes = models::torch_save_bytes(newer);
  pneumo::testing::write_file(dir / "newer.ckpt", newer_bytes);
  CHECK_THROWS_WITH(train::read_checkpoint(dir / "newer.ckpt"), Contains("newer than this pneumo reads"));
}

namespace {

train::Checkpoint big_checkpoint(float value) {
  train::Checkpoint c;
  c.config_yaml = "model: {name: unet}\n";
  c.epoch = 3;
  c.model.emplace_back("weight", torch::full({256, 1024}, value));  // 1 MiB: the file is mostly tensor bytes
  c.state = models::pickle_dict({{"rng_cpu", models::pickle_tensor(torch::arange(16))},
                                 {"checksum", models::pickle_int(5)}});  // a nested key of that name is data
  return c;
}

}  // namespace

TEST_CASE("a checksum finds a flipped bit or a truncation anywhere in a checkpoint") {
  pneumo::testing::TempDir dir;
  train::write_checkpoint(dir / "c.ckpt", big_checkpoint(0.25f));
  CHECK(train::read_checkpoint(dir / "c.ckpt").model.at(0).second[7][7].item<float>() == 0.25f);
  std::string bytes = pneumo::testing::read_file(dir / "c.ckpt");
  // A bit in the middle of the tensor data: the zip and the pickle are still readable.
  std::string flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x04;
  pneumo::testing::write_file(dir / "flipped.ckpt", flipped);
  CHECK_THROWS_WITH(train::read_checkpoint(dir / "flipped.ckpt"), Contains("flipped.ckpt") && Contains("checksum"));
  pneumo::testing::write_file(dir / "cut.ckpt", bytes.substr(0, bytes.size() * 3 / 4));
  CHECK_THROWS_AS(train::read_checkpoint(dir / "cut.ckpt"), core::CheckpointError);
  // A single-byte change anywhere is refused, or it fell in bytes that hold no content (zip
  // padding, timestamps) and the checkpoint reads back the same.
  int refused = 0, harmless = 0, samples = 0;
  const train::Checkpoint original = train::read_checkpoint(dir / "c.ckpt");
  for (size_t at = 0; at < bytes.size(); at += bytes.size() / 97, ++samples) {
    std::string changed = bytes;
    changed[at] = static_cast<char>(changed[at] ^ 0x5a);
    pneumo::testing::write_file(dir / "x.ckpt", changed);
    try {
      const train::Checkpoint c = train::read_checkpoint(dir / "x.ckpt");
      INFO("byte " << at);
      CHECK(torch::equal(c.model.at(0).second, original.model.at(0).second));
      CHECK(c.config_yaml == original.config_yaml);
      CHECK(c.epoch == original.epoch);
      ++harmless;
    } catch (const core::CheckpointError&) {
      ++refused;
    }
  }
  INFO(refused << " refused, " << harmless << " harmless of " << samples);
  CHECK(refused + harmless == samples);
  CHECK(refused >= samples - 3);
}
