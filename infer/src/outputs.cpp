#include "pneumo/infer/outputs.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>

#include "pneumo/core/file_io.h"
#include "pneumo/data/image_io.h"
#include "pneumo/data/rle.h"
#include "pneumo/infer/dicom_results.h"
#include "pneumo/infer/explain.h"

namespace pneumo::infer {

namespace fs = std::filesystem;

namespace {

bool is_dicom(const fs::path& file) {
  std::string extension = file.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(), [](unsigned char c) { return std::tolower(c); });
  return extension == ".dcm";
}

}  // namespace

cv::Mat draw_overlay(const cv::Mat& image, const cv::Mat& probability, const cv::Mat& mask) {
  cv::Mat out;
  cv::cvtColor(image, out, cv::COLOR_GRAY2BGR);
  if (!probability.empty()) {
    cv::Mat p8, heat;
    probability.convertTo(p8, CV_8U, 255.0);
    cv::applyColorMap(p8, heat, cv::COLORMAP_JET);
    for (int y = 0; y < out.rows; ++y) {
      cv::Vec3b* o = out.ptr<cv::Vec3b>(y);
      const cv::Vec3b* h = heat.ptr<cv::Vec3b>(y);
      const float* p = probability.ptr<float>(y);
      for (int x = 0; x < out.cols; ++x) {
        if (p[x] <= 0.1f) continue;
        const float alpha = 0.6f * p[x];
        for (int c = 0; c < 3; ++c) o[x][c] = cv::saturate_cast<uint8_t>((1 - alpha) * o[x][c] + alpha * h[x][c]);
      }
    }
  }
  if (!mask.empty() && cv::countNonZero(mask) > 0) {
    std::vector<std::vector<cv::Point>> contours;
    cv::findContours(mask.clone(), contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
    const int thickness = std::max(1, std::max(out.rows, out.cols) / 256);
    cv::drawContours(out, contours, -1, cv::Scalar(0, 255, 255), thickness, cv::LINE_AA);
  }
  return out;
}

ReportFindings findings_of(const Prediction& p, const std::string& algorithm,
                           const std::optional<Calibration>& calibration) {
  ReportFindings f;
  f.positive = p.positive;
  f.probability = p.reported_probability();
  if (p.calibrated && calibration)
    f.calibration = fmt::format("{}, fitted on {} images", calibration->describe(), calibration->images);
  f.area_pixels = p.area_pixels();
  f.area_mm2 = p.area_mm2();
  f.algorithm = algorithm;
  return f;
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

PredictionWriter::PredictionWriter(OutputOptions options) : options_(std::move(options)) {
  if (options_.classes.empty()) return;
  class_csv_ = "ImageId";
  for (const std::string& name : options_.classes) class_csv_ += "," + csv_field(name);
  class_csv_ += "\n";
}

void PredictionWriter::add(const Prediction& p) {
  const std::string& id = p.input.file.id;
  submission_ += fmt::format("{},{}\n", id, data::encode_rle(p.mask));
  if (options_.masks) data::write_png(options_.folder / "masks" / (id + ".png"), p.mask);
  if (options_.overlays)
    data::write_png(options_.folder / "overlays" / (id + ".png"), draw_overlay(p.input.pixels, p.probability, p.mask));
  if (!p.explanation.empty())
    data::write_png(options_.folder / "explanations" / (id + ".png"), draw_explanation(p.input.pixels, p.explanation));
  if (!options_.dicom_folder.empty() && is_dicom(p.input.file.path)) {
    const std::string source = core::read_text_file(p.input.file.path);
    const std::string name = p.input.file.path.string();
    fs::create_directories(options_.dicom_folder);
    // All made before any is written: a source that cannot have one gets none.
    const DicomResult segmentation = make_segmentation(source, name, p.mask, options_.algorithm);
    const DicomResult report =
        make_structured_report(source, name, findings_of(p, options_.algorithm, options_.calibration), segmentation.bytes);
    std::optional<DicomResult> capture;
    if (options_.secondary_capture)
      capture = make_secondary_capture(source, name, draw_overlay(p.input.pixels, p.probability, p.mask),
                                       options_.algorithm);
    core::write_file_atomic(options_.dicom_folder / (id + ".seg.dcm"), segmentation.bytes);
    core::write_file_atomic(options_.dicom_folder / (id + ".sr.dcm"), report.bytes);
    if (capture) core::write_file_atomic(options_.dicom_folder / (id + ".sc.dcm"), capture->bytes);
    ++dicom_written_;
  }
  nlohmann::ordered_json line;
  line["image_id"] = id;
  line["file"] = p.input.file.path.string();
  line["width"] = p.input.pixels.cols;
  line["height"] = p.input.pixels.rows;
  line["score"] = p.score();
  line["image_probability"] = p.image_probability ? nlohmann::ordered_json(*p.image_probability) : nullptr;
  line["calibrated_probability"] = p.calibrated ? nlohmann::ordered_json(*p.calibrated) : nullptr;
  line["positive"] = p.positive;
  line["gate"] = p.gate.str();
  line["area_pixels"] = p.area_pixels();
  const auto mm2 = p.area_mm2();
  line["area_mm2"] = mm2 ? nlohmann::ordered_json(*mm2) : nullptr;
  if (!options_.classes.empty()) {
    nlohmann::ordered_json classes;
    class_csv_ += csv_field(id);
    for (size_t c = 0; c < options_.classes.size(); ++c) {
      const double probability = c < p.class_probabilities.size() ? p.class_probabilities[c] : std::nan("");
      classes[options_.classes[c]] = probability;
      class_csv_ += fmt::format(",{:.6f}", probability);
    }
    class_csv_ += "\n";
    line["classes"] = classes;
  }
  jsonl_ += line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  ++written_;
  if (p.positive) ++positives_;
}

void PredictionWriter::add_failure(const InputFile& file, const std::string& message) {
  nlohmann::ordered_json line;
  line["image_id"] = file.id;
  line["file"] = file.path.string();
  line["error"] = message;
  jsonl_ += line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

void PredictionWriter::add_refusal(const InputFile& file, const data::GateDecision& decision) {
  nlohmann::ordered_json line;
  line["image_id"] = file.id;
  line["file"] = file.path.string();
  line["gate"] = decision.str();
  line["gate_reason"] = decision.reason;
  jsonl_ += line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  refused_csv_ += fmt::format("{},{},{},{}\n", csv_field(file.id), csv_field(file.path.string()), csv_field(decision.reason),
                              csv_field(decision.detail));
  ++refused_;
}

void PredictionWriter::finish() const {
  core::write_file_atomic(options_.folder / "submission.csv", submission_);
  core::write_file_atomic(options_.folder / "refused.csv", refused_csv_);
  core::write_file_atomic(options_.folder / "predictions.jsonl", jsonl_);
  if (!options_.classes.empty()) core::write_file_atomic(options_.folder / "class_probabilities.csv", class_csv_);
}

}  // namespace pneumo::infer
