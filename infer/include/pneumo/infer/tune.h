// `pneumo tune`: searches the post-processing thresholds that maximise the mean Kaggle Dice on
// a labelled set (by default the run's validation fold) and stores them as the run's
// postprocess.yaml, which predict, evaluate and export then use.
//
// The ensemble runs once; each image is summarised by histograms of its probabilities (in
// steps of 0.01) over all pixels and over truth pixels, from which the Dice of any threshold
// combination follows exactly. Searched: threshold and top_threshold over 0.05..0.95 (step
// 0.05, top >= bottom), min_area over 0 and 0.01%..0.8% of the image, and classifier_threshold
// over 0..0.9 when the ensemble has an image-level output. min_component_area needs the masks
// themselves and is set to 0.
//
// With an operating point (`tune --operating-point sensitivity=0.95`) the image-level decisions
// (a non-empty mask after post-processing) are what is chosen for: among the settings of the
// same grid, with the classifier gate at every cut between two images' gate values, those whose
// decisions reach the target on the set; of them the most specific (for a sensitivity target)
// or most sensitive (for a specificity target), then the best mean Dice.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "pneumo/infer/labelled_run.h"
#include "pneumo/infer/operating_points.h"
#include "pneumo/train/metrics.h"

namespace pneumo::infer {

// One image's summary: probability histograms and what the Dice needs.
struct ImageHistogram {
  static constexpr int kBins = 100;  // bin k holds probabilities in (k/100, (k+1)/100]
  std::vector<int64_t> above;        // above[j]: pixels with probability > j/100 (j = 0..100)
  std::vector<int64_t> truth_above;  // the same among truth pixels
  int64_t truth_area = 0;
  std::optional<double> gate;
};

// Builds the summary of a CV_32FC1 probability map against a CV_8UC1 truth mask.
ImageHistogram summarise(const cv::Mat& probability, const cv::Mat& truth, std::optional<double> gate);

// One image's Kaggle Dice and IoU under `settings` (each 1 when truth and prediction are both
// empty; thresholds must be multiples of 0.01; min_component_area is ignored).
struct ImageOverlap {
  double dice = 0, iou = 0;
};
ImageOverlap image_overlap(const ImageHistogram& image, const PostprocessSection& settings);

// The mean Kaggle Dice of `settings` over the summaries (as image_overlap).
double mean_dice(const std::vector<ImageHistogram>& images, const PostprocessSection& settings);

// The search itself: every combination of the grid above, highest mean Dice first, ties going to
// the settings nearest `start`. `median_pixels` (the images' median pixel count) scales the
// min_area grid. The start is scored on the grid the summaries resolve.
struct PostprocessSearch {
  PostprocessSection best;
  double start_dice = 0, best_dice = 0;
  std::vector<std::pair<PostprocessSection, double>> runners_up;  // the next best, best first
};
PostprocessSearch search_postprocess(const std::vector<ImageHistogram>& images, double median_pixels,
                                     const PostprocessSection& start);

// The median of the images' pixel counts, as search_postprocess wants it.
double median_pixels(std::vector<int64_t> pixel_counts);

// The image-level decisions of `settings` (positive: a non-empty mask after post-processing)
// against the truth (a non-empty truth mask): counts, sensitivity (recall) and specificity.
train::BinaryMetrics image_decisions(const std::vector<ImageHistogram>& images, const PostprocessSection& settings);

// The operating-point search (see above). Throws DataError when the set lacks a positive or a
// negative image, or no settings reach the target (saying the best that was reached).
struct OperatingPointSearch {
  PostprocessSection best;
  double dice = 0;
  train::BinaryMetrics decisions;
};
OperatingPointSearch search_operating_point(const std::vector<ImageHistogram>& images, double median_pixels,
                                            const PostprocessSection& start, const OperatingPointTarget& target);

struct TuneOptions {
  LabelledRunOptions run;     // its postprocess overrides are the starting point, reported
  std::filesystem::path out;  // empty: <run>/postprocess.yaml
  std::optional<OperatingPointTarget> operating_point;  // instead of the best Dice
};

struct TuneResult {
  std::string set;
  int64_t images = 0;
  PostprocessSection start, best;
  double start_dice = 0, best_dice = 0;
  std::vector<std::pair<PostprocessSection, double>> runners_up;  // the next best, best first (Dice search)
  train::BinaryMetrics decisions;  // the image-level decisions of `best` on the set
  std::filesystem::path written;
  std::vector<std::pair<std::string, std::string>> failures;
};

TuneResult tune(const TuneOptions& options);

}  // namespace pneumo::infer
