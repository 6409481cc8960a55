// The rules of `pneumo plan` and its batch size trial: the input size from the mask areas
// (SIIM's own masks give 512), the negative-share schedule from the positive share, and a trial
// whose measured steps fit the budget it was given and that fails cleanly when batch 1 cannot.
#include <catch2/catch.hpp>

#include <filesystem>

#include <opencv2/core.hpp>
#include <torch/torch.h>

#include "pneumo/core/error.h"
#include "pneumo/data/labels.h"
#include "pneumo/train/plan.h"
#include "pneumo_test_paths.h"

namespace data = pneumo::data;
namespace train = pneumo::train;
namespace fs = std::filesystem;
using Catch::Matchers::Contains;

namespace {

data::DatasetFingerprint fingerprint_with_areas(const std::vector<double>& areas, int short_side) {
  data::DatasetFingerprint fp;
  fp.images = static_cast<int64_t>(areas.size()) * 2;
  fp.positives = static_cast<int64_t>(areas.size());
  fp.area_fraction = data::quantiles_of(areas);
  fp.short_side = data::quantiles_of(std::vector<double>(static_cast<size_t>(fp.images), short_side));
  return fp;
}

train::ExperimentConfig small_segmenter(int size) {
  train::ExperimentConfig c;
  c.runtime.device = "cpu";
  c.runtime.threads = 1;
  c.data.size = size;
  c.model.name = "unet";
  c.model.encoder.name = "resnet18";
  c.model.decoder_channels = {32, 16, 16, 8, 8};
  return c;
}

int64_t parameter_bytes(const train::ExperimentConfig& c) {
  int64_t bytes = 0;
  for (const auto& p : pneumo::models::build_model(c.model)->parameters()) bytes += p.numel() * 4;
  return bytes;
}

}  // namespace

TEST_CASE("plan: the input size is the smallest at which the smallest tenth of the masks spans 400 pixels") {
  std::string why;
  // 64 x 64 squares on 256 x 256 images (6.25%): 1024 pixels at 128.
  CHECK(train::propose_input_size(fingerprint_with_areas(std::vector<double>(10, 0.0625), 256), &why) == 128);
  // 1.5625%: 256 pixels at 128 (too few), 1024 at 256.
  CHECK(train::propose_input_size(fingerprint_with_areas(std::vector<double>(10, 0.015625), 1024), &why) == 256);
  CHECK_THAT(why, Contains("1024 pixels at 256"));
  // The tenth percentile decides, not the median: one small mask in ten is enough.
  std::vector<double> mixed(20, 0.05);
  mixed[0] = mixed[1] = mixed[2] = 0.0005;  // 400 pixels need about 894 x 894 -> 1024
  CHECK(train::propose_input_size(fingerprint_with_areas(mixed, 1024), &why) == 1024);
  // Never above the native short side: upsampling adds no detail.
  CHECK(train::propose_input_size(fingerprint_with_areas(std::vector<double>(10, 0.001), 300), &why) == 256);
  CHECK_THAT(why, Contains("caps it"));
  // Too small even at 1024, on 2048 images: the largest size, and the reason says so.
  CHECK(train::propose_input_size(fingerprint_with_areas(std::vector<double>(10, 1e-5), 2048), &why) == 1024);
  CHECK_THAT(why, Contains("more than 1024"));
}

TEST_CASE("plan: SIIM's own training masks ask for 512 x 512 inputs") {
  const fs::path labels = fs::path(PNEUMO_SHARED_DATA_DIR) / "siim" / "stage_2_train.csv";
  if (!fs::exists(labels)) {
    WARN("skipped: " << labels << " is not there (../shared/data/siim)");
    return;
  }
  const data::LabelTable table = data::LabelTable::read_csv(labels);
  std::vector<double> areas;
  for (const std::string& id : table.image_ids())
    if (table.is_positive(id)) areas.push_back(cv::countNonZero(table.mask(id, 1024, 1024)) / (1024.0 * 1024.0));
  REQUIRE(areas.size() == 2669);
  std::string why;
  CHECK(train::propose_input_size(fingerprint_with_areas(areas, 1024), &why) == 512);
  CHECK_THAT(why, Contains("2669 pneumothoraces"));
}

