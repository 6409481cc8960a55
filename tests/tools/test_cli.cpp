// The `pneumo` program as a user meets it: help, exit codes, config errors on stderr.
#include <catch2/catch.hpp>

#include "pneumo_test_paths.h"
#include "test_support.h"

using pneumo::testing::run_pneumo;
using pneumo::testing::TempDir;
using pneumo::testing::write_file;
using Catch::Matchers::Contains;

namespace {
const std::string kDemo = std::string(PNEUMO_SOURCE_DIR) + "/configs/demo.yaml";
}

TEST_CASE("pneumo --help lists the subcommands and exits 0") {
  const auto r = run_pneumo({"--help"});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("version") && Contains("config"));
  const auto sub = run_pneumo({"config", "show", "--help"});
  CHECK(sub.exit_code == 0);
  CHECK_THAT(sub.out, Contains("--set") && Contains("--docs"));
}

TEST_CASE("usage errors exit with code 2") {
  CHECK(run_pneumo({}).exit_code == 2);
  CHECK(run_pneumo({"no-such-command"}).exit_code == 2);
  CHECK(run_pneumo({"config"}).exit_code == 2);
  CHECK(run_pneumo({"config", "show"}).exit_code == 2);
  CHECK(run_pneumo({"version", "--bogus"}).exit_code == 2);
}

TEST_CASE("pneumo version names pneumo, LibTorch, GDCM and OpenCV") {
  const auto r = run_pneumo({"version"});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("pneumo 0.") && Contains("LibTorch") && Contains("GDCM") &&
                        Contains("OpenCV") && Contains("CUDA"));
}

TEST_CASE("config show prints the resolved config with overrides applied") {
  const auto r = run_pneumo({"config", "show", kDemo, "--set", "experiment.seed=7", "--set",
                             "runtime.device=cpu"});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("name: demo") && Contains("seed: 7") && Contains("device: cpu") &&
                        Contains("log_level: info"));
  CHECK(r.err.empty());
}

TEST_CASE("config show merges base files and the result checks cleanly") {
  TempDir dir;
  write_file(dir / "child.yaml", "base: " + kDemo + "\nruntime: {threads: 2}\n");
  const auto show = run_pneumo({"config", "show", (dir / "child.yaml").string()});
  CHECK(show.exit_code == 0);
  CHECK_THAT(show.out, Contains("name: demo") && Contains("threads: 2"));
  // The printed config is itself a valid config.
  write_file(dir / "resolved.yaml", show.out);
  const auto check = run_pneumo({"config", "check", (dir / "resolved.yaml").string()});
  CHECK(check.exit_code == 0);
  CHECK_THAT(check.out, Contains("ok"));
}

TEST_CASE("a misspelled key fails with exit code 2, its location and the valid keys") {
  TempDir dir;
  const auto file = write_file(dir / "bad.yaml", "experiment:\n  name: demo\n  sead: 3\n");
  const auto r = run_pneumo({"config", "check", file.string()});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("bad.yaml:3:3") && Contains("unknown key 'sead'") &&
                        Contains("known: name, output_dir, run_name, seed"));
  CHECK(r.out.empty());
}

TEST_CASE("bad values, bad overrides, syntax errors and missing files exit with code 2") {
  TempDir dir;
  const auto syntax = write_file(dir / "syntax.yaml", "runtime: [1, 2\n");
  const auto type = write_file(dir / "type.yaml", "runtime:\n  threads: many\n");
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"config", "check", syntax.string()}, "YAML syntax error"},
      {{"config", "check", type.string()}, "type.yaml:2:12 runtime.threads: invalid value 'many'"},
      {{"config", "check", kDemo, "--set", "runtime.device=gpu"}, "expected auto, cpu, cuda"},
      {{"config", "check", kDemo, "--set", "runtime.threads"}, "key.path=value"},
      {{"config", "check", kDemo, "--set", "trainer.epochs=3"}, "unknown key 'trainer'"},
      {{"config", "show", (dir / "absent.yaml").string()}, "absent.yaml"},
  };
  for (const auto& c : cases) {
    INFO(c.args.back());
    const auto r = run_pneumo(c.args);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Contains(c.message));
  }
}

