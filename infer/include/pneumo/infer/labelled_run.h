// What evaluate and tune share: an ensemble run over labelled images, each prediction handed
// over with its truth: the mask at the image's own size, or an image-level table's class targets.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "pneumo/infer/ensemble.h"
#include "pneumo/infer/predict.h"
#include "pneumo/infer/predictor.h"

namespace pneumo::infer {

struct LabelledRunOptions : EnsembleOptions {
  std::filesystem::path labels, images;  // empty: the first model's run validation fold
  std::filesystem::path masks;              // or a mask folder (mask_folder_set) with images
  std::filesystem::path table, split_list;  // or an image-level class table (class_set) with images
  int batch_size = 0, workers = 2;  // batch 0: default_batch_size (predictor.h)
};

// One image's ground truth: its mask at the image's own size (empty for a class table), and
// for a class table its targets per class (1, 0 or NaN: ignored).
struct LabelledTruth {
  cv::Mat mask;
  const std::vector<float>* targets = nullptr;
};

struct LabelledRunSummary {
  std::string set;  // what was run on
  std::vector<std::string> classes;  // a class table's classes (the truth's target order); else empty
  int64_t images = 0;
  PostprocessSection postprocess;
  std::optional<Calibration> calibration;  // the ensemble's, when it has one
  std::vector<std::pair<std::string, std::string>> failures;  // file, message
};

// Loads the ensemble, runs it over the labelled set and calls `on_prediction` per image in
// order. `verb` names the job in messages ("evaluate", "tune"); `needs_segmenter` refuses an
// ensemble without one. Throws DataError when the set is empty or no image could be read.
LabelledRunSummary run_labelled(const LabelledRunOptions& options, const std::string& verb, bool needs_segmenter,
                                const std::function<void(Prediction&, const LabelledTruth& truth)>& on_prediction);

}  // namespace pneumo::infer
