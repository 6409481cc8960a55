// The embedded demo data: synthetic chest radiographs written as real JPEG Baseline DICOM
// files with a SIIM-style label file, so every part of pneumo runs without patient data.
//
// Each image has a body outline, two lung fields with vessel markings, mediastinum and spine,
// ribs, clavicles and soft-tissue noise. On a share of images one lung is partly collapsed:
// the lung shrinks away from the chest wall (laterally) or from the apex, leaving a region
// with no lung markings bounded by a thin bright pleural line: that region is the mask.
// Everything derives from (seed, image index), so a set is reproducible byte for byte.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

namespace pneumo::data {

struct DemoSetOptions {
  int count = 200;                 // images
  int size = 256;                  // rows = columns
  uint64_t seed = 7;
  double positive_fraction = 0.5;  // share of images with a pneumothorax
  int jpeg_quality = 95;
  int images_per_patient = 1;  // consecutive images share a PatientID
  bool png = false;            // also the PNG layout: png/<ImageId>.png and masks/<ImageId>.png
};

struct DemoRadiograph {
  cv::Mat image;  // [size, size] CV_8UC1
  cv::Mat mask;   // [size, size] CV_8UC1, 255 on the pneumothorax
};

// One synthetic radiograph; `index` selects the random stream.
DemoRadiograph render_demo_radiograph(const DemoSetOptions& options, int index);

struct DemoSetSummary {
  int images = 0;
  int positives = 0;
  std::filesystem::path dicom_dir;
  std::filesystem::path labels_csv;
  std::filesystem::path png_dir, masks_dir;  // with `png`
  std::filesystem::path classes_csv;
};

// The demo's image-level classes, from an image's mask: Pneumothorax (any mask pixel), Large
// (mask area >= 7% of the image, about the median; -1, uncertain, within 5% of that) and Right (on the patient's
// right: the mask's centroid in the image's left half; blank, not mentioned, for negatives).
const std::vector<std::string>& demo_classes();

// Writes <out>/dicom/<ImageId>.dcm (JPEG Baseline, MONOCHROME2, Secondary Capture) and
// <out>/train-rle.csv (`ImageId,EncodedPixels`, -1 for negatives); with `png` also
// <out>/png/<ImageId>.png (the DICOM's decoded pixels, so both layouts hold the same image) and
// <out>/masks/<ImageId>.png (0/255, empty for negatives) and <out>/patients.csv
// (ImageId,PatientID, as the DICOMs' PatientID); and <out>/classes.csv, a generic image-level
// table (id,patient,Pneumothorax,Large,Right; see demo_classes). Files are written atomically;
// existing files of the same names are replaced. Throws on bad options or I/O.
DemoSetSummary write_demo_set(const std::filesystem::path& out, const DemoSetOptions& options);

}  // namespace pneumo::data
