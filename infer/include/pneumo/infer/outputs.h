// What `pneumo predict` leaves in its output folder:
//   submission.csv     ImageId,EncodedPixels (SIIM RLE, -1 when empty), one row per image read
//   predictions.jsonl  one JSON object per input: score, decision, area (pixels, mm^2), or error
//   masks/<id>.png     the post-processed mask at the image's own size (0/255)
//   overlays/<id>.png  the X-ray with the probability as a heat map and the mask outlined
//   explanations/<id>.png  the X-ray with the explanation map (Grad-CAM), when asked
//   refused.csv        ImageId,file,reason,detail: the inputs the input gate refused (not scored)
//   <dicom folder>/<id>.seg.dcm, <id>.sr.dcm (and <id>.sc.dcm)  for DICOM inputs, when asked: a
//                      DICOM Segmentation, a Structured Report (TID 1500) of the findings (and a
//                      Secondary Capture of the overlay) for the PACS
// Every file is written atomically; the two tables when finish() is called.
#pragma once

#include <filesystem>
#include <string>

#include <opencv2/core/mat.hpp>

#include "pneumo/data/input_gate.h"
#include "pneumo/infer/dicom_results.h"
#include "pneumo/infer/predictor.h"

namespace pneumo::infer {

// The X-ray (CV_8UC1) in colour, the probability (CV_32FC1, may be empty) blended in as a heat
// map where it exceeds 0.1, and the mask's outline in yellow.
cv::Mat draw_overlay(const cv::Mat& image, const cv::Mat& probability, const cv::Mat& mask);

// What a Structured Report states of a prediction (dicom_results.h).
ReportFindings findings_of(const Prediction& prediction, const std::string& algorithm,
                           const std::optional<Calibration>& calibration);

// A CSV field as written: quoted (quotes doubled) when it holds a comma, a quote or a newline.
std::string csv_field(const std::string& text);

struct OutputOptions {
  std::filesystem::path folder;
  bool masks = true;
  bool overlays = true;
  std::filesystem::path dicom_folder;  // empty: no DICOM results
  bool secondary_capture = false;      // also the overlay as a Secondary Capture
  std::string algorithm;               // names the model in the DICOM results
  // The ensemble's classes (Predictor::classes()): class_probabilities.csv gets one probability
  // column per class, and each predictions.jsonl line a "classes" object.
  std::vector<std::string> classes;
  std::optional<Calibration> calibration;  // the ensemble's, which the Structured Reports name
};

class PredictionWriter {
 public:
  explicit PredictionWriter(OutputOptions options);
  void add(const Prediction& prediction);
  void add_failure(const InputFile& file, const std::string& message);
  void add_refusal(const InputFile& file, const data::GateDecision& decision);
  void finish() const;

  int64_t written() const { return written_; }
  int64_t dicom_written() const { return dicom_written_; }
  int64_t positives() const { return positives_; }
  int64_t refused() const { return refused_; }

 private:
  OutputOptions options_;
  std::string submission_ = "ImageId,EncodedPixels\n";
  std::string jsonl_;
  std::string class_csv_;
  std::string refused_csv_ = "ImageId,file,reason,detail\n";
  int64_t refused_ = 0;
  int64_t written_ = 0;
  int64_t positives_ = 0;
  int64_t dicom_written_ = 0;
};

}  // namespace pneumo::infer
