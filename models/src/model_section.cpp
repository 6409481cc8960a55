#include "pneumo/models/model_section.h"

#include <filesystem>

#include <fmt/format.h>

#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/models/weights.h"

namespace pneumo::models {

namespace {

// A weights file named in the config must exist; say how to bring it or train without it.
void require_weights_file(const std::string& key, const std::string& file) {
  if (std::filesystem::exists(file)) return;
  throw core::CheckpointError(fmt::format(
      "{}: weights file '{}' not found; bring it as the README's \"Bringing pretrained weights\" (under Models) "
      "shows, or train from scratch with {}: \"\" (--set {}=)",
      key, file, key.substr(key.rfind('.') + 1), key));
}

}  // namespace

std::shared_ptr<Network> build_model(const ModelSection& m) {
  std::shared_ptr<Network> net = networks().at(m.name).build(m);
  if (!m.encoder.weights.empty()) {
    require_weights_file("model.encoder.weights", m.encoder.weights);
    net->load_encoder_weights(m.encoder.weights);
  }
  if (!m.weights.empty()) {
    require_weights_file("model.weights", m.weights);
    const LoadReport report = load_weights(*net, read_weights(m.weights), true, m.weights);
    core::log::info("model weights {}: {}", m.weights, report.summary());
  }
  return net;
}

}  // namespace pneumo::models
