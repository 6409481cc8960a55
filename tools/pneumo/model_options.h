// The options every command that runs models shares: which checkpoints (and their weights),
// config overrides, and post-processing overrides.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "pneumo/infer/ensemble.h"
#include "pneumo/infer/predict.h"

namespace CLI {
class App;
}

namespace pneumo::tools {

struct ModelOptions {
  std::vector<std::string> models;
  std::vector<double> weights;
  std::string members = "best";
  std::vector<std::string> overrides;
  std::string postprocess_file;
  std::optional<double> threshold, top_threshold, classifier_threshold;
  std::optional<int64_t> min_area, min_component_area;

  // Throws UsageError when --weight is given but not once per --model.
  std::vector<infer::ModelSpec> specs() const;
  infer::PostprocessOverrides postprocess_overrides() const;
  // All of it (hflip and device stay at their defaults, for the command to set).
  infer::EnsembleOptions ensemble() const;
};

// `with_postprocess`: also the threshold and area options.
void add_model_options(CLI::App& cmd, ModelOptions& options, bool with_postprocess = true);

}  // namespace pneumo::tools
