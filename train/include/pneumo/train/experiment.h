// The whole experiment file: one typed section per component that has configuration.
// Sections join this list as their components land.
#pragma once

#include <string>
#include <vector>

#include "pneumo/augment/augment_section.h"
#include "pneumo/core/config_node.h"
#include "pneumo/core/sections.h"
#include "pneumo/data/data_section.h"
#include "pneumo/data/input_gate.h"
#include "pneumo/models/model_section.h"
#include "pneumo/train/train_section.h"

namespace pneumo::train {

struct ExperimentConfig {
  core::ExperimentSection experiment;
  core::RuntimeSection runtime;
  data::DataSection data;
  augment::AugmentSection augment;
  models::ModelSection model;
  TrainSection train;
  data::GateSection gate;

  template <class V>
  void visit(V& v) {
    v("experiment", experiment, "name, output folder and seed");
    v("runtime", runtime, "device, threads, determinism, logging");
    v("data", data, "labels, images, size, folds, sampling, cache and loader threads");
    v("augment", augment, "training and validation augmentation pipelines");
    v("model", model, "the network, its encoder and weights");
    v("train", train, "epochs, batch size, optimiser, schedule, loss, checkpoint choice");
    v("gate", gate, "the input quality gate predict, serve and pacs run before the model answers for an image");
  }
};

// Loads FILE (with its `base:` chain), applies `--set` overrides and validates every section.
// Throws ConfigError naming file:line:column, the key path and what is allowed.
ExperimentConfig load_experiment(const std::string& file,
                                 const std::vector<std::string>& overrides);

// The resolved config (defaults filled in) as YAML; with `docs`, each key's meaning as a comment.
std::string experiment_to_yaml(const ExperimentConfig& config, bool docs = false);

}  // namespace pneumo::train
