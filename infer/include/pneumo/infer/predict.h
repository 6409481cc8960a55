// `pneumo predict`: models + inputs -> submission, masks, overlays and a JSON line per image.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pneumo/infer/calibration.h"
#include "pneumo/infer/ensemble.h"
#include "pneumo/infer/postprocess.h"
#include "pneumo/infer/predictor.h"

namespace pneumo::infer {

// Post-processing settings given on the command line, each replacing the one found.
struct PostprocessOverrides {
  std::filesystem::path file;  // a postprocess.yaml to use instead of the run's own
  std::optional<double> threshold, top_threshold, classifier_threshold;
  std::optional<int64_t> min_area, min_component_area;
};

// The ensemble's post-processing: train.threshold of the first member for both thresholds
// and the gate, then the postprocess.yaml of the first member's --model (postprocess_folder_of:
// its run folder, where `pneumo tune` leaves it, or the CV folder `pneumo cv` tuned), then
// `overrides.file`, then each single override.
PostprocessSection resolve_postprocess(const std::vector<Member>& members, const PostprocessOverrides& overrides);

// Which models, as every command that runs or exports an ensemble takes them. The option
// structs below extend it rather than copy it, so a setting added here reaches them all.
struct ModelSelection {
  std::vector<ModelSpec> models;
  std::string members = "best";
  std::vector<std::string> overrides;  // key=value on the checkpoints' configs
  PostprocessOverrides postprocess;
  std::filesystem::path calibration;  // a calibration.yaml to use instead of the run's own
  bool no_calibration = false;        // report raw scores only
  bool no_gate = false;               // score every readable input (switches the input gate off)
};

// The ensemble's calibration (see calibration.h): `selection.calibration` when given, else the
// one an exported file states, else the calibration.yaml of the first member's --model folder
// (postprocess_folder_of), else none; none at all with no_calibration.
std::optional<Calibration> resolve_calibration(const std::vector<Member>& members, const ModelSelection& selection);

// The models and how to run them.
struct EnsembleOptions : ModelSelection {
  bool hflip = false;
  std::string device = "auto";
  bool cuda_graphs = false;  // PredictorOptions::cuda_graphs
  std::string precision = "float32";  // PredictorOptions::precision
};

// Loads the members on the device and resolves their post-processing (resolve_postprocess).
Predictor load_predictor(const EnsembleOptions& options);

// How DICOM results and logs name the models: "pneumo 0.1.0 unet/resnet34+densenet121/...".
std::string algorithm_name(const Predictor& predictor);

struct PredictOptions : EnsembleOptions {
  std::vector<std::filesystem::path> inputs;
  std::filesystem::path labels, images;  // or a label table and its image folder
  std::filesystem::path out;
  bool masks = true, overlays = true;
  std::filesystem::path dicom_out;  // DICOM Segmentations of DICOM inputs go here (empty: none)
  bool dicom_overlay = false;       // and Secondary Captures of the overlays
  int batch_size = 0, workers = 2;  // batch 0: default_batch_size (predictor.h)
  std::optional<ExplainOptions> explain;  // explanations/<id>.png
};

struct PredictSummary {
  int64_t images = 0, positives = 0, dicom_results = 0;
  std::vector<std::pair<std::string, std::string>> failures;  // file, message
  std::vector<std::pair<std::string, data::GateDecision>> refused;  // file (or id), the gate's decision
  PostprocessSection postprocess;
};

// Throws for problems that stop everything (no inputs, a bad model, an unwritable output
// folder); files that cannot be read are listed in the summary instead.
PredictSummary predict(const PredictOptions& options);

}  // namespace pneumo::infer
