// Inference: post-processing rules, inputs, run-folder members, the ensemble predictor and
// `predict`'s outputs, with random-weight checkpoints on small demo images.
#include <catch2/catch.hpp>

#include <algorithm>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common.h"
#include "pneumo/core/error.h"
#include "pneumo/data/demo_set.h"
#include "pneumo/data/rle.h"
#include "pneumo/infer/export.h"
#include "pneumo/infer/inputs.h"
#include "pneumo/infer/postprocess.h"
#include "pneumo/infer/predict.h"
#include "pneumo/infer/predictor.h"
#include "test_support.h"

using namespace pneumo;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

void write_demo(const fs::path& folder, int count, int size) {
  data::DemoSetOptions demo;
  demo.count = count;
  demo.size = size;
  data::write_demo_set(folder, demo);
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("post-processing: triplet rule, small components and the gate") {
  cv::Mat p = cv::Mat::zeros(20, 20, CV_32FC1);
  p(cv::Rect(2, 2, 4, 4)).setTo(0.9);    // 16 confident pixels
  p(cv::Rect(2, 6, 4, 2)).setTo(0.4);    // 8 pixels attached below them, above the bottom threshold
  p(cv::Rect(15, 15, 2, 2)).setTo(0.6);  // a separate 4-pixel blob
  infer::PostprocessSection o;
  o.threshold = 0.3;
  o.top_threshold = 0.8;
  o.min_area = 16;
  cv::Mat m = infer::postprocess(p, o, std::nullopt);
  CHECK(cv::countNonZero(m) == 16 + 8 + 4);  // positive: the mask uses the bottom threshold
  o.min_area = 17;
  CHECK(cv::countNonZero(infer::postprocess(p, o, std::nullopt)) == 0);  // too few confident pixels
  o.min_area = 16;
  o.min_component_area = 5;
  m = infer::postprocess(p, o, std::nullopt);
  CHECK(cv::countNonZero(m) == 24);  // the 4-pixel blob is gone
  CHECK(m.at<uint8_t>(15, 15) == 0);
  CHECK(m.at<uint8_t>(3, 3) == 255);
  o.classifier_threshold = 0.5;
  CHECK(cv::countNonZero(infer::postprocess(p, o, 0.49)) == 0);
  CHECK(cv::countNonZero(infer::postprocess(p, o, 0.5)) == 24);
}

TEST_CASE("postprocess.yaml round-trips and names bad keys") {
  pneumo::testing::TempDir dir;
  infer::PostprocessSection o;
  o.threshold = 0.35;
  o.top_threshold = 0.75;
  o.min_area = 2048;
  o.min_component_area = 100;
  o.classifier_threshold = 0.6;
  infer::write_postprocess(dir / "postprocess.yaml", o);
  const infer::PostprocessSection r = infer::read_postprocess(dir / "postprocess.yaml");
  CHECK(r.threshold == 0.35);
  CHECK(r.top_threshold == 0.75);
  CHECK(r.min_area == 2048);
  CHECK(r.min_component_area == 100);
  CHECK(r.classifier_threshold == 0.6);
  pneumo::testing::write_file(dir / "bad.yaml", "postprocess: {treshold: 0.4}\n");
  CHECK_THROWS_WITH(infer::read_postprocess(dir / "bad.yaml"), Contains("treshold") && Contains("threshold"));
  pneumo::testing::write_file(dir / "range.yaml", "postprocess: {threshold: 1.5}\n");
  CHECK_THROWS_AS(infer::read_postprocess(dir / "range.yaml"), core::ConfigError);
}

TEST_CASE("inputs: files and folders, sorted, unknown kinds, missing paths and duplicate ids refused") {
  pneumo::testing::TempDir dir;
  write_demo(dir / "set", 3, 64);
  fs::create_directories(dir / "nested/deeper");
  cv::imwrite((dir / "nested/deeper/xray.PNG").string(), cv::Mat(10, 12, CV_8UC1, cv::Scalar(7)));
  pneumo::testing::write_file(dir / "nested/notes.txt", "not an image");
  const auto inputs = infer::collect_inputs({dir / "set/dicom", dir / "nested"});
  REQUIRE(inputs.size() == 4);
  CHECK(std::is_sorted(inputs.begin(), inputs.end(), [](const auto& x, const auto& y) { return x.path < y.path; }));
  CHECK(inputs.front().id == "xray");  // nested/ sorts before set/
  const infer::InputImage png = infer::read_input(inputs.front(), "none");
  CHECK(png.pixels.size() == cv::Size(12, 10));
  CHECK_FALSE(png.pixel_spacing_mm[0].has_value());
  const infer::InputImage dicom = infer::read_input(inputs.back(), "none");
  CHECK(dicom.pixels.rows == 64);
  CHECK_THROWS_WITH(infer::collect_inputs({dir / "nested/notes.txt"}), Contains("notes.txt") && Contains(".dcm"));
  CHECK_THROWS_AS(infer::collect_inputs({dir / "missing"}), core::UsageError);
  fs::copy_file(inputs.back().path, dir / "nested" / inputs.back().path.filename());
  CHECK_THROWS_WITH(infer::collect_inputs({dir / "set/dicom", dir / "nested"}), Contains(inputs.back().id));
  const auto labelled = infer::labelled_set(dir / "set/train-rle.csv", dir / "set/dicom", {});
  CHECK(labelled.inputs.size() == 3);
  CHECK_THROWS_AS(infer::labelled_set(dir / "set/train-rle.csv", {}, {}), core::UsageError);
  CHECK_THROWS_WITH(infer::labelled_set({}, {}, {}), Contains("--labels"));
}

TEST_CASE("a run folder offers best, last, snapshots and top-k, missing ones are named") {
  pneumo::testing::TempDir dir;
  const fs::path run = dir / "run";
  for (const char* name : {"best.ckpt", "last.ckpt", "snapshot-002.ckpt", "snapshot-004.ckpt", "top-003.ckpt", "top-001.ckpt"})
    pneumo::testing::write_file(run / name, "x");
  pneumo::testing::write_file(run / "config.yaml", "{}\n");
  pneumo::testing::write_file(run / "ensemble.json",
                              R"({"snapshots": [{"checkpoint": "snapshot-002.ckpt"}, {"checkpoint": "snapshot-004.ckpt"}]})");
  CHECK(infer::expand_model(run, "best") == std::vector<fs::path>{run / "best.ckpt"});
  CHECK(infer::expand_model(run, "snapshots") == std::vector<fs::path>{run / "snapshot-002.ckpt", run / "snapshot-004.ckpt"});
  CHECK(infer::expand_model(run, "top") == std::vector<fs::path>{run / "top-001.ckpt", run / "top-003.ckpt"});
  CHECK(infer::expand_model(run / "last.ckpt", "best") == std::vector<fs::path>{run / "last.ckpt"});
  CHECK_THROWS_WITH(infer::expand_model(run, "swa"), Contains("swa.ckpt"));
  CHECK_THROWS_AS(infer::expand_model(run, "worst"), core::UsageError);
  CHECK_THROWS_AS(infer::expand_model(dir / "nothing", "best"), core::UsageError);
  CHECK(infer::run_folder_of(run / "best.ckpt") == run);
}

TEST_CASE("the predictor averages members, mirrors for TTA and answers at the native size") {
  pneumo::testing::TempDir dir;
  write_demo(dir / "set", 4, 96);
  testing::ModelRecipe a, b;
  b.seed = 2;
  b.channels = 3;
  b.size = 32;  // another input size: its probabilities are resized before averaging
  const fs::path ca = testing::write_random_checkpoint(dir / "a/best.ckpt", a);
  const fs::path cb = testing::write_random_checkpoint(dir / "b/best.ckpt", b);
  const c10::Device cpu(c10::kCPU);
  const auto inputs = infer::collect_inputs({dir / "set/dicom"});
  auto run = [&](const std::vector<infer::ModelSpec>& specs, bool hflip) {
    infer::PredictorOptions options;
    options.hflip = hflip;
    infer::PostprocessSection post;
    infer::Predictor predictor(infer::load_members(specs, "best", {}, cpu), post, options, cpu);
    std::vector<infer::PreparedInput> batch;
    for (const auto& f : inputs) batch.push_back(predictor.prepare(infer::read_input(f, "none")));
    return predictor.predict(std::move(batch));
  };
  const auto single = run({{ca, 1.0}}, false);
  REQUIRE(single.size() == 4);
  CHECK(single[0].probability.size() == cv::Size(96, 96));
  CHECK(single[0].mask.size() == cv::Size(96, 96));
  REQUIRE(single[0].image_probability.has_value());
  // The same model twice with any weights is the model.
  const auto twice = run({{ca, 1.0}, {ca, 3.0}}, false);
  CHECK(cv::norm(twice[1].probability, single[1].probability, cv::NORM_INF) < 1e-6);
  CHECK(*twice[1].image_probability == Approx(*single[1].image_probability).epsilon(1e-6));
  // A weighted pair: the weighted mean of the members' image probabilities.
  const auto other = run({{cb, 1.0}}, false);
  const auto pair = run({{ca, 1.0}, {cb, 3.0}}, false);
  CHECK(*pair[2].image_probability ==
        Approx((*single[2].image_probability + 3 * *other[2].image_probability) / 4).epsilon(1e-6));
  // Flip TTA on a mirrored image gives the mirrored probabilities (exactly: at the model's
  // size, so that no resize rounds differently on the two sides).
  const auto tta = run({{ca, 1.0}}, true);
  CHECK(cv::norm(tta[0].probability, single[0].probability, cv::NORM_INF) > 1e-6);  // it did something
  cv::Mat flipped_input;
  {
    infer::PredictorOptions options;
    options.hflip = true;
    infer::Predictor predictor(infer::load_members({{ca, 1.0}}, "best", {}, cpu), {}, options, cpu);
    infer::InputImage image = infer::read_input(inputs[0], "none");
    cv::resize(image.pixels, image.pixels, cv::Size(64, 64), 0, 0, cv::INTER_AREA);
    infer::InputImage mirrored = image;
    mirrored.pixels = cv::Mat();
    cv::flip(image.pixels, mirrored.pixels, 1);
    std::vector<infer::PreparedInput> batch;
    batch.push_back(predictor.prepare(image));
    batch.push_back(predictor.prepare(mirrored));
    const auto out = predictor.predict(std::move(batch));
    cv::Mat back;
    cv::flip(out[1].probability, back, 1);
    CHECK(cv::norm(back, out[0].probability, cv::NORM_INF) < 1e-5);
    CHECK(*out[1].image_probability == Approx(*out[0].image_probability).epsilon(1e-5));
    // The mirrored copies run in the same batch as the originals: the answer is the mean of the
    // plain predictor's answers on the image and on its mirror.
    infer::Predictor plain(infer::load_members({{ca, 1.0}}, "best", {}, cpu), {}, {}, cpu);
    std::vector<infer::PreparedInput> one, other;
    one.push_back(plain.prepare(image));
    other.push_back(plain.prepare(mirrored));
    const auto p = plain.predict(std::move(one)), q = plain.predict(std::move(other));
    cv::Mat q_back;
    cv::flip(q[0].probability, q_back, 1);
    CHECK(cv::norm((p[0].probability + q_back) / 2, out[0].probability, cv::NORM_INF) < 1e-5);
    CHECK(*out[0].image_probability ==
          Approx((*p[0].image_probability + *q[0].image_probability) / 2).epsilon(1e-5));
  }
}

TEST_CASE("bfloat16 inference agrees with float32, for networks and exported files, and a wrong precision is refused") {
  pneumo::testing::TempDir dir;
  write_demo(dir / "set", 4, 64);
  const c10::Device cpu(c10::kCPU);
  const fs::path model = testing::write_random_checkpoint(dir / "a/best.ckpt", {});
  infer::ExportOptions exported;
  exported.models = {{model, 1.0}};
  exported.out = dir / "model.pt";
  infer::export_torchscript(exported);
  const auto inputs = infer::collect_inputs({dir / "set/dicom"});
  for (const fs::path& source : {model, dir / "model.pt"}) {
    INFO(source.string());
    const auto run = [&](const std::string& precision) {
      infer::PredictorOptions options;
      options.precision = precision;
      options.hflip = true;
      infer::Predictor predictor(infer::load_members({{source, 1.0}}, "best", {}, cpu), {}, options, cpu);
      std::vector<infer::PreparedInput> batch;
      for (const auto& f : inputs) batch.push_back(predictor.prepare(infer::read_input(f, "none")));
      return predictor.predict(std::move(batch));
    };
    const auto full = run("float32"), half = run("bfloat16");
    REQUIRE(full.size() == half.size());
    for (size_t i = 0; i < full.size(); ++i) {
      CHECK(half[i].probability.type() == CV_32FC1);
      // bfloat16 keeps 8 bits of mantissa: probabilities within a few hundredths, never garbage.
      CHECK(cv::norm(half[i].probability, full[i].probability, cv::NORM_INF) < 0.05);
      CHECK(cv::mean(cv::abs(half[i].probability - full[i].probability))[0] < 0.01);
      REQUIRE(half[i].image_probability.has_value());
      CHECK(std::abs(*half[i].image_probability - *full[i].image_probability) < 0.05);
    }
  }
  infer::PredictorOptions wrong;
  wrong.precision = "float8";
  CHECK_THROWS_WITH(infer::Predictor(infer::load_members({{model, 1.0}}, "best", {}, cpu), {}, wrong, cpu),
                    Contains("expected float32 or bfloat16"));
}

TEST_CASE("the default batch on the CPU holds about a million input pixels, at most 8 images") {
  pneumo::testing::TempDir dir;
  const c10::Device cpu(c10::kCPU);
  for (const auto& [size, batch] : std::vector<std::pair<int, int64_t>>{{64, 8}, {256, 8}, {512, 4}, {768, 1}, {1024, 1}}) {
    INFO(size);
    testing::ModelRecipe recipe;
    recipe.size = size;
    const fs::path model = testing::write_random_checkpoint(dir / fmt::format("m{}/best.ckpt", size), recipe);
    const infer::Predictor predictor(infer::load_members({{model, 1.0}}, "best", {}, cpu), {}, {}, cpu);
    CHECK(infer::default_batch_size(predictor) == batch);
  }
}

TEST_CASE("CUDA graphs: ignored on the CPU, on a GPU the same answers as the eager models") {
  pneumo::testing::TempDir dir;
  write_demo(dir / "set", 4, 80);
  const testing::ModelRecipe classifier = testing::chexnet_recipe();
  const fs::path segmenter = testing::write_random_checkpoint(dir / "unet.ckpt", {});
  const fs::path cc = testing::write_random_checkpoint(dir / "chexnet.ckpt", classifier);
  infer::ExportOptions exported;
  exported.models = {{segmenter, 1.0}};
  exported.out = dir / "model.pt";
  infer::export_torchscript(exported);
  const auto inputs = infer::collect_inputs({dir / "set/dicom"});
  // Batches of 3, 1 and 3 images again: two shapes captured, the first replayed again.
  auto run = [&](const std::vector<infer::ModelSpec>& specs, const c10::Device& device, bool graphs) {
    infer::PredictorOptions options;
    options.hflip = true;
    options.cuda_graphs = graphs;
    infer::Predictor predictor(infer::load_members(specs, "best", {}, device), {}, options, device);
    std::vector<infer::Prediction> all;
    for (const auto& [from, to] : {std::pair{0, 3}, std::pair{3, 4}, std::pair{1, 4}}) {
      std::vector<infer::PreparedInput> batch;
      for (int i = from; i < to; ++i) batch.push_back(predictor.prepare(infer::read_input(inputs[i], "none")));
      for (auto& p : predictor.predict(std::move(batch))) all.push_back(std::move(p));
    }
    return all;
  };
  const auto same = [](const std::vector<infer::Prediction>& a, const std::vector<infer::Prediction>& b, double tol) {
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      INFO("prediction " << i);
      CHECK(cv::norm(a[i].probability, b[i].probability, cv::NORM_INF) <= tol);
      REQUIRE(a[i].image_probability.has_value() == b[i].image_probability.has_value());
      if (a[i].image_probability) CHECK(std::abs(*a[i].image_probability - *b[i].image_probability) <= tol);
    }
  };
  const std::vector<infer::ModelSpec> ensemble{{segmenter, 1.0}, {cc, 1.0}};
  const c10::Device cpu(c10::kCPU);
  same(run(ensemble, cpu, true), run(ensemble, cpu, false), 0.0);  // the CPU runs eagerly either way
  if (!torch::cuda::is_available()) {
    WARN("skipped the GPU part: LibTorch sees no CUDA device");
    return;
  }
  const c10::Device gpu(c10::kCUDA, 0);
  same(run(ensemble, gpu, true), run(ensemble, gpu, false), 1e-5);
  const std::vector<infer::ModelSpec> script{{dir / "model.pt", 1.0}};
  same(run(script, gpu, true), run(script, gpu, false), 1e-5);
}