TEST_CASE("every shipped experiment in configs/ passes config check") {
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(PNEUMO_SOURCE_DIR "/configs")) {
    if (entry.path().extension() != ".yaml") continue;
    INFO(entry.path());
    const auto r = run_pneumo({"config", "check", entry.path().string()});
    CHECK(r.exit_code == 0);
    ++checked;
  }
  CHECK(checked >= 1);
}

TEST_CASE("dicom info and convert work on real files and fail cleanly on bad ones") {
  const std::string sample = std::string(PNEUMO_SHARED_DATA_DIR) +
                             "/siim/dicom/1.2.276.0.7230010.3.1.4.8323329.1000.1517875165.878027.dcm";
  TempDir dir;
  const auto bad = write_file(dir / "bad.dcm", "not dicom");
  const auto bad_info = run_pneumo({"dicom", "info", bad.string()});
  CHECK(bad_info.exit_code == 1);
  CHECK_THAT(bad_info.err, Contains("bad.dcm: is not a DICOM Part 10 file"));
  CHECK(run_pneumo({"dicom", "info", (dir / "absent.dcm").string()}).exit_code == 2);
  if (!std::filesystem::exists(sample)) {
    WARN("../shared/data/siim is absent; skipping the real-file part");
    return;
  }
  const auto info = run_pneumo({"dicom", "info", sample});
  CHECK(info.exit_code == 0);
  CHECK_THAT(info.out, Contains("JPEG Baseline") && Contains("1024 x 1024") &&
                           Contains("MONOCHROME2") && Contains("decode: ok"));
  // One bad file among good ones: the good ones are still reported, the exit code is 1.
  const auto mixed = run_pneumo({"dicom", "info", sample, bad.string()});
  CHECK(mixed.exit_code == 1);
  CHECK_THAT(mixed.out, Contains("decode: ok"));
  CHECK_THAT(mixed.err, Contains("1 of 2 file(s) could not be read"));

  const auto png = dir / "x.png";
  const auto convert = run_pneumo({"dicom", "convert", sample, "--out", png.string()});
  CHECK(convert.exit_code == 0);
  CHECK(std::filesystem::file_size(png) > 10000);
  CHECK(run_pneumo({"dicom", "convert", sample, "--out", png.string(), "--window", "bogus"})
            .exit_code == 2);
}

TEST_CASE("rle decode and encode round-trip a real label through a PNG") {
  const std::string labels = std::string(PNEUMO_SHARED_DATA_DIR) + "/siim/train-rle.csv";
  if (!std::filesystem::exists(labels)) {
    WARN("../shared/data/siim is absent; skipping");
    return;
  }
  TempDir dir;
  const std::string id = "1.2.276.0.7230010.3.1.4.8323329.12743.1517875241.599591";
  const auto mask = dir / "mask.png";
  const auto decode = run_pneumo({"rle", "decode", "--csv", labels, "--id", id, "--out", mask.string()});
  REQUIRE(decode.exit_code == 0);
  const auto encode = run_pneumo({"rle", "encode", mask.string()});
  CHECK(encode.exit_code == 0);
  const std::string csv = pneumo::testing::read_file(labels);
  const auto row = csv.find(id);
  REQUIRE(row != std::string::npos);
  const std::string expected = csv.substr(row + id.size() + 2, csv.find('\n', row) - row - id.size() - 2);
  CHECK(encode.out == expected + "\n");

  const auto missing = run_pneumo({"rle", "decode", "--csv", labels, "--id", "nobody", "--out", mask.string()});
  CHECK(missing.exit_code == 1);
  CHECK_THAT(missing.err, Contains("no rows for ImageId 'nobody'"));
  const auto not_png = write_file(dir / "mask.txt", "text");
  CHECK(run_pneumo({"rle", "encode", not_png.string()}).exit_code == 1);
}

TEST_CASE("make-demo writes a set that dicom info reads, and refuses bad options") {
  TempDir dir;
  const auto made = run_pneumo({"make-demo", "--out", (dir / "demo").string(), "--count", "3",
                                "--size", "64", "--seed", "5"});
  REQUIRE(made.exit_code == 0);
  CHECK_THAT(made.err, Contains("wrote 3 synthetic radiographs"));
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir / "demo/dicom")) {
    const auto info = run_pneumo({"dicom", "info", entry.path().string()});
    CHECK(info.exit_code == 0);
    CHECK_THAT(info.out, Contains("JPEG Baseline") && Contains("64 x 64"));
    ++files;
  }
  CHECK(files == 3);
  CHECK(std::filesystem::exists(dir / "demo/train-rle.csv"));
  CHECK(run_pneumo({"make-demo", "--out", (dir / "x").string(), "--size", "8"}).exit_code == 2);
  CHECK(run_pneumo({"make-demo", "--out", (dir / "x").string(), "--count", "0"}).exit_code == 2);
  CHECK(run_pneumo({"make-demo"}).exit_code == 2);
}

