#include "pneumo/train/experiment.h"

#include "pneumo/core/config_schema.h"

namespace pneumo::train {

ExperimentConfig load_experiment(const std::string& file,
                                 const std::vector<std::string>& overrides) {
  const core::ConfigNode root = core::load_config(file, overrides);
  ExperimentConfig config = core::read_section<ExperimentConfig>(root);
  // Pipeline files become their lists of ops, so the resolved config stands on its own; building
  // the pipelines checks every op and parameter now, not at the first batch.
  config.augment.train = augment::inline_pipeline_file(config.augment.train);
  config.augment.validation = augment::inline_pipeline_file(config.augment.validation);
  config.augment.on_device = augment::inline_pipeline_file(config.augment.on_device);
  config.augment.train_pipeline();
  config.augment.validation_pipeline();
  config.augment.device_pipeline();
  return config;
}

std::string experiment_to_yaml(const ExperimentConfig& config, bool docs) {
  return core::to_yaml(core::write_section(config), docs);
}

}  // namespace pneumo::train
