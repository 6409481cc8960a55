// Checkpoints with random weights for inference tests: no training needed to check that
// predict, evaluate and export do what they say.
#pragma once

#include <filesystem>
#include <string>

#include <torch/torch.h>

#include "pneumo/models/network.h"
#include "pneumo/train/checkpoint.h"
#include "pneumo/train/experiment.h"

namespace pneumo::testing {

struct ModelRecipe {
  std::string name = "unet";
  std::string encoder = "resnet18";
  int channels = 1;
  int size = 64;
  bool aux_head = true;
  uint64_t seed = 1;
};

// A CheXNet-style classifier: DenseNet121, one logit, no auxiliary head.
inline ModelRecipe chexnet_recipe() {
  ModelRecipe r;
  r.name = "classifier";
  r.encoder = "densenet121";
  r.aux_head = false;
  return r;
}

inline train::ExperimentConfig recipe_config(const ModelRecipe& r) {
  train::ExperimentConfig c;
  c.model.name = r.name;
  c.model.encoder.name = r.encoder;
  c.model.encoder.in_channels = r.channels;
  c.model.decoder_channels = {32, 16, 16, 8, 8};
  c.model.aux_head = r.aux_head;
  c.data.size = r.size;
  c.data.channels = r.channels;
  if (r.channels == 3) {
    c.data.mean = {0.485, 0.456, 0.406};
    c.data.std = {0.229, 0.224, 0.225};
  }
  return c;
}

// Writes a pneumo checkpoint of a freshly initialised network (BatchNorm statistics made
// non-trivial so eval mode matters).
inline std::filesystem::path write_random_checkpoint(const std::filesystem::path& file, const ModelRecipe& r) {
  const train::ExperimentConfig config = recipe_config(r);
  torch::manual_seed(r.seed);
  auto net = models::build_model(config.model);
  {
    torch::NoGradGuard no_grad;
    for (auto& b : net->named_buffers())
      if (b.key().find("running_mean") != std::string::npos) b.value().uniform_(-0.1, 0.1);
      else if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.5, 1.5);
  }
  train::Checkpoint c;
  c.config_yaml = train::experiment_to_yaml(config);
  for (const auto& p : net->named_parameters()) c.model.emplace_back(p.key(), p.value());
  for (const auto& b : net->named_buffers()) c.model.emplace_back(b.key(), b.value());
  std::filesystem::create_directories(file.parent_path());
  train::write_checkpoint(file, c);
  return file;
}

}  // namespace pneumo::testing
