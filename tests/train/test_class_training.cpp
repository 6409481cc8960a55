// Training from the layouts users have: a 14-label DenseNet121 from a ChestX-ray14-layout table
// (|-joined findings, NIH's list-file split, patients from the table), a U-Net from a PNG image +
// mask folder, each with patient-grouped folds; and what is refused before a run folder is made.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include "pneumo/core/error.h"
#include "pneumo/data/class_table.h"
#include "pneumo/data/demo_set.h"
#include "pneumo/train/checkpoint.h"
#include "pneumo/train/trainer.h"
#include "test_support.h"

using namespace pneumo;
using Catch::Matchers::Contains;
using pneumo::testing::TempDir;
using pneumo::testing::write_file;
namespace fs = std::filesystem;

namespace {

std::vector<std::vector<std::string>> csv_rows(const fs::path& file) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(pneumo::testing::read_file(file));
  for (std::string line; std::getline(in, line);) rows.push_back(data::split_csv_line(line));
  return rows;
}

// The demo set at 64x64 with its PNG layout, `per_patient` consecutive images per patient.
void write_png_demo(const fs::path& folder, int count, int per_patient) {
  data::DemoSetOptions demo;
  demo.count = count;
  demo.size = 64;
  demo.png = true;
  demo.images_per_patient = per_patient;
  data::write_demo_set(folder, demo);
}

// A 16-image demo set (two images per patient) with a ChestX-ray14-layout table of its PNGs:
// Pneumothorax where the demo has one, Effusion on every third image, else No Finding; the
// list file leaves the last patient out (NIH's test_list.txt would hold it).
void write_chestxray14_set(const TempDir& dir) {
  write_png_demo(dir / "set", 16, 2);
  std::string table =
      "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
      "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n";
  std::string train_val;
  const auto rows = csv_rows(dir / "set/classes.csv");  // id,patient,Pneumothorax,Large,Right
  for (size_t i = 1; i < rows.size(); ++i) {
    std::vector<std::string> findings;
    if (rows[i][2] == "1") findings.push_back("Pneumothorax");
    if (i % 3 == 0) findings.push_back("Effusion");
    const std::string labels = findings.empty() ? "No Finding" : fmt::format("{}", fmt::join(findings, "|"));
    table += fmt::format("{}.png,{},0,{},50,M,PA,64,64,0.1,0.1,\n", rows[i][0], labels, rows[i][1]);
    if (i <= 14) train_val += rows[i][0] + ".png\n";
  }
  write_file(dir / "Data_Entry_2017.csv", table);
  write_file(dir / "train_val_list.txt", train_val);
}

train::ExperimentConfig chestxray14_experiment(const TempDir& dir, const std::vector<std::string>& overrides) {
  const std::string yaml = fmt::format(R"(
experiment: {{name: cxr14, output_dir: {0}/runs, run_name: run, seed: 5}}
runtime: {{device: cpu, threads: 1}}
data: {{table: {0}/Data_Entry_2017.csv, split_list: {0}/train_val_list.txt, images: {0}/set/png, group_by: patient,
        size: 32, folds: 3, cache: none, workers: 1}}
model: {{name: classifier, encoder: {{in_channels: 1}}, classes: 14}}
train: {{epochs: 2, batch_size: 4, optimizer: {{lr: 0.001}}, schedule: {{name: constant}}, loss: {{class_balance: chexnet}},
         monitor: val_auc}}
)",
                                       dir.path().string());
  write_file(dir / "cxr14.yaml", yaml);
  return train::load_experiment((dir / "cxr14.yaml").string(), overrides);
}

}  // namespace

