// The inference commands as a user meets them: predict, evaluate, tune, export and average on
// a small demo set with a random-weight checkpoint; exit codes and messages for bad input.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "../infer/common.h"
#include "pneumo/data/demo_set.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

using pneumo::testing::read_file;
using pneumo::testing::run_pneumo;
using pneumo::testing::TempDir;
using pneumo::testing::write_file;
using Catch::Matchers::Contains;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A demo set and a run folder (config.yaml naming the set, folds.csv) with a random best.ckpt.
void make_run(const TempDir& dir) {
  pneumo::data::DemoSetOptions demo;
  demo.count = 8;
  demo.size = 80;
  pneumo::data::write_demo_set(dir / "set", demo);
  pneumo::train::ExperimentConfig config = pneumo::testing::recipe_config({});
  config.data.labels = (dir / "set/train-rle.csv").string();
  config.data.images = (dir / "set/dicom").string();
  config.data.folds = 2;
  config.data.cache = "none";
  config.train.batch_size = 4;
  pneumo::testing::write_random_checkpoint(dir / "run/best.ckpt", {});
  auto c = pneumo::train::read_checkpoint(dir / "run/best.ckpt");
  c.config_yaml = pneumo::train::experiment_to_yaml(config);
  pneumo::train::write_checkpoint(dir / "run/best.ckpt", c);
  write_file(dir / "run/config.yaml", c.config_yaml);
  std::string folds = "ImageId,fold\n";
  int i = 0;
  for (const auto& e : fs::directory_iterator(dir / "set/dicom")) folds += e.path().stem().string() + "," + std::to_string(i++ % 2) + "\n";
  write_file(dir / "run/folds.csv", folds);
}

}  // namespace

TEST_CASE("predict, evaluate, tune and export run from the command line") {
  TempDir dir;
  make_run(dir);
  const std::string run = (dir / "run").string();
  const auto predicted = run_pneumo({"predict", "--model", run, (dir / "set/dicom").string(), "--out",
                                     (dir / "pred").string(), "--device", "cpu", "--tta", "--cuda-graphs"});
  INFO(predicted.err);
  CHECK(predicted.exit_code == 0);
  CHECK_THAT(predicted.out, Contains("8 image(s) predicted"));
  CHECK_THAT(predicted.out + predicted.err, Contains("CUDA graphs apply to CUDA devices only"));
  CHECK(fs::exists(dir / "pred/submission.csv"));
  CHECK(fs::is_directory(dir / "pred/overlays"));

  const auto evaluated = run_pneumo({"evaluate", "--model", run, "--out", (dir / "report").string(), "--device", "cpu"});
  INFO(evaluated.err);
  CHECK(evaluated.exit_code == 0);
  CHECK_THAT(evaluated.out, Contains("Kaggle mean Dice") && Contains("validation fold 0"));
  CHECK(fs::exists(dir / "report/worst.png") == (evaluated.out.find("Dice  1.0000") == std::string::npos));

  const auto tuned = run_pneumo({"tune", "--model", run, "--device", "cpu"});
  INFO(tuned.err);
  CHECK(tuned.exit_code == 0);
  CHECK(fs::exists(dir / "run/postprocess.yaml"));

  const auto exported = run_pneumo({"export", "--model", run, "--out", (dir / "model.pt").string()});
  INFO(exported.err);
  CHECK(exported.exit_code == 0);
  CHECK_THAT(exported.out, Contains("torch.jit.load"));
  CHECK(fs::file_size(dir / "model.pt") > 1000000);
}

