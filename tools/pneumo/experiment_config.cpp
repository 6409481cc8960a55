#include "experiment_config.h"

#include "pneumo/core/config_schema.h"

namespace pneumo::tools {

ExperimentConfig load_experiment(const std::string& file,
                                 const std::vector<std::string>& overrides) {
  const core::ConfigNode root = core::load_config(file, overrides);
  ExperimentConfig config = core::read_section<ExperimentConfig>(root);
  // Building the pipelines checks every op and parameter now, not at the first batch.
  config.augment.train_pipeline();
  config.augment.validation_pipeline();
  return config;
}

std::string experiment_to_yaml(const ExperimentConfig& config, bool docs) {
  return core::to_yaml(core::write_section(config), docs);
}

}  // namespace pneumo::tools
