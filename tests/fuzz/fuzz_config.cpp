// Experiment files: YAML parsing, every section's schema, overrides, and writing back.
#include <cstdint>
#include <string>

#include "pneumo/core/config_node.h"
#include "pneumo/core/config_schema.h"
#include "pneumo/core/error.h"
#include "pneumo/train/experiment.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    pneumo::core::ConfigNode root = pneumo::core::parse_yaml(text, "fuzz.yaml");
    const auto config = pneumo::core::read_section<pneumo::train::ExperimentConfig>(root);
    // What pneumo writes it must read back.
    const std::string yaml = pneumo::train::experiment_to_yaml(config);
    pneumo::core::read_section<pneumo::train::ExperimentConfig>(pneumo::core::parse_yaml(yaml, "written.yaml"));
  } catch (const pneumo::core::Error&) {
  }
  try {  // the input as a --set override
    pneumo::core::ConfigNode root = pneumo::core::ConfigNode::map();
    pneumo::core::apply_override(root, text);
  } catch (const pneumo::core::Error&) {
  }
  return 0;
}