TEST_CASE("calibrate, then evaluate's calibration, operating points and intervals, and tune for an operating point") {
  TempDir dir;
  make_run(dir);
  const std::string run = (dir / "run").string(), images = (dir / "set/dicom").string(),
                    labels = (dir / "set/train-rle.csv").string();
  // Fitted on all 8 labelled images (the validation fold alone may lack a class).
  auto r = run_pneumo({"calibrate", "--model", run, "--labels", labels, "--images", images, "--device", "cpu"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("calibrated on 8 image(s)") && Contains("temperature T=") && Contains("ECE"));
  REQUIRE(fs::exists(dir / "run/calibration.yaml"));
  CHECK_THAT(read_file(dir / "run/calibration.yaml"), Contains("method: temperature") && Contains("images: 8"));

  r = run_pneumo({"evaluate", "--model", run, "--labels", labels, "--images", images, "--out", (dir / "report").string(),
                  "--device", "cpu", "--bootstrap", "200"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("raw score         ECE") && Contains("calibrated        ECE") &&
                        Contains("the calibration was fitted on these images"));
  CHECK_THAT(r.out, Contains("95% bootstrap intervals (200 resamples") && Contains("sensitivity at specificity >= 0.95") &&
                        Contains("specificity at sensitivity >= 0.90"));
  const json metrics = json::parse(read_file(dir / "report/metrics.json"));
  CHECK(metrics["calibration"]["calibrated"]["ece"].is_number());
  CHECK(metrics["calibration"]["fitted_on_these_images"] == true);
  CHECK(metrics["operating_points"].size() == 4);
  CHECK(metrics["intervals"]["resamples"] == 200);
  CHECK(metrics["intervals"]["unit"] == "patient");  // the demo DICOMs name their patients
  CHECK(fs::file_size(dir / "report/reliability.png") > 1000);
  CHECK_THAT(read_file(dir / "report/per_image.csv"), Contains(",calibrated_probability\n"));

  // predict reports the calibrated probability beside the score; --no-calibration the score only.
  r = run_pneumo({"predict", "--model", run, images, "--out", (dir / "pred").string(), "--device", "cpu"});
  REQUIRE(r.exit_code == 0);
  const json line = json::parse(read_file(dir / "pred/predictions.jsonl").substr(0, read_file(dir / "pred/predictions.jsonl").find('\n')));
  REQUIRE(line["calibrated_probability"].is_number());
  CHECK(line["calibrated_probability"] != line["score"]);
  r = run_pneumo({"predict", "--model", run, images, "--out", (dir / "raw").string(), "--no-calibration"});
  CHECK(r.exit_code == 0);
  CHECK_THAT(read_file(dir / "raw/predictions.jsonl"), Contains("\"calibrated_probability\":null"));
  // An exported ensemble carries the calibration.
  REQUIRE(run_pneumo({"export", "--model", run, "--out", (dir / "model.pt").string()}).exit_code == 0);
  r = run_pneumo({"predict", "--model", (dir / "model.pt").string(), images, "--out", (dir / "exported").string()});
  REQUIRE(r.exit_code == 0);
  const std::string exported = read_file(dir / "exported/predictions.jsonl");
  const json exported_line = json::parse(exported.substr(0, exported.find('\n')));
  CHECK(exported_line["calibrated_probability"].get<double>() == Approx(line["calibrated_probability"].get<double>()).margin(1e-5));

  // tune for an operating point instead of Dice.
  r = run_pneumo({"tune", "--model", run, "--labels", labels, "--images", images, "--device", "cpu",
                  "--operating-point", "sensitivity=0.5"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("chosen for sensitivity >= 0.5") && Contains("sensitivity") && Contains("TP "));
  CHECK(fs::exists(dir / "run/postprocess.yaml"));

  // What is refused, and how.
  r = run_pneumo({"tune", "--model", run, "--operating-point", "recall=0.9"});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("sensitivity=S or specificity=S"));
  r = run_pneumo({"calibrate", "--model", run, "--method", "platt"});
  CHECK(r.exit_code == 2);
  r = run_pneumo({"calibrate", "--model", run, "--calibration", (dir / "run/calibration.yaml").string()});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("calibrate fits a new one"));
  r = run_pneumo({"predict", "--model", run, images, "--out", (dir / "o").string(), "--calibration",
                  (dir / "missing.yaml").string()});
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, Contains("missing.yaml"));
  write_file(dir / "damaged.yaml", "calibration: {method: temperature, temperature: -2}\n");
  r = run_pneumo({"predict", "--model", run, images, "--out", (dir / "o").string(), "--calibration",
                  (dir / "damaged.yaml").string()});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("damaged.yaml") && Contains("temperature"));
}

