// Image-level class tables: the generic CSV, ChestX-ray14's Data_Entry_2017.csv with its list
// files, CheXpert's train.csv under each uncertainty policy; the dataset, batches and folds they
// give (stratified by the rarest positive class, patients kept together).
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <set>

#include <opencv2/core.hpp>

#include "pneumo/core/config_node.h"
#include "pneumo/core/config_schema.h"
#include "pneumo/core/error.h"
#include "pneumo/data/class_table.h"
#include "pneumo/data/data_section.h"
#include "pneumo/data/dataset.h"
#include "pneumo/data/demo_set.h"
#include "pneumo/data/dicom.h"
#include "pneumo/data/folds.h"
#include "pneumo/data/image_io.h"
#include "pneumo/data/labels.h"
#include "pneumo/data/loader.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

using namespace pneumo;
using Catch::Matchers::Contains;
using pneumo::testing::TempDir;
using pneumo::testing::write_file;
namespace fs = std::filesystem;

namespace {

void write_grey_png(const fs::path& file, int value) {
  fs::create_directories(file.parent_path());
  data::write_png(file, cv::Mat(16, 16, CV_8UC1, cv::Scalar(value)));
}

data::DataSection section(const std::string& yaml) {
  return core::read_section<data::DataSection>(core::parse_yaml(yaml, "data.yaml"), "data");
}

bool ignored(float t) { return std::isnan(t); }

// NIH's header as published (its bracketed names hold commas) and a few rows.
const char* kChestXray14 =
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n"
    "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143,\n"
    "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143,\n"
    "00000002_000.png,No Finding,0,2,81,M,PA,2500,2048,0.171,0.171,\n"
    "00000003_000.png,Pneumothorax|Effusion|Pleural_Thickening,0,3,76,F,AP,2048,2500,0.168,0.168,\n"
    "00000004_000.png,Mass|Nodule,0,4,82,M,AP,2582,2991,0.143,0.143,\n";

// CheXpert's header as published and rows with 1.0 / 0.0 / -1.0 / blank.
const char* kChexpert =
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
    "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,Fracture,"
    "Support Devices\n"
    "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0\n"
    "CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Female,87,Frontal,AP,,,-1.0,1.0,,-1.0,-1.0,,-1.0,,-1.0,,1.0,\n"
    "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg,Female,83,Frontal,AP,,,,1.0,,,-1.0,,,,,,1.0,\n"
    "CheXpert-v1.0-small/train/patient00002/study1/view2_lateral.jpg,Female,83,Lateral,,,,,1.0,,,-1.0,,,,,,1.0,\n";

void write_chexpert(const TempDir& dir) {
  write_file(dir / "CheXpert-v1.0-small/train.csv", kChexpert);
  for (const char* path : {"train/patient00001/study1/view1_frontal.jpg", "train/patient00002/study2/view1_frontal.jpg",
                           "train/patient00002/study1/view1_frontal.jpg", "train/patient00002/study1/view2_lateral.jpg"})
    write_grey_png(dir / "CheXpert-v1.0-small" / path, 100);  // (PNG bytes under a .jpg name decode all the same)
}

const data::ClassRow& row_of(const data::ClassTable& table, const std::string& id) {
  for (const data::ClassRow& r : table.rows())
    if (r.image_id == id) return r;
  FAIL("no row " << id);
  throw;
}

}  // namespace

