// The ensemble predictor: preprocesses each image as every member was trained, runs the
// members (with horizontal-flip test-time augmentation when asked), averages their
// probabilities with the members' weights, and post-processes at the image's own resolution.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <opencv2/core/mat.hpp>

#include "pneumo/data/preprocess.h"
#include "pneumo/infer/calibration.h"
#include "pneumo/infer/ensemble.h"
#include "pneumo/infer/explain.h"
#include "pneumo/infer/inputs.h"
#include "pneumo/infer/postprocess.h"

namespace pneumo::infer {

class CudaGraphCache;

struct PredictorOptions {
  bool hflip = false;  // average with the prediction on the mirrored image
  // NHWC weights and inputs: the same values, about 1.3x faster convolutions on the CPU
  // (measured by bench_infer) and the layout tensor cores want on the GPU.
  bool channels_last = true;
  // CUDA: replay each member's forward pass as a CUDA graph captured per batch shape (one
  // launch instead of one per kernel; the first batch of each shape is slower). Ignored on the
  // CPU, with a notice.
  bool cuda_graphs = false;
  // The input gate (data/input_gate.h) as the first member's config says; false switches it off.
  bool gate = true;
  // The networks' arithmetic: "float32", or "bfloat16": autocast (convolutions and matrix
  // products in bfloat16, normalisations and reductions in float32), fast where the CPU has
  // AVX512-BF16 or AMX, and on GPUs; elsewhere LibTorch emulates it (slower, with a warning).
  std::string precision = "float32";
};

// Seconds the batch an image was in spent in the models and in post-processing.
struct PredictionTiming {
  double model_s = 0, postprocess_s = 0;
};

struct Prediction {
  InputImage input;
  cv::Mat probability;  // CV_32FC1 at the native size; empty when no member segments
  // The same before resizing: CV_32FC1 at the largest segmenter input size, where the members'
  // probabilities are averaged (what pneumo cv stores as out-of-fold predictions).
  cv::Mat input_size_probability;
  std::optional<double> image_probability;  // classifiers', else auxiliary heads' average
  std::vector<double> class_probabilities;   // per class of Predictor::classes() (class-table classifiers)
  cv::Mat mask;         // CV_8UC1 at the native size, 255 inside (post-processed)
  bool positive = false;
  data::GateDecision gate;  // accepted (refused inputs are not predicted)
  cv::Mat explanation;      // CV_32FC1 0..1 at the native size, when asked for (Predictor::explain)
  PredictionTiming timing;
  std::optional<double> calibrated;  // score() calibrated, when the ensemble has a calibration

  // The image-level score reported: image_probability, else the most confident pixel.
  double score() const;
  // The probability to report: calibrated when available, else score().
  double reported_probability() const { return calibrated ? *calibrated : score(); }
  int64_t area_pixels() const;
  std::optional<double> area_mm2() const;  // when the DICOM gives the pixel spacing
};

// One input with the resized copies the members need (built on loader threads).
struct PreparedInput {
  InputImage input;
  std::vector<cv::Mat> resized;  // one per distinct (size, interpolation) among the members
};

class EnsembleSums;

class Predictor {
 public:
  Predictor(std::vector<Member> members, PostprocessSection postprocess, PredictorOptions options,
            c10::Device device, std::optional<Calibration> calibration = std::nullopt);

  // Thread-safe.
  PreparedInput prepare(InputImage input) const;
  // The input gate's decision for an image (thread-safe); accepted when the gate is off.
  data::GateDecision check_gate(const InputImage& input) const;
  const data::GateSection& gate() const { return gate_; }
  // Runs every member on the batch and post-processes each image.
  std::vector<Prediction> predict(std::vector<PreparedInput> batch) const;
  // The explanation map of one image (explain.h): CV_32FC1, 0..1, at the image's own size;
  // empty when no member can be explained (exported files only). Throws UsageError when the
  // stage is deeper than a member's encoder.
  cv::Mat explain(const InputImage& input, const ExplainOptions& options) const;

  const std::vector<Member>& members() const { return members_; }
  const PostprocessSection& postprocess() const { return postprocess_; }
  const std::optional<Calibration>& calibration() const { return calibration_; }
  // The DICOM grey mapping every member shares ("none" or "file").
  const std::string& window() const { return members_.front().config.data.window; }
  bool has_segmenter() const { return segment_size_ > 0; }
  // The classes the ensemble's class-table classifiers predict (empty without one).
  const std::vector<std::string>& classes() const { return classes_; }
  const c10::Device& device() const { return device_; }

 private:
  // Adds member k's answers for the batch's resized images to the ensemble's sums.
  void add_exported_member(size_t k, const std::vector<cv::Mat>& images, EnsembleSums& sums) const;
  void add_network_member(size_t k, const std::vector<cv::Mat>& images, EnsembleSums& sums) const;

  std::vector<Member> members_;
  PostprocessSection postprocess_;
  PredictorOptions options_;
  std::optional<Calibration> calibration_;
  c10::Device device_;
  std::vector<data::Preprocessor> resizers_;  // distinct (size, interpolation)
  std::vector<size_t> resizer_of_;             // per member
  int segment_size_ = 0;                       // the largest segmenter input: probabilities average there
  int input_size_ = 0;                         // the largest input of any member
  data::GateSection gate_;
  std::vector<std::string> classes_;
  std::vector<std::shared_ptr<CudaGraphCache>> graphs_;  // per member, with cuda_graphs on a GPU
};

}  // namespace pneumo::infer

namespace pneumo::infer {

// The batch run_predictor uses when none is given. On a GPU, 8. On the CPU, as many images as
// make about a million input pixels, at most 8 (8 at 256x256 and below, 4 at 512, 1 at 1024):
// bench_infer on 2 cores (2026-12-04, U-Net/ResNet34) ran batches of 4 at 1.27x the images/s of
// one at a time at 256 px and 1.12x at 512, and the demo's predict (3 members at 128 px) ran
// batches of 8 at 1.38x; larger batches add memory, not speed.
int64_t default_batch_size(const Predictor& predictor);

struct RunOptions {
  int batch_size = 0;  // 0: default_batch_size
  int workers = 2;   // threads reading and resizing inputs ahead of the models
  int prefetch = 4;  // batches read ahead
  std::string progress_label = "predict";
  bool gate = false;  // check every input with the predictor's gate before it is scored
};

// Reads `inputs` on worker threads, predicts them in batches and hands each prediction to
// `on_prediction` in input order. A file that cannot be read goes to `on_failure` (id, file,
// message) and the others carry on; with `options.gate`, an input the gate refuses goes to
// `on_refused` (in input order too) and is not scored.
void run_predictor(const Predictor& predictor, const std::vector<InputFile>& inputs, const RunOptions& options,
                   const std::function<void(Prediction&)>& on_prediction,
                   const std::function<void(const InputFile&, const std::string&)>& on_failure,
                   const std::function<void(const InputImage&, const data::GateDecision&)>& on_refused = {});

}  // namespace pneumo::infer