TEST_CASE("inference commands fail cleanly on bad input") {
  TempDir dir;
  make_run(dir);
  const std::string run = (dir / "run").string(), images = (dir / "set/dicom").string();
  // A model that is not there; a file that is not a checkpoint.
  auto r = run_pneumo({"predict", "--model", (dir / "nothing").string(), images, "--out", (dir / "o").string()});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("nothing"));
  write_file(dir / "junk.ckpt", "junk");
  r = run_pneumo({"predict", "--model", (dir / "junk.ckpt").string(), images, "--out", (dir / "o").string()});
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.err, Contains("junk.ckpt"));
  CHECK_FALSE(fs::exists(dir / "o"));
  // Weights that do not match the models; members a run does not have; an input that is no image.
  r = run_pneumo({"predict", "--model", run, "--model", run, "--weight", "1", images, "--out", (dir / "o").string()});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("--weight"));
  r = run_pneumo({"predict", "--model", run, "--members", "swa", images, "--out", (dir / "o").string()});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("swa.ckpt"));
  write_file(dir / "notes.txt", "x");
  r = run_pneumo({"predict", "--model", run, (dir / "notes.txt").string(), "--out", (dir / "o").string()});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("notes.txt"));
  // One unreadable DICOM among good ones: the others are predicted, the exit code says 1.
  write_file(dir / "more/broken.dcm", "not a dicom");
  r = run_pneumo({"predict", "--model", run, images, (dir / "more").string(), "--out", (dir / "p").string(),
                  "--device", "cpu"});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Contains("broken.dcm") && Contains("1 of 9"));
  CHECK(fs::exists(dir / "p/submission.csv"));
  // A threshold outside 0..1; a wrong --set key.
  r = run_pneumo({"predict", "--model", run, images, "--out", (dir / "o").string(), "--threshold", "2"});
  CHECK(r.exit_code == 2);
  r = run_pneumo({"predict", "--model", run, images, "--out", (dir / "o").string(), "--set", "data.sise=64"});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Contains("sise") && Contains("size"));
  // average needs two checkpoints of one network; export needs --out.
  r = run_pneumo({"average", (dir / "run/best.ckpt").string(), "--out", (dir / "a.ckpt").string()});
  CHECK(r.exit_code == 2);
  r = run_pneumo({"average", (dir / "run/best.ckpt").string(), (dir / "run/best.ckpt").string(), "--out",
                  (dir / "a.ckpt").string(), "--device", "cpu"});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Contains("recomputed over 4 training images"));
  CHECK(run_pneumo({"export", "--model", run}).exit_code == 2);
}