TEST_CASE("data check indexes, splits and loads a set, then reads it from the cache") {
  TempDir dir;
  REQUIRE(run_pneumo({"make-demo", "--out", (dir / "set").string(), "--count", "12", "--size",
                      "64"}).exit_code == 0);
  const auto config = write_file(dir / "exp.yaml", "base: " + kDemo + "\n" +
                                                       "data:\n  labels: " + (dir / "set/train-rle.csv").string() +
                                                       "\n  images: " + (dir / "set/dicom").string() +
                                                       "\n  size: 32\n  folds: 3\n  cache: " +
                                                       (dir / "cache").string() + "\n");
  const auto first = run_pneumo({"data", "check", config.string(), "--folds-out",
                                 (dir / "folds.csv").string()});
  INFO(first.out << first.err);
  CHECK(first.exit_code == 0);
  CHECK_THAT(first.out, Contains("indexed: 12 images") && Contains("fold 2: 4 images") &&
                            Contains("12 ok, 0 failed (12 decoded"));
  CHECK(pneumo::testing::read_file(dir / "folds.csv").rfind("ImageId,fold,positive\n", 0) == 0);
  const auto second = run_pneumo({"data", "check", config.string()});
  CHECK_THAT(second.out, Contains("12 ok, 0 failed (0 decoded, 12 from cache"));
}

TEST_CASE("make-demo --png and data check on a PNG + mask folder layout with patient-grouped folds") {
  TempDir dir;
  REQUIRE(run_pneumo({"make-demo", "--out", (dir / "set").string(), "--count", "12", "--size", "64", "--png",
                      "--images-per-patient", "2"}).exit_code == 0);
  const std::string set = (dir / "set").string();
  const auto config = write_file(dir / "png.yaml", "base: " + kDemo + "\ndata:\n  labels: \"\"\n  masks: " + set +
                                                       "/masks\n  images: " + set + "/png\n  group_by: patient\n" +
                                                       "  patients: " + set + "/patients.csv\n  folds: 3\n  cache: none\n");
  const auto r = run_pneumo({"data", "check", config.string(), "--folds-out", (dir / "folds.csv").string()});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("masks: " + set + "/masks") && Contains("indexed: 12 images") &&
                        Contains("patients: 6, each in one fold") && Contains("2 patients") &&
                        Contains("12 ok, 0 failed"));
  // A folds file that splits a patient is refused, naming the patient.
  std::string folds = pneumo::testing::read_file(dir / "folds.csv");
  const size_t comma = folds.find(',', folds.find('\n') + 1);  // the first image's fold, flipped
  folds[comma + 1] = folds[comma + 1] == '0' ? '1' : '0';
  write_file(dir / "split.csv", folds);
  const auto split = run_pneumo({"data", "check", config.string(), "--no-load", "--set",
                                 "data.folds_file=" + (dir / "split.csv").string()});
  CHECK(split.exit_code == 1);
  CHECK_THAT(split.err, Contains("patient 'DEMO0000") && Contains("in folds"));
}

TEST_CASE("data check reports unreadable files and mismatches, and exits 1") {
  TempDir dir;
  REQUIRE(run_pneumo({"make-demo", "--out", (dir / "set").string(), "--count", "6", "--size",
                      "64"}).exit_code == 0);
  std::filesystem::path victim;
  for (const auto& e : std::filesystem::directory_iterator(dir / "set/dicom")) victim = e.path();
  write_file(victim, "DICM but not really");
  write_file(dir / "set/dicom/extra/stray.dcm", "x");
  const std::vector<std::string> sets = {
      "--set", "data.labels=" + (dir / "set/train-rle.csv").string(),
      "--set", "data.images=" + (dir / "set/dicom").string(), "--set", "data.folds=2",
      "--set", "data.cache=none"};
  std::vector<std::string> args = {"data", "check", kDemo};
  args.insert(args.end(), sets.begin(), sets.end());
  const auto r = run_pneumo(args);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.out, Contains("images without labels (1)") && Contains("stray.dcm") &&
                        Contains("5 ok, 1 failed") && Contains(victim.filename().string()));
  CHECK_THAT(r.err, Contains("1 of 6 images could not be loaded"));
}

