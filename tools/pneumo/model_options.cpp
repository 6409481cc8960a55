#include "model_options.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "pneumo/core/error.h"

namespace pneumo::tools {

infer::ModelSelection ModelOptions::selection() const {
  if (!weights.empty() && weights.size() != models.size())
    throw core::UsageError(fmt::format("{} --weight value(s) for {} --model(s); give one weight per model or none",
                                       weights.size(), models.size()));
  infer::ModelSelection s;
  for (size_t i = 0; i < models.size(); ++i) s.models.push_back({models[i], weights.empty() ? 1.0 : weights[i]});
  s.members = members;
  s.overrides = overrides;
  s.postprocess = postprocess;
  s.calibration = calibration;
  s.no_calibration = no_calibration;
  s.no_gate = no_gate;
  return s;
}

void add_model_options(CLI::App& cmd, ModelOptions& o, bool with_postprocess) {
  cmd.add_option("--model", o.models, "a checkpoint, a run folder or a file from pneumo export (repeat for an ensemble)")
      ->required()
      ->allow_extra_args(false);
  cmd.add_option("--weight", o.weights, "ensemble weight of each --model, in order (default: equal)")
      ->allow_extra_args(false)
      ->check(CLI::PositiveNumber);
  cmd.add_option("--members", o.members, "what a run folder contributes: best, last, swa, ema, snapshots or top")
      ->check(CLI::IsMember(infer::run_member_choices()));
  cmd.add_option("--set", o.overrides, "override the checkpoints' config: key.path=value (e.g. data.size=512)");
  if (!with_postprocess) return;
  cmd.add_option("--postprocess", o.postprocess.file, "a postprocess.yaml (default: the run's own, from pneumo tune)");
  cmd.add_option("--threshold", o.postprocess.threshold, "bottom threshold: pixels above it form the mask")->check(CLI::Range(0.0, 1.0));
  cmd.add_option("--top-threshold", o.postprocess.top_threshold, "pixels above it count towards --min-area")
      ->check(CLI::Range(0.0, 1.0));
  cmd.add_option("--min-area", o.postprocess.min_area, "pixels above --top-threshold needed for a positive image")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--min-component-area", o.postprocess.min_component_area, "drop mask components smaller than this")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("--classifier-threshold", o.postprocess.classifier_threshold, "gate: image probability needed for a mask")
      ->check(CLI::Range(0.0, 1.0));
  cmd.add_option("--calibration", o.calibration,
                 "a calibration.yaml for the reported probability (default: the run's own, from pneumo calibrate)");
  cmd.add_flag("--no-calibration", o.no_calibration, "report the raw score only, even when the run has a calibration");
}

void add_gate_option(CLI::App& cmd, ModelOptions& o) {
  cmd.add_flag("--no-gate", o.no_gate,
               "switch the input gate off: score every readable image, also those the model was not made for (the "
               "config's gate: section switches single rules)");
}

}  // namespace pneumo::tools