TEST_CASE("a ChestX-ray14 table reads |-joined findings, No Finding, patients and the list-file split") {
  TempDir dir;
  const fs::path table = write_file(dir / "Data_Entry_2017.csv", kChestXray14);
  const data::ClassTable all = data::ClassTable::read(table, {});
  CHECK(all.format() == data::TableFormat::kChestXray14);
  CHECK(all.classes() == data::chestxray14_classes());
  REQUIRE(all.rows().size() == 5);
  REQUIRE(all.classes()[7] == "Pneumothorax");  // CheXNet's order
  const data::ClassRow& r3 = row_of(all, "00000003_000");
  CHECK(r3.patient == "3");
  CHECK(r3.line == 5);
  std::vector<float> expected(14, 0.0f);
  expected[7] = expected[2] = expected[12] = 1.0f;  // Pneumothorax, Effusion, Pleural_Thickening
  CHECK(r3.targets == expected);
  CHECK(row_of(all, "00000002_000").targets == std::vector<float>(14, 0.0f));  // No Finding

  data::ClassTableOptions chosen;
  chosen.classes = {"Pneumothorax", "Cardiomegaly"};
  chosen.split_list = write_file(dir / "train_val_list.txt", "00000001_000.png\n00000001_001.png\n00000003_000.png\n");
  const data::ClassTable train = data::ClassTable::read(table, chosen);
  REQUIRE(train.rows().size() == 3);
  CHECK(row_of(train, "00000001_001").targets == std::vector<float>{0.0f, 1.0f});
  CHECK(row_of(train, "00000003_000").targets == std::vector<float>{1.0f, 0.0f});
  chosen.split_list = write_file(dir / "test_list.txt", "00000002_000.png\n00000004_000.png\n");
  CHECK(data::ClassTable::read(table, chosen).rows().size() == 2);

  // Images found by id anywhere under the folder (NIH's images_001/images/...).
  for (const char* id : {"00000001_000", "00000001_001", "00000002_000", "00000003_000", "00000004_000"})
    write_grey_png(dir / "images_001" / "images" / (std::string(id) + ".png"), 90);
  const data::DatasetIndex index = data::build_dataset_index(all, dir.path());
  REQUIRE(index.entries.size() == 5);
  CHECK(index.entries[0].patient == "1");
  CHECK(index.entries[2].positive == false);

  SECTION("errors name the file, the line and what was expected") {
    CHECK_THROWS_WITH(data::ClassTable::read(write_file(dir / "bad.csv", std::string(kChestXray14) +
                                                                            "00000005_000.png,Pneumothorax|Flu,0,5,1,M,PA,1,1,1,1,\n"),
                                             {}),
                      Contains("bad.csv:7") && Contains("'Flu'") && Contains("No Finding"));
    data::ClassTableOptions unknown;
    unknown.classes = {"Pneumothorax", "Lung Opacity"};
    CHECK_THROWS_WITH(data::ClassTable::read(table, unknown),
                      Contains("data.classes: 'Lung Opacity'") && Contains("Hernia"));
    fs::remove(dir / "images_001" / "images" / "00000004_000.png");
    CHECK_THROWS_WITH(data::build_dataset_index(all, dir.path()),
                      Contains("Data_Entry_2017.csv:6") && Contains("00000004_000"));
    data::ClassTableOptions nothing;
    nothing.split_list = write_file(dir / "other_list.txt", "99999999_000.png\n");
    CHECK_THROWS_WITH(data::ClassTable::read(table, nothing), Contains("other_list.txt") && Contains("none of its 1"));
  }
}

