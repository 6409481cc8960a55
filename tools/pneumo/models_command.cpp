// `pneumo models` (networks and encoders with parameter counts), `pneumo weights inspect FILE`
// (the tensors of a torch.save or safetensors file) and `pneumo weights convert` (Python
// weights into a pneumo checkpoint).
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "commands.h"
#include "pneumo/core/error.h"
#include "pneumo/core/tensor_shape.h"
#include "pneumo/models/encoder.h"
#include "pneumo/models/model_section.h"
#include "pneumo/models/weights.h"
#include "pneumo/train/checkpoint.h"

namespace pneumo::tools {

namespace {

int64_t parameter_count(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

std::string millions(int64_t n) { return fmt::format("{:.2f} M", static_cast<double>(n) / 1e6); }

void run_models() {
  fmt::print("networks (model.name; one grey input channel, one output, default options):\n");
  for (const std::string& name : models::network_names()) {
    const models::NetworkEntry& entry = models::networks().at(name);
    fmt::print("  {}: {}\n    reads: {}\n", name, entry.summary, fmt::join(entry.keys, ", "));
    for (const std::string& yaml : entry.examples) {
      const auto section = core::read_section<models::ModelSection>(core::parse_yaml(yaml, "models"), "model");
      fmt::print("    {:<52} {:>12}\n", yaml, millions(parameter_count(*models::build_model(section))));
    }
  }
  fmt::print("\nencoders (unet, unet++; name as in model.encoder.name):\n");
  fmt::print("  {:<14} {:>12}  {}\n", "encoder", "parameters", "feature channels, finest first");
  for (const std::string& name : models::encoder_names()) {
    auto encoder = models::make_encoder({name, 1, 5});
    fmt::print("  {:<14} {:>12}  {}\n", name, millions(parameter_count(*encoder)),
               fmt::join(encoder->out_channels(), ", "));
  }
}

struct ConvertOptions {
  std::string model;
  std::vector<std::string> overrides;
  std::string from;
  std::string out;
};

// Strict import of Python weights into a pneumo checkpoint for the model a YAML describes.
void run_convert(const ConvertOptions& options) {
  const core::ConfigNode root = core::load_config(options.model, options.overrides);
  const core::ConfigNode* node = root.find("model");
  if (node == nullptr)
    throw core::ConfigError(fmt::format("{}: no model: section; expected the model the weights belong to",
                                        options.model));
  const auto section = core::read_section<models::ModelSection>(*node, "model");
  auto net = models::build_model(section);
  const models::LoadReport report = models::load_weights(*net, models::read_weights(options.from), true, options.from);
  train::Checkpoint checkpoint;
  core::ConfigNode config = core::ConfigNode::map();
  config.set("model", core::write_section(section));
  checkpoint.config_yaml = core::to_yaml(config);
  for (const auto& p : net->named_parameters()) checkpoint.model.emplace_back(p.key(), p.value());
  for (const auto& b : net->named_buffers()) checkpoint.model.emplace_back(b.key(), b.value());
  train::write_checkpoint(options.out, checkpoint);
  fmt::print("wrote {}: {} ({} model)\n", options.out, report.summary(), section.name);
}

void run_inspect(const std::string& file) {
  const models::NamedTensors tensors = models::read_weights(file);
  int64_t total = 0;
  size_t width = 0;
  for (const auto& [name, t] : tensors) width = std::max(width, name.size());
  for (const auto& [name, t] : tensors) {
    fmt::print("{:<{}}  {:<10} {}\n", name, width, c10::toString(t.scalar_type()), core::shape_string(t));
    total += t.numel();
  }
  fmt::print("{} tensors, {} values\n", tensors.size(), total);
}

}  // namespace

void setup_models(CLI::App& app) {
  CLI::App* models_cmd = app.add_subcommand("models", "List the networks and encoders with parameter counts");
  models_cmd->callback([] { run_models(); });

  CLI::App* weights = app.add_subcommand("weights", "Look into weight files");
  weights->require_subcommand(1);
  auto file = std::make_shared<std::string>();
  CLI::App* inspect = weights->add_subcommand(
      "inspect", "Names, dtypes and shapes of the tensors in a torch.save file (pneumo's or Python's)");
  inspect->add_option("file", *file, "weights file (.pth, .pt, .pth.tar)")->required();
  inspect->callback([file] { run_inspect(*file); });

  auto convert = std::make_shared<ConvertOptions>();
  CLI::App* convert_cmd = weights->add_subcommand(
      "convert", "Import Python weights strictly into a pneumo checkpoint for the model a YAML describes");
  convert_cmd->add_option("--model", convert->model, "YAML with a model: section (an experiment file works)")->required();
  convert_cmd->add_option("--set", convert->overrides, "override a value: key.path=value (repeatable)");
  convert_cmd->add_option("--from", convert->from, "weights file (torch.save or .safetensors)")->required();
  convert_cmd->add_option("--out", convert->out, "checkpoint to write (.ckpt)")->required();
  convert_cmd->callback([convert] { run_convert(*convert); });
}

}  // namespace pneumo::tools
