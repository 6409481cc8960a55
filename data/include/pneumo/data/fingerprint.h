// A dataset's fingerprint: what `pneumo plan` proposes an experiment from.
//
// One pass over the index: DICOM headers (nothing decoded), PNG headers (IHDR), JPEGs decoded
// (their header gives no more than the decode), the positive images' masks at native size (the
// area of each pneumothorax as a share of its image), and the preprocessed pixels of an evenly
// spaced sample of images (intensity statistics, as training sees them before normalisation).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "pneumo/data/dataset.h"

namespace pneumo::data {

// Order statistics of a sample (linear interpolation between ranks, as numpy's default).
struct Quantiles {
  int64_t count = 0;
  double min = 0, p5 = 0, p10 = 0, p25 = 0, p50 = 0, p75 = 0, p95 = 0, max = 0;
};
Quantiles quantiles_of(std::vector<double> values);

struct DatasetFingerprint {
  int64_t images = 0;
  int64_t positives = 0;
  // Counts per value: "1024x1024", bits stored ("8", "16"), photometric interpretation
  // (DICOMs; "PNG"/"JPEG" for the others), file format ("DICOM", "PNG", "JPEG").
  std::map<std::string, int64_t> sizes, bits_stored, photometric, formats;
  Quantiles short_side;     // min(rows, columns) in native pixels, every image
  Quantiles spacing_mm;     // pixel spacing (row), images whose header gives one
  Quantiles area_fraction;  // per positive image: mask pixels / image pixels at native size
  // Preprocessed pixels (0..1, at data.size, after the window, before mean/std) of the sample.
  int64_t intensity_images = 0;
  double intensity_mean = 0, intensity_std = 0;
  Quantiles intensity;  // of the pixel values (from a 256-bin histogram of the sample)
  // Patients (from the index, or the DICOM PatientID): 0 when unknown (PNG/JPEG without
  // data.patients).
  int64_t patients = 0;
  int64_t patients_with_several_images = 0;
  int64_t most_images_per_patient = 0;

  double positive_share() const { return images == 0 ? 0.0 : static_cast<double>(positives) / images; }
};

struct FingerprintOptions {
  int intensity_images = 200;  // evenly spaced over the index (all when fewer)
  int threads = 1;
};

// Reads every image's header and every positive image's mask once. Throws DataError naming
// the file (or label row) that cannot be read.
DatasetFingerprint fingerprint_dataset(const Dataset& dataset, const FingerprintOptions& options = {});

// The fingerprint as lines of text ("images: 120, 30 positive (25.0%)" ...), for the terminal
// and for the comment block at the head of a plan.
std::vector<std::string> describe(const DatasetFingerprint& fingerprint);

}  // namespace pneumo::data