TEST_CASE("data check refuses a config without data paths or with a wrong data key") {
  TempDir dir;
  const auto r = run_pneumo({"data", "check", kDemo, "--set", "data.labels="});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("data.labels"));
  const auto typo = run_pneumo({"data", "check", kDemo, "--set", "data.fodls=3"});
  CHECK(typo.exit_code == 2);
  CHECK_THAT(typo.err, Contains("fodls") && Contains("folds"));
  const auto labels = write_file(dir / "labels.csv", "ImageId,EncodedPixels\na,-1\n");
  const auto missing = run_pneumo({"data", "check", kDemo, "--set", "data.labels=" + labels.string(),
                                   "--set", "data.images=" + (dir / "nowhere").string()});
  CHECK(missing.exit_code == 1);
  CHECK_THAT(missing.err, Contains("nowhere") && Contains("not found"));
}

TEST_CASE("augment preview draws a grid and augment apply runs a pipeline file") {
  TempDir dir;
  REQUIRE(run_pneumo({"make-demo", "--out", (dir / "set").string(), "--count", "2", "--size",
                      "64", "--positive-fraction", "1"}).exit_code == 0);
  std::filesystem::path dicom;
  for (const auto& e : std::filesystem::directory_iterator(dir / "set/dicom")) dicom = e.path();
  const auto preview = run_pneumo({"augment", "preview", kDemo, "--image",
                                   dicom.string(), "--count", "3", "--out", (dir / "grid.png").string()});
  INFO(preview.err);
  CHECK(preview.exit_code == 0);
  CHECK(std::filesystem::file_size(dir / "grid.png") > 1000);
  // The train pipeline's preview includes the device ops; a bad one is refused with its key.
  const auto on_device = run_pneumo({"augment", "preview", kDemo, "--image", dicom.string(), "--count", "2", "--set",
                                     "augment.on_device=[{ShiftScaleRotate: {p: 1, rotate_limit: 30}}]", "--out",
                                     (dir / "grid-device.png").string()});
  INFO(on_device.err);
  CHECK(on_device.exit_code == 0);
  CHECK(std::filesystem::file_size(dir / "grid-device.png") > 1000);
  const auto bad_device = run_pneumo({"augment", "preview", kDemo, "--image", dicom.string(), "--set",
                                      "augment.on_device=[Blur]", "--out", (dir / "z.png").string()});
  CHECK(bad_device.exit_code == 2);
  CHECK_THAT(bad_device.err, Contains("augment.on_device[0]") && Contains("'Blur'"));

  const auto pipe = write_file(dir / "flip.yaml", "- HorizontalFlip: {p: 1}\n- ToFloat: {max_value: 255}\n");
  const auto apply = run_pneumo({"augment", "apply", pipe.string(), "--image", dicom.string(),
                                 "--out", (dir / "out.png").string(), "--seed", "4"});
  INFO(apply.err);
  CHECK(apply.exit_code == 0);
  CHECK_THAT(apply.err, Contains("value * 255"));
  CHECK(std::filesystem::exists(dir / "out.png"));

  const auto bad = write_file(dir / "bad.yaml", "- Flip: {p: 1}\n");
  const auto refused = run_pneumo({"augment", "apply", bad.string(), "--image", dicom.string(),
                                   "--out", (dir / "x.png").string()});
  CHECK(refused.exit_code == 2);
  CHECK_THAT(refused.err, Contains("bad.yaml:1:3") && Contains("unknown augmentation op 'Flip'"));
  const auto wrong_mask = write_file(dir / "m.png", "not a png");
  CHECK(run_pneumo({"augment", "apply", pipe.string(), "--image", dicom.string(), "--mask",
                    wrong_mask.string(), "--out", (dir / "y.png").string()}).exit_code == 1);
}