TEST_CASE("a 14-label DenseNet121 trains from a ChestX-ray14-layout table with patient-grouped folds") {
  TempDir dir;
  write_chestxray14_set(dir);
  const train::TrainSummary s = train::train_experiment(chestxray14_experiment(dir, {}));
  CHECK(s.epochs_run == 2);
  const fs::path run = dir / "runs/cxr14/run";

  // metrics.csv: val_auc and one auc:<class> column per class, in CheXNet's order.
  const auto metrics = csv_rows(run / "metrics.csv");
  REQUIRE(metrics.size() == 3);
  REQUIRE(metrics[0].size() == 8 + 14);
  CHECK(metrics[0][8] == "auc:Atelectasis");
  CHECK(metrics[0][8 + 7] == "auc:Pneumothorax");
  CHECK_THAT(pneumo::testing::read_file(run / "metrics.jsonl"), Contains("\"val_class_auc\": {\"Atelectasis\""));

  // The checkpoint keeps each epoch's per-class AUCs; val_auc is the mean of those defined.
  const train::Checkpoint last = train::read_checkpoint(run / "last.ckpt");
  const train::TrainingState state = train::TrainingState::from_checkpoint(last, "last.ckpt");
  REQUIRE(state.history.size() == 2);
  const std::vector<double>& aucs = state.history[1].val_class_auc;
  REQUIRE(aucs.size() == 14);
  double sum = 0;
  int defined = 0;
  for (double a : aucs)
    if (!std::isnan(a)) sum += a, ++defined;
  if (defined > 0)
    CHECK(state.history[1].val_auc == Approx(sum / defined));
  else
    CHECK(std::isnan(state.history[1].val_auc));
  CHECK(std::isnan(aucs[13]));  // no Hernia in the table

  // The run records the resolved classes (evaluate and predict name their columns by them).
  const train::ExperimentConfig recorded = train::load_experiment((run / "config.yaml").string(), {});
  CHECK(recorded.data.classes == data::chestxray14_classes());

  // The list file's 14 images, no patient in two folds.
  const auto folds = csv_rows(run / "folds.csv");
  REQUIRE(folds.size() == 15);
  std::map<std::string, std::string> patient_of;
  for (const auto& row : csv_rows(dir / "set/classes.csv")) patient_of[row[0]] = row.size() > 1 ? row[1] : "";
  std::map<std::string, std::set<std::string>> folds_of;
  for (size_t i = 1; i < folds.size(); ++i) folds_of[patient_of.at(folds[i][0])].insert(folds[i][1]);
  CHECK(folds_of.size() == 7);
  for (const auto& [patient, in] : folds_of) CHECK(in.size() == 1);

  // The fine-tuning paths of configs/chexnet-finetune-siim.yaml on the SIIM-layout labels of the
  // same images: a new one-logit head on the run's DenseNet121 features, or CheXNet's head kept
  // (its Pneumothorax logit, 7, trained).
  const std::string siim = fmt::format("data.labels={0}/set/train-rle.csv", dir.path().string());
  const std::vector<std::string> on_siim{"data.table=", "data.split_list=", "data.classes=[]", siim,
                                         fmt::format("data.images={}/set/dicom", dir.path().string()),
                                         "data.group_by=none", "train.epochs=1", "train.loss.class_balance=none"};
  std::vector<std::string> new_head = on_siim;
  for (const std::string& o : {std::string("experiment.run_name=new-head"), std::string("model.classes=1"),
                               "model.encoder.weights=" + (run / "best.ckpt").string(),
                               std::string("train.optimizer.lr=1e-12")})  // so the loaded features stay visible
    new_head.push_back(o);
  CHECK(train::train_experiment(chestxray14_experiment(dir, new_head)).epochs_run == 1);
  const auto conv0 = [](const fs::path& file) {
    for (const auto& [name, tensor] : train::read_checkpoint(file).model)
      if (name == "features.conv0.weight") return tensor;
    FAIL("no features.conv0.weight in " << file);
    throw;
  };
  CHECK(torch::allclose(conv0(dir / "runs/cxr14/new-head/last.ckpt"), conv0(run / "best.ckpt"), 0, 1e-9));
  std::vector<std::string> kept_head = on_siim;
  for (const std::string& o : {std::string("experiment.run_name=kept-head"), "model.weights=" + (run / "best.ckpt").string()})
    kept_head.push_back(o);
  CHECK(train::train_experiment(chestxray14_experiment(dir, kept_head)).epochs_run == 1);
}

TEST_CASE("class-table experiments that do not fit are refused before a run folder is made") {
  TempDir dir;
  write_chestxray14_set(dir);
  CHECK_THROWS_WITH(train::train_experiment(chestxray14_experiment(dir, {"model.classes=3"})),
                    Contains("model.classes: 3") && Contains("expected 14"));
  CHECK_THROWS_WITH(train::train_experiment(chestxray14_experiment(
                        dir, {"model.name=unet", "model.encoder.name=resnet18", "train.monitor=val_loss"})),
                    Contains("segmenter") && Contains("data.table"));
  CHECK_THROWS_WITH(train::train_experiment(chestxray14_experiment(
                        dir, {"train.loss.class_balance=none", "train.loss.class_weights=[1, 2]"})),
                    Contains("train.loss.class_weights: 2 values") && Contains("14"));
  CHECK_THROWS_WITH(train::train_experiment(chestxray14_experiment(dir, {"train.loss.class_weights=[1]"})),
                    Contains("class_balance"));
  CHECK_THROWS_WITH(train::train_experiment(chestxray14_experiment(dir, {"data.classes=[Pneumothorax, Flu]"})),
                    Contains("'Flu'") && Contains("Data_Entry_2017.csv"));
  CHECK_FALSE(fs::exists(dir / "runs"));
}

TEST_CASE("a U-Net trains from a PNG image + mask folder with patient-grouped folds") {
  TempDir dir;
  write_png_demo(dir / "set", 12, 3);
  write_file(dir / "png.yaml", fmt::format(R"(
experiment: {{name: png, output_dir: {0}/runs, run_name: run, seed: 5}}
runtime: {{device: cpu, threads: 1}}
data: {{masks: {0}/set/masks, images: {0}/set/png, group_by: patient, patients: {0}/set/patients.csv, size: 32,
        folds: 4, cache: none, workers: 1}}
model: {{name: unet, encoder: {{name: resnet18, in_channels: 1}}, decoder_channels: [32, 16, 16, 8, 8]}}
train: {{epochs: 1, batch_size: 3, schedule: {{name: constant}}}}
)",
                                           dir.path().string()));
  const train::TrainSummary s = train::train_experiment(train::load_experiment((dir / "png.yaml").string(), {}));
  CHECK(s.epochs_run == 1);
  const auto folds = csv_rows(dir / "runs/png/run/folds.csv");
  REQUIRE(folds.size() == 13);
  std::map<std::string, std::string> patient_of;
  for (const auto& row : csv_rows(dir / "set/patients.csv")) patient_of[row[0]] = row[1];
  std::map<std::string, std::set<std::string>> folds_of;
  for (size_t i = 1; i < folds.size(); ++i) folds_of[patient_of.at(folds[i][0])].insert(folds[i][1]);
  CHECK(folds_of.size() == 4);
  for (const auto& [patient, in] : folds_of) CHECK(in.size() == 1);
}
