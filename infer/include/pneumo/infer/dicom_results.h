// Results as DICOM objects a PACS stores and a viewer shows beside the X-ray they belong to:
//   - a DICOM Segmentation (DCMTK's dcmseg): binary, one segment "Pneumothorax" (SNOMED CT
//     36118008), automatic, the source's patient and study, referencing the source image in
//     its Derivation Image and Common Instance Reference modules;
//   - a Secondary Capture with the overlay (heat map and outline) burned in, for viewers that
//     do not show segmentations;
//   - a Structured Report of the findings (DCMTK's dcmsr/cmr; Enhanced SR, the SOP class its
//     content needs): a TID 1500 Measurement Report whose image library holds the source image
//     and whose one TID 1411 measurement group (tracking id "Pneumothorax", finding SNOMED CT
//     36118008) references the SEG's segment and the source series and measures the segmented
//     area in mm^2 (SNOMED CT 42798000 "Area", when the source gives a pixel spacing) and the
//     image-level probability (DCM 122157 "Probability", UCUM "1"), each with the algorithm's
//     name and version (TID 4019); the report's qualitative evaluations say Pneumothorax Present
//     or Absent (SNOMED CT 52101004 / 2667000) and the Calibration Method (DCM 122422) of the
//     probability. The source image and the SEG are listed as its evidence.
// All pass David Clunie's dciodvfy (dicom3tools) without errors; the README lists the warnings
// that stay.
// Each result series gets a UID derived from the source series' (all results for one series
// land in one series), each instance a fresh UID.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <opencv2/core/mat.hpp>

namespace pneumo::infer {

struct DicomResult {
  std::string bytes;  // a DICOM Part 10 file
  std::string sop_instance_uid;
};

// `source`: the source DICOM file's bytes (`name` names it in errors); `mask`: CV_8UC1 of the
// source's size, nonzero inside. `algorithm`: e.g. "pneumo 0.1.0 unet/resnet34". The result's
// SOP Instance UID is `instance_uid`, or a fresh one when empty. Throws DataError when the
// source is not a readable DICOM image or the mask does not fit it.
DicomResult make_segmentation(std::string_view source, const std::string& name, const cv::Mat& mask,
                              const std::string& algorithm, const std::string& instance_uid = "");

// `overlay`: CV_8UC3 (BGR) of the source's size, e.g. draw_overlay()'s.
DicomResult make_secondary_capture(std::string_view source, const std::string& name, const cv::Mat& overlay,
                                   const std::string& algorithm, const std::string& instance_uid = "");

// What a Structured Report states of one image.
struct ReportFindings {
  bool positive = false;
  double probability = 0;   // the image-level probability reported
  std::string calibration;  // how it was calibrated (Calibration::describe()); empty: the raw score
  int64_t area_pixels = 0;
  std::optional<double> area_mm2;  // when the source gives a pixel spacing
  std::string algorithm;           // names the models, e.g. "pneumo 0.1.0 unet/resnet34"
};

// `segmentation`: the SEG written for the same source (make_segmentation's bytes), whose segment
// 1 the report references.
DicomResult make_structured_report(std::string_view source, const std::string& name, const ReportFindings& findings,
                                   std::string_view segmentation, const std::string& instance_uid = "");

// A UID made from `source` and `kind`: "2.25." and a 128-bit hash of both, the same every
// time (e.g. one result series per source series, one result per source and model).
std::string derived_uid(std::string_view source, std::string_view kind);

}  // namespace pneumo::infer