TEST_CASE("models lists networks and encoders, weights inspect reads Python's files") {
  const auto models = run_pneumo({"models"});
  CHECK(models.exit_code == 0);
  CHECK_THAT(models.out, Contains("{name: unet++, encoder: {name: resnet34}}") && Contains("densenet121") &&
                             Contains("1, 64, 64, 128, 256, 512"));
  for (const char* network : {"classifier:", "unet:", "unet++:", "attention_unet:", "double_unet:"})
    CHECK_THAT(models.out, Contains(network));  // every registered network, with the keys it reads
  CHECK_THAT(models.out, Contains("reads: encoder.name, encoder.in_channels, encoder.depth, decoder_channels"));
  TempDir dir;
  const auto python = pneumo::testing::run_command(
      {PNEUMO_REFERENCE_PYTHON, "-c",
       "import sys, torch; m = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4)); "
       "torch.save(m.state_dict(), sys.argv[1])",
       (dir / "small.pth").string()});
  REQUIRE(python.exit_code == 0);
  const auto inspect = run_pneumo({"weights", "inspect", (dir / "small.pth").string()});
  CHECK(inspect.exit_code == 0);
  CHECK_THAT(inspect.out, Contains("0.weight") && Contains("4x1x3x3") && Contains("1.num_batches_tracked") &&
                              Contains("Long") && Contains("7 tensors, 57 values"));
  write_file(dir / "junk.pth", "junk");
  const auto junk = run_pneumo({"weights", "inspect", (dir / "junk.pth").string()});
  CHECK(junk.exit_code == 1);
  CHECK_THAT(junk.err, Contains("junk.pth"));
}

TEST_CASE("weights convert imports Python weights strictly into a checkpoint") {
  TempDir dir;
  const auto python = pneumo::testing::run_command(
      {PNEUMO_REFERENCE_PYTHON, "-c",
       "import sys, torch, torchvision; "
       "torch.save(torchvision.models.densenet121(num_classes=1).state_dict(), sys.argv[1])",
       (dir / "densenet.pth").string()});
  REQUIRE(python.exit_code == 0);
  const auto model = write_file(dir / "model.yaml", "model:\n  name: classifier\n  encoder: {in_channels: 3}\n");
  const auto ok = run_pneumo({"weights", "convert", "--model", model.string(), "--from",
                              (dir / "densenet.pth").string(), "--out", (dir / "classifier.ckpt").string()});
  INFO(ok.err);
  CHECK(ok.exit_code == 0);
  CHECK_THAT(ok.out, Contains("classifier.ckpt") && Contains("tensors loaded"));
  const auto inspect = run_pneumo({"weights", "inspect", (dir / "classifier.ckpt").string()});
  CHECK_THAT(inspect.out, Contains("features.denseblock4.denselayer16.conv2.weight"));
  // The wrong model for the weights: a strict refusal naming what does not fit.
  const auto wrong = run_pneumo({"weights", "convert", "--model", model.string(), "--set", "model.classes=14",
                                 "--from", (dir / "densenet.pth").string(), "--out", (dir / "x.ckpt").string()});
  CHECK(wrong.exit_code == 1);
  CHECK_THAT(wrong.err, Contains("classifier.weight: model 14x1024"));
  CHECK_FALSE(std::filesystem::exists(dir / "x.ckpt"));
}

TEST_CASE("train refuses a missing config, a missing run and a run without last.ckpt") {
  TempDir dir;
  CHECK(run_pneumo({"train"}).exit_code == 2);  // neither a file nor --resume
  const auto missing = run_pneumo({"train", (dir / "absent.yaml").string()});
  CHECK(missing.exit_code == 2);
  CHECK_THAT(missing.err, Contains("absent.yaml"));
  const auto nowhere = run_pneumo({"train", "--resume", (dir / "nowhere").string()});
  CHECK(nowhere.exit_code != 0);
  CHECK_THAT(nowhere.err, Contains("nowhere"));
  // A run folder (config.yaml present) whose last.ckpt was never written.
  write_file(dir / "run/config.yaml", pneumo::testing::read_file(kDemo));
  const auto no_checkpoint = run_pneumo({"train", "--resume", (dir / "run").string()});
  CHECK(no_checkpoint.exit_code == 1);
  CHECK_THAT(no_checkpoint.err, Contains("last.ckpt") && Contains("not found"));
}
