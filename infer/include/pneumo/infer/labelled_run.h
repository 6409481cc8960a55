// What evaluate and tune share: an ensemble run over labelled images, each prediction handed
// over with its truth mask at the image's own size.
#pragma once

#include <filesystem>
#include <functional>
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
  int batch_size = 0, workers = 2;  // batch 0: 1 on the CPU, 8 on a GPU
};

struct LabelledRunSummary {
  std::string set;  // what was run on
  int64_t images = 0;
  PostprocessSection postprocess;
  std::vector<std::pair<std::string, std::string>> failures;  // file, message
};

// Loads the ensemble, runs it over the labelled set and calls `on_prediction` per image in
// order. `verb` names the job in messages ("evaluate", "tune"); `needs_segmenter` refuses an
// ensemble without one. Throws DataError when the set is empty or no image could be read.
LabelledRunSummary run_labelled(const LabelledRunOptions& options, const std::string& verb, bool needs_segmenter,
                                const std::function<void(Prediction&, const cv::Mat& truth)>& on_prediction);

}  // namespace pneumo::infer