TEST_CASE("a CheXpert table under each uncertainty policy, blanks as not mentioned, patients from the paths") {
  TempDir dir;
  write_chexpert(dir);
  const fs::path table = dir / "CheXpert-v1.0-small/train.csv";
  data::ClassTableOptions o;
  o.classes = {"Atelectasis", "Edema", "Consolidation", "Cardiomegaly"};
  const std::string second = "CheXpert-v1.0-small/train/patient00002/study2/view1_frontal";

  o.uncertain = data::CellPolicy::kOnes;
  CHECK(row_of(data::ClassTable::read(table, o), second).targets == std::vector<float>{1, 1, 1, 1});
  o.uncertain = data::CellPolicy::kZeros;
  CHECK(row_of(data::ClassTable::read(table, o), second).targets == std::vector<float>{0, 0, 0, 0});
  o.uncertain = data::CellPolicy::kIgnore;
  o.uncertain_by_class = {{"Atelectasis", data::CellPolicy::kOnes}, {"Edema", data::CellPolicy::kOnes}};
  const data::ClassTable mixed = data::ClassTable::read(table, o);
  CHECK(mixed.format() == data::TableFormat::kChexpert);
  const data::ClassRow& r = row_of(mixed, second);
  CHECK(r.targets[0] == 1.0f);
  CHECK(r.targets[1] == 1.0f);
  CHECK(ignored(r.targets[2]));
  CHECK(ignored(r.targets[3]));
  CHECK(r.patient == "patient00002");
  const data::ClassRow& first = row_of(mixed, "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal");
  CHECK(first.targets == std::vector<float>{0, 0, 0, 0});  // blank: not mentioned
  o.blank = data::CellPolicy::kIgnore;
  CHECK(ignored(row_of(data::ClassTable::read(table, o), first.image_id).targets[0]));

  // By default the 14 observations in table order.
  CHECK(data::ClassTable::read(table, {}).classes().size() == 14);
  CHECK(data::ClassTable::read(table, {}).classes().front() == "No Finding");

  // Paths resolve under data.images (the folder holding CheXpert-v1.0-small) or beside the table.
  const data::DatasetIndex index = data::build_dataset_index(mixed, dir.path());
  REQUIRE(index.entries.size() == 4);
  CHECK(index.entries[1].file == dir / "CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg");

  SECTION("errors: a cell that is not 1/0/-1/blank, a class not in the table, a missing image") {
    std::string bad = kChexpert;
    bad.replace(bad.find("68,Frontal,AP,1.0"), 17, "68,Frontal,AP,yes");
    const fs::path bad_table = write_file(dir / "CheXpert-v1.0-small/bad.csv", bad);
    CHECK_THROWS_WITH(data::ClassTable::read(bad_table, {}),
                      Contains("bad.csv:2") && Contains("'No Finding'") && Contains("'yes'"));
    data::ClassTableOptions cxr14;
    cxr14.classes = {"Infiltration"};
    CHECK_THROWS_WITH(data::ClassTable::read(table, cxr14), Contains("Infiltration") && Contains("Support Devices"));
    data::ClassTableOptions wrong_policy = o;
    wrong_policy.uncertain_by_class = {{"Hernia", data::CellPolicy::kOnes}};
    CHECK_THROWS_WITH(data::ClassTable::read(table, wrong_policy), Contains("uncertain_by_class: 'Hernia'"));
    fs::remove(dir / "CheXpert-v1.0-small/train/patient00002/study1/view2_lateral.jpg");
    CHECK_THROWS_WITH(data::build_dataset_index(mixed, dir.path()),
                      Contains("train.csv:5") && Contains("view2_lateral.jpg"));
  }
}

TEST_CASE("a generic table: id or path column, optional patient, classes by column, errors named") {
  TempDir dir;
  const fs::path table = write_file(dir / "labels.csv",
                                    "\xEF\xBB\xBFid,patient,Pneumothorax,Effusion\r\n"
                                    "a.png,P1,1,0\r\n"
                                    "b,P1,0,\r\n"
                                    "\"c\",P2,-1,1\r\n");
  const data::ClassTable t = data::ClassTable::read(table, {});
  CHECK(t.format() == data::TableFormat::kGeneric);
  CHECK(t.classes() == std::vector<std::string>{"Pneumothorax", "Effusion"});
  CHECK(row_of(t, "a").targets == std::vector<float>{1, 0});  // an image extension is not part of the id
  CHECK(row_of(t, "b").targets == std::vector<float>{0, 0});
  CHECK(ignored(row_of(t, "c").targets[0]));
  CHECK(row_of(t, "c").patient == "P2");
  CHECK_THROWS_WITH(data::ClassTable::read(write_file(dir / "dup.csv", "id,A\nx,1\ny,0\nx,0\n"), {}),
                    Contains("dup.csv:4") && Contains("already on line 2"));
  CHECK_THROWS_WITH(data::ClassTable::read(write_file(dir / "noid.csv", "name,A\nx,1\n"), {}),
                    Contains("noid.csv") && Contains("'id'"));
  CHECK_THROWS_WITH(data::ClassTable::read(write_file(dir / "noclass.csv", "id,patient\nx,1\n"), {}),
                    Contains("no class columns"));
  CHECK_THROWS_WITH(data::ClassTable::read(write_file(dir / "empty.csv", ""), {}), Contains("empty"));
  CHECK_THROWS_WITH(data::ClassTable::read(write_file(dir / "twice.csv", "id,A,A\nx,1,0\n"), {}),
                    Contains("twice.csv") && Contains("'A' twice"));
  CHECK_THROWS_WITH(data::ClassTable::read(write_file(dir / "cut.csv", "id,A,B\nx,1,0\ny,1\n"), {}),
                    Contains("cut.csv:3: 2 fields; expected at least 3") && Contains("'B'"));
  CHECK(data::split_csv_line("a,\"b,c\",\"d\"\"e\",") == std::vector<std::string>{"a", "b,c", "d\"e", ""});
}

