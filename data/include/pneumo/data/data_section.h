// The `data:` section of an experiment file, and what it builds: the dataset, its folds, the
// negative-share schedule and the loader settings.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pneumo/core/config_schema.h"
#include "pneumo/data/dataset.h"
#include "pneumo/data/loader.h"
#include "pneumo/data/sampler.h"

namespace pneumo::data {

bool is_worker_count(const std::string& text);  // "auto" or a whole number 0..256

struct NegativeSharePoint {
  int64_t epoch = 0;
  double share = 1.0;

  template <class V>
  void visit(V& v) {
    v("epoch", epoch, "epoch (0-based) at which this share holds", core::at_least<int64_t>(0));
    v("share", share, "fraction of negative images drawn that epoch",
      core::in_range(0.0, 1.0));
  }
};

struct DataSection {
  std::string labels;  // SIIM label CSV
  std::string masks;   // or a folder of <ImageId>.png masks
  std::string missing_mask = "error";
  std::string table;   // or an image-level class table (classifiers)
  std::string table_format = "auto";
  std::vector<std::string> classes;
  std::string uncertain = "ignore";
  std::vector<std::string> uncertain_by_class;  // "Class=ones|zeros|ignore"
  std::string blank = "zeros";
  std::string split_list;
  std::string images;  // folder searched recursively for <ImageId>.dcm / .png / .jpg
  std::string group_by = "none";
  std::string patients;  // ImageId,PatientID CSV for group_by: patient without DICOM headers
  int size = 256;
  std::string interpolation = "area";
  std::string window = "none";
  int channels = 1;
  std::vector<double> mean{0.0};
  std::vector<double> std{1.0};
  int folds = 5;
  int fold = 0;
  std::string folds_file;
  std::string cache = "auto";
  std::string workers = "auto";  // or a count; see loader_options
  int prefetch = 4;
  std::vector<NegativeSharePoint> negative_share;

  template <class V>
  void visit(V& v) {
    v("labels", labels, "SIIM label CSV (ImageId,EncodedPixels); relative paths from the working folder");
    v("masks", masks, "instead of labels: a folder of <ImageId>.png masks (0 outside; 1 or 255 inside; any size)");
    v("missing_mask", missing_mask, "with masks: an image without a mask file is an error, or a negative",
      core::one_of({"error", "negative"}));
    v("table", table, "instead of labels: an image-level class table for classifiers (generic CSV, ChestX-ray14's "
      "Data_Entry_2017.csv or CheXpert's train.csv/valid.csv)");
    v("table_format", table_format, "with table: its layout (auto: from the header)",
      core::one_of({"auto", "generic", "chestxray14", "chexpert"}));
    v("classes", classes, "with table: the classes, by name, in logit order (empty: the 14 ChestX-ray14 findings in "
      "CheXNet's order, CheXpert's 14 observations, or every class column of a generic table)");
    v("uncertain", uncertain, "with table: what an uncertain (-1) cell becomes (ignore: masked out of the loss)",
      core::one_of({"ones", "zeros", "ignore"}));
    v("uncertain_by_class", uncertain_by_class, "with table: per-class exceptions to uncertain, as Class=ones|zeros|ignore");
    v("blank", blank, "with table: what a blank cell becomes (zeros: not mentioned, as CheXpert reads it)",
      core::one_of({"ones", "zeros", "ignore"}));
    v("split_list", split_list, "with table: a list of image file names (ChestX-ray14's train_val_list.txt or "
      "test_list.txt); only those rows are used");
    v("images", images, "folder searched recursively for <ImageId>.dcm, .png, .jpg or .jpeg (8- or 16-bit)");
    v("group_by", group_by, "folds keep each patient's images together (patient: from data.patients, the class "
      "table's patient column, or the DICOM PatientID) or not (none)",
      core::one_of({"none", "patient"}));
    v("patients", patients, "with group_by: patient, a CSV (ImageId,PatientID) instead of the DICOM headers "
      "(needed for PNG/JPEG images)");
    v("size", size, "images and masks are resized to size x size", core::in_range(8, 8192));
    v("interpolation", interpolation, "image resize filter (masks: nearest)",
      core::one_of({"area", "linear", "cubic", "nearest"}));
    v("window", window, "grey mapping: none (8-bit as is, else min..max) or file (VOI window)",
      core::one_of({"none", "file"}));
    v("channels", channels, "input channels: 1, or 3 (grey repeated, for ImageNet encoders)",
      core::Check<int>{"1 or 3", [](const int& c) { return c == 1 || c == 3; }});
    v("mean", mean, "per-channel mean subtracted from pixels in 0..1 (one value or one per channel)");
    v("std", std, "per-channel divisor after the mean (one value or one per channel)");
    v("folds", folds, "number of stratified folds", core::in_range(2, 100));
    v("fold", fold, "the fold used for validation; the others train", core::at_least(0));
    v("folds_file", folds_file, "CSV (ImageId,fold) to use instead of drawing folds");
    v("cache", cache, "preprocessing cache folder: auto (~/.cache/pneumo), none, or a path",
      core::non_empty());
    v("workers", workers,
      "loader threads: auto (one on the CPU, three quarters of the cores on a GPU; see runtime.threads), "
      "or a count 0..256 (0 loads on the training thread)",
      core::Check<std::string>{"auto or a count 0..256", [](const std::string& w) { return is_worker_count(w); }});
    v("prefetch", prefetch, "batches prepared ahead of training", core::in_range(1, 1024));
    v("negative_share", negative_share,
      "training epochs use all positives plus this share of negatives, linear between points "
      "(empty: all)");
  }
};

// Checks what the per-key rules cannot (required paths, fold < folds, mean/std lengths).
// Throws ConfigError naming the key.
void validate(const DataSection& data);

PreprocessOptions preprocess_options(const DataSection& data);
NegativeShareSchedule negative_share_schedule(const DataSection& data);

// The table-reading options of the section (after validate).
ClassTableOptions class_table_options(const DataSection& data);

// Reads the labels (or mask folder, or class table), indexes the images and sets up
// preprocessing (after validate).
Dataset open_dataset(const DataSection& data);

// The fold of every entry: read from `folds_file` when set (with group_by: patient, a file that
// puts one patient in two folds is a DataError naming the patient), else drawn with `seed`.
std::vector<int> assign_folds(const DataSection& data, const DatasetIndex& index, uint64_t seed);

struct FoldSplit {
  std::vector<int64_t> train;       // dataset indices outside `fold`
  std::vector<int64_t> validation;  // dataset indices in `fold`
};
FoldSplit split_by_fold(const std::vector<int>& folds, int fold);

// Loader settings from the section (batch size, epoch, seed and transform are the caller's).
// The loader settings of the section; `data.workers: auto` becomes `auto_workers` (the
// caller's core::ThreadPlan, which knows the device and the processes sharing the machine).
LoaderOptions loader_options(const DataSection& data, int auto_workers);

// The number of loader threads `data.workers` asks for, `auto_workers` for auto.
int worker_count(const DataSection& data, int auto_workers);

}  // namespace pneumo::data
