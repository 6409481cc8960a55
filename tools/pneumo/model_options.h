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
  infer::PostprocessOverrides postprocess;  // the flags write into it directly
  std::string calibration;
  bool no_calibration = false;
  bool no_gate = false;

  // The models as the library takes them (each --model with its --weight). Throws UsageError
  // when --weight is given but not once per --model.
  infer::ModelSelection selection() const;
};

// `with_postprocess`: also the threshold, area and calibration options.
void add_model_options(CLI::App& cmd, ModelOptions& options, bool with_postprocess = true);
// --no-gate, for the commands that answer for images (predict, serve, pacs).
void add_gate_option(CLI::App& cmd, ModelOptions& options);

}  // namespace pneumo::tools