TEST_CASE("data.table: the dataset and batches carry class targets, NaN where ignored") {
  TempDir dir;
  data::DemoSetOptions demo;
  demo.count = 12;
  demo.size = 64;
  demo.png = true;
  demo.images_per_patient = 2;
  const data::DemoSetSummary set = data::write_demo_set(dir.path(), demo);
  REQUIRE(fs::exists(set.classes_csv));
  const data::Dataset dataset = data::open_dataset(section(fmt::format(
      "{{table: {}, images: {}, size: 32, cache: none, classes: [Pneumothorax, Large, Right], group_by: patient}}",
      set.classes_csv.string(), set.png_dir.string())));
  CHECK_FALSE(dataset.has_masks());
  CHECK(dataset.classes() == data::demo_classes());
  REQUIRE(dataset.size() == 12);
  CHECK_THROWS_AS(dataset.masks(), core::UsageError);
  CHECK(dataset.index().entries[0].patient == "DEMO00000");  // from the table's patient column
  int64_t positives = 0;
  for (const data::IndexEntry& e : dataset.index().entries) {
    positives += e.positive;
    CHECK(e.positive == (e.targets[0] == 1.0f));
  }
  CHECK(positives > 0);
  const data::Sample s = dataset.load(0);
  CHECK(s.targets.size() == 3);
  CHECK(cv::countNonZero(s.mask) == 0);

  data::LoaderOptions options;
  options.batch_size = 12;
  options.workers = 0;
  std::vector<int64_t> order(12);
  for (int64_t i = 0; i < 12; ++i) order[i] = i;
  data::BatchLoader loader(dataset, order, options);
  const auto batch = loader.next();
  REQUIRE(batch);
  REQUIRE(batch->targets.defined());
  CHECK(batch->targets.sizes() == std::vector<int64_t>{12, 3});
  for (int64_t i = 0; i < 12; ++i)
    for (int64_t c = 0; c < 3; ++c) {
      const float want = dataset.index().entries[i].targets[c];
      const float got = batch->targets[i][c].item<float>();
      CHECK((std::isnan(want) ? std::isnan(got) : got == want));
    }

  // The table-only keys are refused without a table; one source of labels at a time.
  CHECK_THROWS_WITH(data::validate(section("{labels: x.csv, images: y, classes: [A]}")),
                    Contains("data.classes") && Contains("data.table"));
  CHECK_THROWS_WITH(data::validate(section("{labels: x.csv, table: t.csv, images: y}")), Contains("one source"));
  CHECK_THROWS_WITH(data::validate(section("{table: t.csv, images: y, uncertain_by_class: [Edema]}")),
                    Contains("Class=ones|zeros|ignore"));
  CHECK_THROWS_WITH(data::validate(section("{table: t.csv, images: y, uncertain_by_class: [Edema=maybe]}")),
                    Contains("Edema=maybe"));
}

