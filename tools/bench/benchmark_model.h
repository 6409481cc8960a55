// The model the inference and serving benchmarks run: the SIIM winners' U-Net/ResNet34 on
// ImageNet-style 3-channel inputs, random weights from a fixed seed, written as a pneumo
// checkpoint (DIR/model.ckpt) and as a torch.save file for the Python side (DIR/model.pth).
#pragma once

#include <filesystem>

#include <torch/torch.h>

#include "pneumo/models/network.h"
#include "pneumo/models/weights.h"
#include "pneumo/train/checkpoint.h"
#include "pneumo/train/experiment.h"

namespace pneumo::bench {

inline void write_benchmark_unet(const std::filesystem::path& dir, int size) {
  train::ExperimentConfig config;
  config.model.name = "unet";
  config.model.encoder.name = "resnet34";
  config.model.encoder.in_channels = 3;
  config.data.size = size;
  config.data.channels = 3;
  config.data.mean = {0.485, 0.456, 0.406};
  config.data.std = {0.229, 0.224, 0.225};
  torch::manual_seed(0);
  auto net = models::build_model(config.model);
  train::Checkpoint checkpoint;
  checkpoint.config_yaml = train::experiment_to_yaml(config);
  for (const auto& p : net->named_parameters()) checkpoint.model.emplace_back(p.key(), p.value());
  for (const auto& b : net->named_buffers()) checkpoint.model.emplace_back(b.key(), b.value());
  train::write_checkpoint(dir / "model.ckpt", checkpoint);
  models::save_weights(*net, dir / "model.pth");
}

}  // namespace pneumo::bench
