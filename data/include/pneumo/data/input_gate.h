// The input quality gate: before a network answers for an image, whether the image is one the
// model was made for. predict, serve and pacs run it on every input; a refused image is listed
// with its reason and never scored. (evaluate, tune and calibrate measure the model on a curated
// labelled set and do not gate.)
//
// The rules, each switched off on its own in the experiment's `gate:` section:
//   modality        the DICOM Modality is not one of `modalities` (CR, DX), or is missing
//   lateral_view    View Position (0018,5101) names a lateral or decubitus view
//   body_part       Body Part Examined (0018,0015), where the header has one, is not a chest
//   paediatric      Patient's Age (0010,1010) is below `min_age_years`
//   too_small       the image is smaller than the model's input on either side
//   photometric     the photometric interpretation (DICOM) or PNG/JPEG kind was not among the
//                   training images' (recorded in the run's config when it trained)
//   bit_depth       the bits stored were not among the training images'
//   blank           the grey values hardly vary (standard deviation below `blank_std`)
//   saturated       most pixels sit at black or white (share above `saturated_share`)
// Header rules apply to DICOM inputs; a PNG or JPEG has no header and passes them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

#include "pneumo/core/config_schema.h"
#include "pneumo/data/dicom.h"

namespace pneumo::data {

struct DatasetIndex;

struct GateSection {
  bool enabled = true;
  std::vector<std::string> modalities{"CR", "DX"};
  bool lateral_view = true;
  std::vector<std::string> body_parts{"CHEST", "THORAX", "LUNG", "PORT CHEST"};
  double min_age_years = 18;
  bool too_small = true;
  std::vector<std::string> photometric;  // the training images' kinds; empty: not checked
  std::vector<int> bits_stored;          // the training images' bits stored; empty: not checked
  double blank_std = 4.0;
  double saturated_share = 0.75;

  template <class V>
  void visit(V& v) {
    v("enabled", enabled, "run the gate at all (predict, serve, pacs); false scores every readable image");
    v("modalities", modalities, "DICOM Modality values accepted; a DICOM without one is refused; [] switches the rule off");
    v("lateral_view", lateral_view, "refuse lateral and decubitus views (View Position LL, RL, LLD, RLD, LATERAL)");
    v("body_parts", body_parts,
      "Body Part Examined values accepted where the header has one (case-insensitive); [] switches the rule off");
    v("min_age_years", min_age_years, "refuse patients younger than this (Patient's Age); 0 switches the rule off",
      core::in_range(0.0, 150.0));
    v("too_small", too_small, "refuse images smaller than the model's input (data.size) on either side");
    v("photometric", photometric,
      "photometric interpretations (or PNG grey/colour, JPEG) accepted: the training images' ones, recorded when the "
      "run trained; [] switches the rule off");
    v("bits_stored", bits_stored,
      "bits stored accepted: the training images', recorded when the run trained; [] switches the rule off");
    v("blank_std", blank_std, "refuse images whose grey values (0..255) vary less than this standard deviation; 0: off",
      core::in_range(0.0, 128.0));
    v("saturated_share", saturated_share,
      "refuse images with more than this share of pixels at black (0) or white (255); 1: off", core::in_range(0.0, 1.0));
  }
};

// What the gate knows of an input besides its pixels.
struct InputFacts {
  std::string photometric;  // DICOM Photometric Interpretation; "PNG grey", "PNG colour" or "JPEG"
  int bits_stored = 8;
  std::optional<DicomMetadata> dicom;  // the header of a DICOM input
};

// The facts of a PNG or JPEG from its bytes (the header only). Throws DataError naming `name`.
InputFacts encoded_image_facts(std::string_view bytes, const std::string& name);
// The facts of an image file from its header alone (DICOM, PNG; a JPEG is "JPEG", 8 bits).
// Throws DataError naming the file.
InputFacts read_input_facts(const std::filesystem::path& file);

struct GateDecision {
  bool accepted = true;
  std::string reason;  // the rule's code (above) when refused
  std::string detail;  // what the image had, e.g. "View Position LL"

  // "accepted" or "refused: lateral_view (View Position LL)".
  std::string str() const;
};

// `model_input` is the largest input side of the models (data.size).
GateDecision check_input(const GateSection& gate, const InputFacts& facts, const cv::Mat& grey, int model_input);

// Patient's Age in years: "045Y", "006M", "010W", "003D", and bare digits as years (as the SIIM
// files have it); nullopt when the value is empty or not an age.
std::optional<double> age_in_years(const std::string& age);

// Fills the gate's empty `photometric` and `bits_stored` from the headers of the index's images
// `images` (read on `threads` threads): what the model was trained on. Throws DataError naming
// a file whose header cannot be read.
void record_training_inputs(GateSection& gate, const DatasetIndex& index, const std::vector<int64_t>& images,
                            int threads);

}  // namespace pneumo::data