TEST_CASE("a classifier alone decides without a mask, with a segmenter it gates the mask") {
  pneumo::testing::TempDir dir;
  write_demo(dir / "set", 3, 64);
  const testing::ModelRecipe classifier = testing::chexnet_recipe();
  const fs::path cc = testing::write_random_checkpoint(dir / "chexnet.ckpt", classifier);
  const fs::path cs = testing::write_random_checkpoint(dir / "unet.ckpt", {});
  const c10::Device cpu(c10::kCPU);
  const auto inputs = infer::collect_inputs({dir / "set/dicom"});
  auto run = [&](const std::vector<infer::ModelSpec>& specs, double gate, double threshold) {
    infer::PostprocessSection post;
    post.classifier_threshold = gate;
    post.threshold = post.top_threshold = threshold;
    infer::Predictor predictor(infer::load_members(specs, "best", {}, cpu), post, {}, cpu);
    std::vector<infer::PreparedInput> batch;
    for (const auto& f : inputs) batch.push_back(predictor.prepare(infer::read_input(f, "none")));
    return predictor.predict(std::move(batch));
  };
  const auto alone = run({{cc, 1.0}}, 0.0, 0.5);
  REQUIRE(alone[0].image_probability.has_value());
  CHECK(alone[0].probability.empty());
  CHECK(alone[0].positive);  // any probability passes a zero gate
  CHECK(alone[0].area_pixels() == 0);
  CHECK_FALSE(run({{cc, 1.0}}, 1.0, 0.5)[0].positive);
  // Two stages: the classifier's probability is the gate (the U-Net's aux head is not used).
  const auto open_gate = run({{cs, 1.0}, {cc, 1.0}}, 0.0, 0.0);
  CHECK(*open_gate[1].image_probability == Approx(*alone[1].image_probability).epsilon(1e-6));
  CHECK(open_gate[1].area_pixels() == 64 * 64);
  CHECK(run({{cs, 1.0}, {cc, 1.0}}, 1.0, 0.0)[1].area_pixels() == 0);  // closed gate: no mask
}

