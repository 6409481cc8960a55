// `pneumo config show|check FILE [--set key=value ...]`: resolve and validate experiment files.
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.h"
#include "pneumo/train/experiment.h"

namespace pneumo::tools {

namespace {

struct ConfigOptions {
  std::string file;
  std::vector<std::string> overrides;
  bool docs = false;
};

void add_file_and_overrides(CLI::App* cmd, ConfigOptions& options) {
  cmd->add_option("file", options.file, "experiment YAML file")->required();
  cmd->add_option("--set", options.overrides,
                  "override a value: key.path=value (repeatable), e.g. --set train.epochs=3");
}

void run_config_show(const ConfigOptions& options) {
  const train::ExperimentConfig config = train::load_experiment(options.file, options.overrides);
  fmt::print("{}", train::experiment_to_yaml(config, options.docs));
}

void run_config_check(const ConfigOptions& options) {
  train::load_experiment(options.file, options.overrides);
  fmt::print("{}: ok\n", options.file);
}

}  // namespace

void setup_config(CLI::App& app) {
  CLI::App* config = app.add_subcommand("config", "Resolve and validate experiment YAML files");
  config->require_subcommand(1);

  auto show_options = std::make_shared<ConfigOptions>();
  CLI::App* show = config->add_subcommand(
      "show", "Print the resolved config (base files merged, overrides applied, defaults filled)");
  add_file_and_overrides(show, *show_options);
  show->add_flag("--docs", show_options->docs, "explain every key in a trailing comment");
  show->callback([show_options] { run_config_show(*show_options); });

  auto check_options = std::make_shared<ConfigOptions>();
  CLI::App* check = config->add_subcommand(
      "check", "Validate a config: unknown keys, wrong types and out-of-range values are errors");
  add_file_and_overrides(check, *check_options);
  check->callback([check_options] { run_config_check(*check_options); });
}

}  // namespace pneumo::tools