TEST_CASE("a class-table classifier from the command line: data check, train, evaluate's per-class table, predict's columns") {
  TempDir dir;
  pneumo::data::DemoSetOptions demo;
  demo.count = 12;
  demo.size = 64;
  demo.png = true;
  demo.images_per_patient = 2;
  pneumo::data::write_demo_set(dir / "set", demo);
  const std::string set = (dir / "set").string();
  const auto config = write_file(dir / "classes.yaml", "base: " + std::string(PNEUMO_SOURCE_DIR) +
                                                           "/configs/demo-classes.yaml\nexperiment: {output_dir: " +
                                                           (dir / "runs").string() + ", run_name: r}\ndata: {table: " +
                                                           set + "/classes.csv, images: " + set +
                                                           "/png, size: 32, folds: 3, cache: none, workers: 1}\n"
                                                           "train: {epochs: 1, batch_size: 4}\nruntime: {device: cpu}\n");
  const auto checked = run_pneumo({"data", "check", config.string()});
  INFO(checked.err);
  CHECK(checked.exit_code == 0);
  CHECK_THAT(checked.out, Contains("table: " + set + "/classes.csv (12 rows, 3 classes)") && Contains("Large") &&
                              Contains("ignored") && Contains("patients: 6, each in one fold"));

  const auto trained = run_pneumo({"train", config.string()});
  INFO(trained.err);
  REQUIRE(trained.exit_code == 0);
  CHECK_THAT(trained.err, Contains("val AUC per class:  Pneumothorax") && Contains("class weights |N|/|P|"));
  // On the CPU the classifier trains channels-last (runtime.channels_last: auto), and the log says so.
  CHECK_THAT(trained.err, Contains("memory order: NHWC (runtime.channels_last: auto; CPU kernels "));
  const std::string run = (dir / "runs/demo-classes/r").string();

  const auto fold = run_pneumo({"evaluate", "--model", run, "--out", (dir / "fold").string(), "--device", "cpu"});
  INFO(fold.err);
  CHECK(fold.exit_code == 0);
  CHECK_THAT(fold.out, Contains("validation fold 0") && Contains("Pneumothorax") && Contains("mean"));
  CHECK(fs::exists(dir / "fold/class_metrics.csv"));

  const auto table = run_pneumo({"evaluate", "--model", run, "--table", set + "/classes.csv", "--images", set + "/png",
                                 "--out", (dir / "all").string(), "--device", "cpu"});
  INFO(table.err);
  CHECK(table.exit_code == 0);
  CHECK_THAT(table.out, Contains("evaluated 12 image(s)") && Contains("AUC") && Contains("Right"));
  CHECK(fs::exists(dir / "all/roc/Pneumothorax.png"));
  CHECK_THAT(pneumo::testing::read_file(dir / "all/per_image.csv"),
             Contains("ImageId,p:Pneumothorax,p:Large,p:Right,truth:Pneumothorax,truth:Large,truth:Right"));

  const auto predicted = run_pneumo({"predict", "--model", run, set + "/png", "--out", (dir / "pred").string(),
                                     "--device", "cpu", "--no-overlays", "--no-masks"});
  INFO(predicted.err);
  CHECK(predicted.exit_code == 0);
  const std::string columns = pneumo::testing::read_file(dir / "pred/class_probabilities.csv");
  CHECK(columns.rfind("ImageId,Pneumothorax,Large,Right\n", 0) == 0);
  CHECK(std::count(columns.begin(), columns.end(), '\n') == 13);

  // Bad input: a table the ensemble was not trained on, a split list without a table, tune without masks.
  const auto wrong = run_pneumo({"evaluate", "--model", run, "--table", write_file(dir / "other.csv", "id,Effusion\nx,1\n").string(),
                                 "--images", set + "/png", "--out", (dir / "x").string(), "--device", "cpu"});
  CHECK(wrong.exit_code != 0);
  CHECK_THAT(wrong.err, Contains("Pneumothorax") && Contains("other.csv"));
  const auto list_only = run_pneumo({"evaluate", "--model", run, "--split-list", "l.txt", "--out", (dir / "x").string()});
  CHECK(list_only.exit_code == 2);
  CHECK_THAT(list_only.err, Contains("--split-list"));
  const auto tuned = run_pneumo({"tune", "--model", run, "--device", "cpu"});
  CHECK(tuned.exit_code == 2);
  CHECK_THAT(tuned.err, Contains("tune needs masks"));
}

TEST_CASE("evaluate and tune read a PNG image + mask folder as ground truth") {
  TempDir dir;
  make_run(dir);
  pneumo::data::DemoSetOptions demo;
  demo.count = 6;
  demo.size = 80;
  demo.png = true;
  pneumo::data::write_demo_set(dir / "png-set", demo);
  const std::string run = (dir / "run").string(), masks = (dir / "png-set/masks").string(),
                    images = (dir / "png-set/png").string();
  const auto evaluated = run_pneumo({"evaluate", "--model", run, "--masks", masks, "--images", images, "--out",
                                     (dir / "report").string(), "--device", "cpu"});
  INFO(evaluated.err);
  CHECK(evaluated.exit_code == 0);
  CHECK_THAT(evaluated.out, Contains("evaluated 6 image(s)") && Contains("with the masks of " + masks) &&
                                Contains("Kaggle mean Dice"));
  const auto tuned = run_pneumo({"tune", "--model", run, "--masks", masks, "--images", images, "--out",
                                 (dir / "post.yaml").string(), "--device", "cpu"});
  INFO(tuned.err);
  CHECK(tuned.exit_code == 0);
  fs::remove(dir / "png-set/masks" / (fs::directory_iterator(dir / "png-set/masks")->path().filename()));
  const auto missing = run_pneumo({"evaluate", "--model", run, "--masks", masks, "--images", images, "--out",
                                   (dir / "report2").string(), "--device", "cpu"});
  CHECK(missing.exit_code == 1);
  CHECK_THAT(missing.err, Contains("mask"));
  const auto both = run_pneumo({"evaluate", "--model", run, "--masks", masks, "--labels", "x.csv", "--images", images,
                                "--out", (dir / "report3").string()});
  CHECK(both.exit_code == 2);
  CHECK_THAT(both.err, Contains("one kind of ground truth"));
}