TEST_CASE("plan: the negative share starts balanced and ends at every negative, and balanced data keeps all") {
  data::DatasetFingerprint fp;
  fp.images = 50;
  fp.positives = 10;
  std::string why;
  const auto schedule = train::propose_negative_share(fp, 12, &why);
  REQUIRE(schedule.size() == 2);
  CHECK(schedule[0].epoch == 0);
  CHECK(schedule[0].share == Approx(0.25));  // 10 positives, 40 negatives: 10 drawn
  CHECK(schedule[1].epoch == 11);
  CHECK(schedule[1].share == 1.0);
  CHECK_THAT(why, Contains("10 of 50"));
  fp.positives = 25;
  CHECK(train::propose_negative_share(fp, 12, &why).empty());
  CHECK_THAT(why, Contains("balanced"));
  fp.positives = 10;
  CHECK(train::propose_negative_share(fp, 1, &why).empty());  // one epoch: nothing to ramp
}

TEST_CASE("plan: the batch size trial's proposal fits the budget its own steps measured") {
  // 128 px: batch 8's passes hold more than Adam's update (at 64 px, on LibTorch 2.15 and an
  // AVX2 machine, the update's temporaries were the peak of batches 1, 2 and 8 alike).
  const train::ExperimentConfig c = small_segmenter(128);
  train::BatchTrialOptions options;
  options.budget_bytes = int64_t{8} << 30;
  options.max_batch = 8;
  const train::BatchTrial roomy = train::measure_batch_size(c, options);
  CHECK(roomy.batch == 8);  // capped by max_batch
  REQUIRE(roomy.steps.size() == 4);  // 1 (warm), 1, 2, 8
  // The counted memory holds weights, gradients and Adam's two moments at least.
  CHECK(roomy.steps[1].peak_bytes >= 4 * parameter_bytes(c));
  CHECK(roomy.steps[3].pass_peak_bytes > roomy.steps[2].pass_peak_bytes);
  CHECK(roomy.steps[2].pass_peak_bytes > roomy.steps[1].pass_peak_bytes);
  CHECK(roomy.steps[3].peak_bytes > roomy.steps[2].peak_bytes);

  // A budget between what batches 2 and 8 hold: a smaller batch, verified to fit.
  options.budget_bytes = static_cast<int64_t>((roomy.steps[2].peak_bytes + roomy.steps[3].peak_bytes) / 2 / 0.9);
  const train::BatchTrial tight = train::measure_batch_size(c, options);
  CHECK(tight.batch >= 2);
  CHECK(tight.batch < 8);
  bool verified = false;
  for (const train::TrialStep& s : tight.steps)
    if (s.batch == tight.batch && s.fitted) verified = s.peak_bytes <= tight.usable_bytes;
  CHECK(verified);
}

TEST_CASE("plan: the batch size trial fails cleanly when even batch 1 does not fit, and memory is counted no more") {
  const train::ExperimentConfig c = small_segmenter(64);
  train::BatchTrialOptions options;
  options.budget_bytes = 1 << 20;  // 1 MiB: not even the weights
  CHECK_THROWS_WITH(train::measure_batch_size(c, options), Contains("even batch 1 does not fit") && Contains("weights"));
  // Weights fit (with their NHWC copy, made once while the network is set up), a step does not.
  options.budget_bytes = 22 * parameter_bytes(c) / 10;
  CHECK_THROWS_WITH(train::measure_batch_size(c, options),
                    Contains("even batch 1 does not fit") && Contains("training step"));
  // The limit is gone with the trial: a large tensor allocates.
  CHECK(torch::zeros({64, 1024, 1024}).numel() == 64 * 1024 * 1024);
  options.budget_bytes = int64_t{8} << 30;
  options.max_batch = 2;
  CHECK(train::measure_batch_size(c, options).batch == 2);
}
