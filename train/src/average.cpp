#include "pneumo/train/average.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "pneumo/core/config_node.h"
#include "pneumo/core/config_schema.h"
#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/core/runtime.h"
#include "pneumo/data/data_section.h"
#include "pneumo/data/folds.h"
#include "pneumo/models/batch_norm.h"
#include "pneumo/models/network.h"
#include "pneumo/train/checkpoint.h"
#include "pneumo/train/experiment.h"

namespace pneumo::train {

namespace fs = std::filesystem;

int recompute_batchnorm(models::Network& network, const data::Dataset& dataset, const std::vector<int64_t>& indices,
                        const data::LoaderOptions& loader, const c10::Device& device) {
  torch::NoGradGuard no_grad;
  const int layers = models::reset_batchnorm_statistics(network, std::nullopt);  // an average over all batches
  if (layers == 0) return 0;
  network.train();
  data::BatchLoader batches(dataset, indices, loader);
  while (auto batch = batches.next()) network.forward(batch->to(device).images);
  models::set_batchnorm_momentum(network, 0.1);
  network.eval();
  return layers;
}

AverageSummary average_checkpoints(const AverageOptions& options) {
  if (options.checkpoints.size() < 2)
    throw core::UsageError(fmt::format("averaging needs at least two checkpoints; got {}", options.checkpoints.size()));
  if (options.out.empty()) throw core::UsageError("no output file; expected --out FILE.ckpt");
  const Checkpoint first = read_checkpoint(options.checkpoints.front());
  const ExperimentConfig config =
      core::read_section<ExperimentConfig>(core::parse_yaml(first.config_yaml, options.checkpoints.front().string()));
  const std::string model_yaml = core::to_yaml(core::write_section(config.model));
  std::vector<torch::Tensor> sums;
  for (const auto& [name, tensor] : first.model) sums.push_back(tensor.to(torch::kFloat64));
  for (size_t c = 1; c < options.checkpoints.size(); ++c) {
    const fs::path& file = options.checkpoints[c];
    const Checkpoint other = read_checkpoint(file);
    const ExperimentConfig other_config = core::read_section<ExperimentConfig>(core::parse_yaml(other.config_yaml, file.string()));
    if (core::to_yaml(core::write_section(other_config.model)) != model_yaml)
      throw core::CheckpointError(fmt::format("{} holds another network than {} (their model: sections differ); "
                                              "only checkpoints of one network can be averaged",
                                              file.string(), options.checkpoints.front().string()));
    if (other.model.size() != first.model.size())
      throw core::CheckpointError(fmt::format("{}: {} tensors, {} has {}", file.string(), other.model.size(),
                                              options.checkpoints.front().string(), first.model.size()));
    for (size_t i = 0; i < other.model.size(); ++i) {
      const auto& [name, tensor] = other.model[i];
      if (name != first.model[i].first || !tensor.sizes().equals(first.model[i].second.sizes()))
        throw core::CheckpointError(fmt::format("{}: tensor {} does not match {} of {}", file.string(), name,
                                                first.model[i].first, options.checkpoints.front().string()));
      sums[i] += tensor.to(torch::kFloat64);
    }
  }
  Checkpoint averaged;
  averaged.config_yaml = first.config_yaml;
  averaged.epoch = first.epoch;
  const auto count = static_cast<double>(options.checkpoints.size());
  for (size_t i = 0; i < first.model.size(); ++i) {
    const torch::Tensor& original = first.model[i].second;
    // Counters (num_batches_tracked) stay the first's; everything else is the mean.
    averaged.model.emplace_back(first.model[i].first, original.is_floating_point()
                                                          ? (sums[i] / count).to(original.scalar_type())
                                                          : original.clone());
  }

  AverageSummary summary;
  summary.checkpoints = static_cast<int>(options.checkpoints.size());
  if (options.recompute_batchnorm) {
    const data::DataSection& d = config.data;
    if ((d.labels.empty() && d.masks.empty() && d.table.empty()) || d.images.empty())
      throw core::UsageError(fmt::format("{}: its config names no training data (data.labels, data.masks or data.table, "
                                         "and data.images) to "
                                         "recompute BatchNorm statistics over; use --no-batchnorm to keep the averaged "
                                         "statistics", options.checkpoints.front().string()));
    const c10::Device device = core::resolve_device(core::parse_device(options.device));
    std::shared_ptr<models::Network> net = models::build_model(config.model);
    models::load_weights(*net, averaged.model, true, options.out.string());
    net->to(device);
    data::validate(config.data);
    const data::Dataset dataset = data::open_dataset(config.data);
    // The run's own folds when the checkpoint sits in its run folder, else drawn as training did.
    const fs::path folds_file = options.checkpoints.front().parent_path() / "folds.csv";
    const std::vector<int> folds = fs::exists(folds_file)
                                       ? data::read_folds_csv(folds_file, dataset.index(), config.data.folds)
                                       : data::assign_folds(config.data, dataset.index(),
                                                            static_cast<uint64_t>(config.experiment.seed));
    const std::vector<int64_t> train = data::split_by_fold(folds, config.data.fold).train;
    data::LoaderOptions loader = data::loader_options(
        config.data, core::plan_threads(core::hardware_threads(), 1, device.is_cuda()).loader_workers);
    loader.batch_size = config.train.batch_size;
    summary.batchnorm_layers = recompute_batchnorm(*net, dataset, train, loader, device);
    summary.batchnorm_images = static_cast<int64_t>(train.size());
    averaged.model.clear();
    for (const auto& p : net->named_parameters()) averaged.model.emplace_back(p.key(), p.value().cpu());
    for (const auto& b : net->named_buffers()) averaged.model.emplace_back(b.key(), b.value().cpu());
  }
  write_checkpoint(options.out, averaged);
  return summary;
}

}  // namespace pneumo::train
