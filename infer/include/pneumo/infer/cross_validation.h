// What `pneumo cv` leaves and reads back: the cross-validation run folder, out-of-fold (OOF)
// predictions, post-processing tuned on them, and the report.
//
// runs/<name>/<run>/
//   experiment.yaml   the resolved experiment every fold trains (data.fold set per fold)
//   ensemble.json     the manifest: format "pneumo-cv", the folds, the members each fold gives
//                     (best, swa, snapshots, ...) and whether OOF used flip TTA. It makes the
//                     folder one --model for predict, evaluate, tune, export, serve and pacs.
//   fold-K/           an ordinary run folder per fold; finished.json once its training ended
//   workers/worker-I.log  with `pneumo cv --parallel-folds`: the output of fold worker I
//   oof/fold-K/<ImageId>.png  the fold's OOF probability maps: 8-bit (round(p * 255)) at the
//                     ensemble's segmentation input size (data.size), the size the members'
//                     probabilities are averaged at; resized to the image's own size with
//                     bilinear interpolation, as predict does, they give the native map
//   oof/fold-K.csv    one row per validation image of fold K: ImageId, height, width, score
//                     (image-level, as predict reports it), gate (the image probability of a
//                     classifier or auxiliary head; empty without one), truth (the mask at the
//                     image's own size, SIIM RLE, -1 when empty). Written last, atomically: a
//                     fold's OOF is complete exactly when its CSV exists.
//   postprocess.yaml  tuned on all OOF predictions together; predict & co. use it for the folder
//   cv.json, cv.md    per fold and overall Dice, IoU, AUC (mean and standard deviation across
//                     folds), the tuned parameters, OOF Dice before and after tuning
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "pneumo/infer/postprocess.h"

namespace pneumo::infer {

struct CvManifest {
  std::vector<int> folds;        // the folds trained, in order
  std::string members = "best";  // which checkpoints of each fold join (run_member_choices)
  bool hflip = false;            // OOF predictions averaged with the mirrored image
};

// Whether `folder` is a cross-validation run: an ensemble.json without a config.yaml beside it
// (a training run's ensemble.json, its snapshot cycles, sits next to its config.yaml).
bool is_cv_folder(const std::filesystem::path& folder);
// Throws UsageError when ensemble.json is missing, DataError naming the file when it is not
// JSON or lacks what pneumo cv writes.
CvManifest read_cv_manifest(const std::filesystem::path& top);
void write_cv_manifest(const std::filesystem::path& top, const CvManifest& manifest);
std::filesystem::path fold_folder(const std::filesystem::path& top, int fold);

// How a fold's training ended (fold-K/finished.json, written when train_experiment returned).
struct FoldTraining {
  int epochs = 0;
  std::string monitor;
  double best_value = 0;
  int best_epoch = 0;
  bool stopped_early = false;
};
void write_fold_finished(const std::filesystem::path& top, int fold, const FoldTraining& training);
std::optional<FoldTraining> read_fold_finished(const std::filesystem::path& top, int fold);

// One validation image of a fold, as oof/fold-K.csv holds it.
struct OofImage {
  std::string id;
  int height = 0, width = 0;
  double score = 0;
  std::optional<double> gate;
  std::string truth;  // SIIM RLE at height x width, "-1" when empty
};

struct OofOptions {
  std::string device = "auto";
  int batch_size = 0, workers = 2;
};

// Predicts fold K's validation images (fold-K/folds.csv) with that fold's members only, and
// writes oof/fold-K/ and then oof/fold-K.csv. An image that cannot be read stops it (DataError
// naming the file): OOF predictions must cover the whole fold. Returns the images predicted.
int64_t predict_out_of_fold(const std::filesystem::path& top, int fold, const CvManifest& manifest,
                            const OofOptions& options);
bool has_out_of_fold(const std::filesystem::path& top, int fold);
// Throws DataError naming the file and row for a malformed CSV or a missing or mis-sized map.
std::vector<OofImage> read_out_of_fold(const std::filesystem::path& top, int fold);
// The image's OOF probability map at its own size (CV_32FC1), empty when the fold's ensemble
// does not segment.
cv::Mat read_out_of_fold_map(const std::filesystem::path& top, int fold, const OofImage& image);

// Scores of one fold's OOF predictions, or of all folds pooled.
struct CvScores {
  int64_t images = 0, positives = 0;
  double dice_start = 0, dice = 0, iou = 0;  // mean Kaggle Dice with the starting and the tuned settings; IoU tuned
  double auc = 0;                            // image-level (score against a non-empty truth); NaN with one class
};

struct CvReport {
  std::vector<int> folds;
  std::vector<CvScores> per_fold;
  CvScores overall;  // every OOF image pooled
  bool segments = false;  // false: classifiers only, nothing tuned, Dice and IoU left out
  PostprocessSection start, tuned;
  std::vector<FoldTraining> training;  // per fold
};

// Reads every fold's OOF predictions (nothing else: neither images nor networks), tunes the
// post-processing on all of them together as `pneumo tune` does, starting from `start`, and
// scores each fold and the pool before and after. Writes postprocess.yaml when the folds segment.
CvReport tune_out_of_fold(const std::filesystem::path& top, const CvManifest& manifest, const PostprocessSection& start);

// cv.json and cv.md (atomically). Returns cv.md's text.
std::string write_cv_report(const std::filesystem::path& top, const CvReport& report);

}  // namespace pneumo::infer