TEST_CASE("predict writes the submission, masks, overlays and JSON lines, and reports unreadable files") {
  pneumo::testing::TempDir dir;
  write_demo(dir / "set", 5, 80);
  testing::write_random_checkpoint(dir / "run/best.ckpt", {});
  pneumo::testing::write_file(dir / "run/config.yaml", "{}\n");
  pneumo::testing::write_file(dir / "bad/broken.dcm", "DICM but not really");
  infer::PredictOptions o;
  o.models = {{dir / "run", 1.0}};
  o.inputs = {dir / "set/dicom", dir / "bad"};
  o.out = dir / "out";
  o.device = "cpu";
  o.workers = 2;
  o.batch_size = 2;
  o.postprocess.threshold = 0.0;  // random weights: call every pixel with any probability
  o.postprocess.top_threshold = 0.0;
  o.postprocess.classifier_threshold = 0.0;
  const infer::PredictSummary s = infer::predict(o);
  CHECK(s.images == 5);
  CHECK(s.positives == 5);
  REQUIRE(s.failures.size() == 1);
  CHECK_THAT(s.failures[0].second, Contains("broken.dcm"));
  const auto submission = lines(pneumo::testing::read_file(dir / "out/submission.csv"));
  REQUIRE(submission.size() == 6);
  CHECK(submission[0] == "ImageId,EncodedPixels");
  const std::string id = submission[1].substr(0, submission[1].find(','));
  const cv::Mat mask = cv::imread((dir / "out/masks" / (id + ".png")).string(), cv::IMREAD_UNCHANGED);
  REQUIRE(mask.size() == cv::Size(80, 80));
  CHECK(cv::countNonZero(data::decode_rle(submission[1].substr(submission[1].find(',') + 1), 80, 80) != mask) == 0);
  const cv::Mat overlay = cv::imread((dir / "out/overlays" / (id + ".png")).string(), cv::IMREAD_UNCHANGED);
  CHECK(overlay.type() == CV_8UC3);
  const auto json = lines(pneumo::testing::read_file(dir / "out/predictions.jsonl"));
  REQUIRE(json.size() == 6);
  CHECK_THAT(json[0], Contains("\"error\"") && Contains("broken.dcm"));  // sorted: bad/ before set/
  CHECK_THAT(json[1], Contains("\"positive\":true") && Contains("\"area_mm2\":"));

  // A threshold of 1 calls nothing: every row is -1.
  o.postprocess.threshold = 1.0;
  o.postprocess.top_threshold = 1.0;
  o.inputs = {dir / "set/dicom"};
  o.out = dir / "out2";
  CHECK(infer::predict(o).positives == 0);
  for (const auto& line : lines(pneumo::testing::read_file(dir / "out2/submission.csv")))
    if (line != "ImageId,EncodedPixels") CHECK(line.substr(line.find(',')) == ",-1");

  // The run's own postprocess.yaml is used when no override is given.
  infer::PostprocessSection tuned;
  tuned.min_area = 123;
  infer::write_postprocess(dir / "run/postprocess.yaml", tuned);
  o.postprocess = {};
  o.out = dir / "out3";
  CHECK(infer::predict(o).postprocess.min_area == 123);
}

TEST_CASE("predict refuses what it cannot do before writing anything") {
  pneumo::testing::TempDir dir;
  write_demo(dir / "set", 2, 64);
  infer::PredictOptions o;
  o.inputs = {dir / "set/dicom"};
  o.out = dir / "out";
  o.device = "cpu";
  o.models = {{dir / "missing.ckpt", 1.0}};
  CHECK_THROWS_AS(infer::predict(o), core::UsageError);
  pneumo::testing::write_file(dir / "junk.ckpt", "not a checkpoint");
  o.models = {{dir / "junk.ckpt", 1.0}};
  CHECK_THROWS_AS(infer::predict(o), core::CheckpointError);
  testing::write_random_checkpoint(dir / "good.ckpt", {});
  o.models = {{dir / "good.ckpt", 1.0}};
  o.overrides = {"data.channels=3"};  // the network takes one channel
  CHECK_THROWS_WITH(infer::predict(o), Contains("in_channels"));
  o.overrides = {};
  o.inputs = {};
  CHECK_THROWS_WITH(infer::predict(o), Contains("no input images"));
  CHECK_FALSE(fs::exists(dir / "out"));
}