TEST_CASE("multi-label folds: stratified by the rarest positive class, patients kept together, fixed by the seed") {
  // 60 images of 30 patients; class 2 is rare, class 0 common.
  data::DatasetIndex index;
  for (int i = 0; i < 60; ++i) {
    data::IndexEntry e;
    e.image_id = fmt::format("i{}", i);
    e.patient = fmt::format("p{}", i / 2);
    e.targets = {i % 2 == 0 ? 1.0f : 0.0f, i % 5 == 0 ? 1.0f : 0.0f, i % 12 == 0 ? 1.0f : 0.0f};
    e.positive = e.targets[0] == 1.0f || e.targets[1] == 1.0f || e.targets[2] == 1.0f;
    index.entries.push_back(e);
  }
  const std::vector<int> strata = index.strata();
  CHECK(index.strata_count() == 4);
  CHECK(strata[0] == 0);   // has the rarest class (2)
  CHECK(strata[5] == 1);   // class 1 only
  CHECK(strata[2] == 2);   // class 0 only
  CHECK(strata[1] == 3);   // no positive class

  const std::vector<int> plain = data::stratified_folds(strata, 4, 5, 11);
  std::vector<int> rare(5, 0);
  for (size_t i = 0; i < plain.size(); ++i) rare[plain[i]] += strata[i] == 0;
  CHECK(*std::max_element(rare.begin(), rare.end()) - *std::min_element(rare.begin(), rare.end()) <= 1);
  CHECK(plain == data::stratified_folds(strata, 4, 5, 11));
  CHECK(plain != data::stratified_folds(strata, 4, 5, 12));

  std::vector<std::string> patients;
  for (const data::IndexEntry& e : index.entries) patients.push_back(e.patient);
  const std::vector<int> grouped = data::grouped_stratified_folds(strata, 4, patients, 5, 11);
  std::map<std::string, std::set<int>> folds_of;
  for (size_t i = 0; i < grouped.size(); ++i) folds_of[patients[i]].insert(grouped[i]);
  for (const auto& [patient, folds] : folds_of) CHECK(folds.size() == 1);
  std::vector<int> class2(5, 0);
  for (size_t i = 0; i < grouped.size(); ++i) class2[grouped[i]] += index.entries[i].targets[2] == 1.0f;
  CHECK(*std::max_element(class2.begin(), class2.end()) - *std::min_element(class2.begin(), class2.end()) <= 1);
  CHECK(grouped == data::grouped_stratified_folds(strata, 4, patients, 5, 11));

  // The binary forms are the strata forms with positives first: the same draws as before.
  const std::vector<bool> positive = index.positives();
  std::vector<int> binary;
  for (bool p : positive) binary.push_back(p ? 0 : 1);
  CHECK(data::stratified_folds(positive, 5, 3) == data::stratified_folds(binary, 2, 5, 3));
  CHECK(data::grouped_stratified_folds(positive, patients, 5, 3) == data::grouped_stratified_folds(binary, 2, patients, 5, 3));
}

TEST_CASE("a generic class table over the real SIIM DICOMs, grouped by their PatientID") {
  const fs::path siim = fs::path(PNEUMO_SHARED_DATA_DIR) / "siim";
  if (!fs::is_directory(siim / "dicom")) {
    WARN("skipped: " << siim << " is absent");
    return;
  }
  // Pneumothorax from the sample label file, one made-up uncertain class.
  const data::LabelTable labels = data::LabelTable::read_csv(siim / "train-rle-sample.csv");
  TempDir dir;
  std::string table = "ImageId,Pneumothorax,Other\n";
  int row = 0;
  for (const auto& e : fs::directory_iterator(siim / "dicom")) {
    const std::string id = e.path().stem().string();
    table += fmt::format("{},{},{}\n", id, labels.contains(id) && labels.is_positive(id) ? 1 : 0, row++ % 2 ? "-1" : "0");
  }
  write_file(dir / "classes.csv", table);
  const data::Dataset dataset = data::open_dataset(section(fmt::format(
      "{{table: {}, images: {}, size: 64, cache: none, group_by: patient, folds: 2}}", (dir / "classes.csv").string(),
      (siim / "dicom").string())));
  REQUIRE(dataset.size() == 10);
  CHECK(dataset.classes() == std::vector<std::string>{"Pneumothorax", "Other"});
  for (const data::IndexEntry& e : dataset.index().entries) {
    CHECK(e.patient == data::read_dicom_patient_id(e.file));  // no patient column: the DICOM header's
    CHECK(e.targets.size() == 2);
  }
  const data::Sample s = dataset.load(0);
  CHECK(s.image.rows == 64);
  const std::vector<int> folds =
      data::assign_folds(section("{table: x, images: y, group_by: patient, folds: 2}"), dataset.index(), 3);
  CHECK(folds.size() == 10);
}
