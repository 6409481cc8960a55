#include "pneumo/train/trainer.h"

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>

#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>

#include <fmt/format.h>
#include <torch/torch.h>

#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"
#include "pneumo/core/log.h"
#include "pneumo/core/progress.h"
#include "pneumo/core/run_dir.h"
#include "pneumo/data/folds.h"
#include "pneumo/models/batch_norm.h"
#include "pneumo/train/average.h"
#include "pneumo/train/charts.h"
#include "pneumo/train/checkpoint.h"
#include "pneumo/train/distributed.h"
#include "pneumo/train/losses.h"
#include "pneumo/train/metrics.h"
#include "pneumo/train/mixed_precision.h"
#include "pneumo/train/radam.h"
#include "pneumo/train/schedule.h"

namespace pneumo::train {

namespace fs = std::filesystem;

namespace {

// Encoder parameters get their own group (learning-rate multiplier, freezing).
// (`encoder*` in the U-Nets, `features.` in the classifier, Conv1..Conv5 in the plain
// Attention U-Net.)
bool is_encoder_parameter(const std::string& name) {
  return name.rfind("encoder", 0) == 0 || name.rfind("features.", 0) == 0 ||
         (name.rfind("Conv", 0) == 0 && name.size() > 4 && std::isdigit(static_cast<unsigned char>(name[4])));
}

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimizerSection& o, models::Network& net) {
  std::vector<torch::Tensor> encoder, rest;
  for (const auto& p : net.named_parameters()) (is_encoder_parameter(p.key()) ? encoder : rest).push_back(p.value());
  const auto betas = std::make_tuple(o.betas.at(0), o.betas.at(1));
  auto options = [&](double lr) -> std::unique_ptr<torch::optim::OptimizerOptions> {
    if (o.name == "adam")
      return std::make_unique<torch::optim::AdamOptions>(torch::optim::AdamOptions(lr).betas(betas).weight_decay(o.weight_decay));
    if (o.name == "adamw")
      return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(lr).betas(betas).weight_decay(o.weight_decay));
    if (o.name == "radam") return std::make_unique<RAdamOptions>(RAdamOptions(lr).betas(betas).weight_decay(o.weight_decay));
    return std::make_unique<torch::optim::SGDOptions>(
        torch::optim::SGDOptions(lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(o.weight_decay));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(encoder, options(o.lr * o.encoder_lr_multiplier));
  groups.emplace_back(rest, options(o.lr));
  if (o.name == "adam") return std::make_unique<torch::optim::Adam>(groups, torch::optim::AdamOptions(o.lr));
  if (o.name == "adamw") return std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(o.lr));
  if (o.name == "radam") return std::make_unique<RAdam>(groups, RAdamOptions(o.lr));
  return std::make_unique<torch::optim::SGD>(groups, torch::optim::SGDOptions(o.lr));
}

ComboLossOptions combo_options(const LossSection& l) {
  ComboLossOptions o;
  o.bce = l.bce;
  o.dice = l.dice;
  o.focal = l.focal;
  o.lovasz = l.lovasz;
  o.weighted_bce_dice = l.weighted_bce_dice;
  o.dice_per_image = l.dice_per_image;
  o.dice_smooth = l.dice_smooth;
  if (l.pos_weight != 1.0) o.pos_weight = l.pos_weight;
  return o;
}

torch::Tensor compute_loss(const models::ModelOutput& out, const data::Batch& b, bool segmenter, const LossSection& l) {
  if (!segmenter) {
    const torch::Tensor logit = models::pneumothorax_logit(out, false).unsqueeze(1);
    return classification_loss(logit, b.labels.unsqueeze(1), l.label_smoothing,
                               l.class_weights.empty() ? std::vector<double>{} : std::vector<double>{l.class_weights[0]});
  }
  torch::Tensor loss = deep_supervision_loss(out.masks, out.extra_masks, b.masks, combo_options(l), l.extra_mask_weights);
  if (out.logits.defined() && l.aux_weight > 0)
    loss = loss + l.aux_weight * bce_loss(out.logits.select(1, 0), b.labels);
  return loss;
}

double monitored(const EpochResult& m, const std::string& monitor) {
  if (monitor == "val_dice") return m.val_dice;
  if (monitor == "val_iou") return m.val_iou;
  if (monitor == "val_auc") return std::isnan(m.val_auc) ? -1.0 : m.val_auc;
  return -m.val_loss;  // val_loss: lower is better
}

std::string number(double v) { return std::isnan(v) ? "nan" : fmt::format("{:.6g}", v); }

void write_metrics(const core::RunDirectory& run, const std::vector<EpochResult>& rows) {
  std::string csv = "epoch,lr,train_loss,val_loss,val_dice,val_iou,val_auc,seconds\n", jsonl;
  for (const EpochResult& m : rows) {
    csv += fmt::format("{},{},{},{},{},{},{},{:.1f}\n", m.epoch, number(m.lr), number(m.train_loss), number(m.val_loss),
                       number(m.val_dice), number(m.val_iou), number(m.val_auc), m.seconds);
    const auto json_number = [](double v) { return std::isnan(v) ? std::string("null") : fmt::format("{:.6g}", v); };
    jsonl += fmt::format(
        "{{\"epoch\": {}, \"lr\": {}, \"train_loss\": {}, \"val_loss\": {}, \"val_dice\": {}, \"val_iou\": {}, "
        "\"val_auc\": {}, \"seconds\": {:.1f}}}\n",
        m.epoch, json_number(m.lr), json_number(m.train_loss), json_number(m.val_loss), json_number(m.val_dice),
        json_number(m.val_iou), json_number(m.val_auc), m.seconds);
  }
  core::write_file_atomic(run.file("metrics.csv"), csv);
  core::write_file_atomic(run.file("metrics.jsonl"), jsonl);
  Series train_loss{"train loss", {}, {}}, val_loss{"val loss", {}, {}}, dice{"val Dice", {}, {}},
      iou_values{"val IoU", {}, {}}, auc{"val AUC", {}, {}}, lr{"learning rate", {}, {}};
  for (const EpochResult& m : rows) {
    train_loss.values.push_back(m.train_loss);
    val_loss.values.push_back(m.val_loss);
    dice.values.push_back(m.val_dice);
    iou_values.values.push_back(m.val_iou);
    auc.values.push_back(m.val_auc);
    lr.values.push_back(m.lr);
  }
  write_line_chart(run.file("loss.png"), "loss", {train_loss, val_loss});
  write_line_chart(run.file("metrics.png"), "validation metrics", {dice, iou_values, auc});
  write_line_chart(run.file("lr.png"), "learning rate (at the end of each epoch)", {lr}, true);
}

Checkpoint make_checkpoint(const models::Network& net, const std::string& yaml, int epoch, int64_t step,
                           const EpochResult& m) {
  Checkpoint c;
  c.config_yaml = yaml;
  c.epoch = epoch;
  c.step = step;
  for (const auto& p : net.named_parameters()) c.model.emplace_back(p.key(), p.value());
  for (const auto& b : net.named_buffers()) c.model.emplace_back(b.key(), b.value());
  c.metrics = {{"train_loss", m.train_loss}, {"val_loss", m.val_loss}, {"val_dice", m.val_dice},
               {"val_iou", m.val_iou},       {"val_auc", m.val_auc},   {"lr", m.lr}};
  return c;
}

struct Snapshot {
  int epoch = 0;
  double val_loss = 0, val_dice = 0, val_auc = 0;
};

std::string snapshot_name(int epoch) { return fmt::format("snapshot-{:03d}.ckpt", epoch); }

models::PickleRef snapshot_list(const std::vector<Snapshot>& snapshots) {
  std::vector<models::PickleRef> items;
  for (const Snapshot& s : snapshots)
    items.push_back(models::pickle_list({models::pickle_int(s.epoch), models::pickle_float(s.val_loss),
                                         models::pickle_float(s.val_dice), models::pickle_float(s.val_auc)}));
  return models::pickle_list(std::move(items));
}

std::vector<Snapshot> read_snapshots(const models::PickleRef& list) {
  std::vector<Snapshot> out;
  if (!list) return out;
  for (const auto& item : list->items) {
    if (item->items.size() != 4) throw core::CheckpointError("malformed snapshot list in the checkpoint");
    out.push_back({static_cast<int>(item->items[0]->integer), item->items[1]->number, item->items[2]->number,
                   item->items[3]->number});
  }
  return out;
}

// ensemble.json: the snapshot checkpoints (and the SWA model) a run offers for ensembling.
void write_manifest(const core::RunDirectory& run, const std::vector<Snapshot>& snapshots,
                    const std::optional<EpochResult>& swa) {
  nlohmann::ordered_json manifest;
  manifest["format"] = "pneumo-ensemble";
  manifest["version"] = 1;
  nlohmann::ordered_json members = nlohmann::ordered_json::array();
  const auto finite = [](double v) { return std::isnan(v) ? nlohmann::ordered_json() : nlohmann::ordered_json(v); };
  for (const Snapshot& s : snapshots)
    members.push_back({{"checkpoint", snapshot_name(s.epoch)}, {"epoch", s.epoch}, {"val_loss", finite(s.val_loss)},
                       {"val_dice", finite(s.val_dice)}, {"val_auc", finite(s.val_auc)}});
  manifest["snapshots"] = members;
  if (swa)
    manifest["swa"] = {{"checkpoint", "swa.ckpt"}, {"val_loss", finite(swa->val_loss)},
                       {"val_dice", finite(swa->val_dice)}, {"val_auc", finite(swa->val_auc)}};
  core::write_file_atomic(run.file("ensemble.json"), manifest.dump(2) + "\n");
}

models::PickleRef tensor_list(const std::vector<torch::Tensor>& tensors) {
  std::vector<models::PickleRef> items;
  for (const auto& t : tensors) items.push_back(models::pickle_tensor(t));
  return models::pickle_list(std::move(items));
}

// A fresh network for `section` holding `parameters` (in named_parameters order) and the
// buffers (BatchNorm statistics) of `source`: the SWA and EMA models.
std::shared_ptr<models::Network> network_with(const models::ModelSection& section, const models::Network& source,
                                              const std::vector<torch::Tensor>& parameters, const c10::Device& device,
                                              bool channels_last) {
  std::shared_ptr<models::Network> net = models::build_model(section);
  net->to(device);
  if (channels_last) models::use_channels_last(*net);
  torch::NoGradGuard no_grad;
  size_t i = 0;
  for (auto& p : net->parameters()) p.copy_(parameters[i++]);
  auto buffers = source.named_buffers();
  for (auto& b : net->named_buffers()) b.value().copy_(buffers[b.key()]);
  return net;
}

std::string optimizer_bytes(torch::optim::Optimizer& optimizer) {
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  std::string bytes;
  archive.save_to([&bytes](const void* data, size_t size) {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  return bytes;
}

void restore_optimizer(torch::optim::Optimizer& optimizer, const torch::Tensor& bytes) {
  const torch::Tensor b = bytes.contiguous();
  torch::serialize::InputArchive archive;
  archive.load_from(static_cast<const char*>(b.data_ptr()), static_cast<size_t>(b.numel()));
  optimizer.load(archive);
}

torch::Tensor bytes_tensor(const std::string& bytes) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

models::PickleRef metrics_rows(const std::vector<EpochResult>& rows) {
  std::vector<models::PickleRef> items;
  for (const EpochResult& m : rows)
    items.push_back(models::pickle_list({models::pickle_int(m.epoch), models::pickle_float(m.lr),
                                         models::pickle_float(m.train_loss), models::pickle_float(m.val_loss),
                                         models::pickle_float(m.val_dice), models::pickle_float(m.val_iou),
                                         models::pickle_float(m.val_auc), models::pickle_float(m.seconds)}));
  return models::pickle_list(std::move(items));
}

std::vector<EpochResult> read_metrics_rows(const models::PickleRef& list) {
  std::vector<EpochResult> rows;
  if (!list) return rows;
  for (const auto& item : list->items) {
    if (item->items.size() != 8) throw core::CheckpointError("malformed metrics history in the checkpoint");
    EpochResult m;
    m.epoch = static_cast<int>(item->items[0]->integer);
    double* fields[] = {&m.lr, &m.train_loss, &m.val_loss, &m.val_dice, &m.val_iou, &m.val_auc, &m.seconds};
    for (int k = 0; k < 7; ++k) *fields[k] = item->items[k + 1]->number;
    rows.push_back(m);
  }
  return rows;
}

torch::Tensor generator_state(at::Generator generator) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  return generator.get_state();
}

void set_generator_state(at::Generator generator, const torch::Tensor& state) {
  std::lock_guard<std::mutex> lock(generator.mutex());
  generator.set_state(state);
}

// One state per visible GPU (an empty list without CUDA).
models::PickleRef cuda_rng_states() {
  std::vector<models::PickleRef> items;
  const int64_t gpus = torch::cuda::is_available() ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
  for (int64_t i = 0; i < gpus; ++i)
    items.push_back(models::pickle_tensor(generator_state(
        at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(i))))));
  return models::pickle_list(std::move(items));
}

void restore_rng_states(const models::PickleRef& state) {
  const models::PickleRef cpu = models::pickle_get(state, "rng_cpu");
  if (!cpu) throw core::CheckpointError("the checkpoint's trainer state lacks 'rng_cpu'");
  set_generator_state(at::detail::getDefaultCPUGenerator(), cpu->tensor);
  const models::PickleRef cuda = models::pickle_get(state, "rng_cuda");
  const int64_t gpus = torch::cuda::is_available() ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
  if (!cuda || cuda->items.empty()) return;
  if (static_cast<int64_t>(cuda->items.size()) != gpus)
    core::log::warn("the checkpoint holds CUDA random states for {} GPU(s), this machine has {}; GPU random "
                    "draws will not continue exactly", cuda->items.size(), gpus);
  for (int64_t i = 0; i < std::min<int64_t>(gpus, static_cast<int64_t>(cuda->items.size())); ++i)
    set_generator_state(at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(i))),
                        cuda->items[i]->tensor);
}

// The data-parallel side of a run: the process group (none on one process) and the batch
// split. On an error the group is left open rather than closed: closing waits for the
// collectives still in flight, which the other processes will never finish.
struct DataParallel {
  std::unique_ptr<ProcessGroup> group;
  int rank = 0, world = 1;
  int64_t global_batch = 1, process_batch = 1;
  double lr_factor = 1.0;

  DataParallel() = default;
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;
  ~DataParallel() {
    if (group && std::uncaught_exceptions() > 0) static_cast<void>(group.release());
  }
  bool writer() const { return rank == 0; }
};

// Checks the batch split and learning-rate scaling against the number of processes.
void plan_batches(const TrainSection& t, int world, DataParallel& dp) {
  const DistributedSection& d = t.distributed;
  if (d.batch_size == "global" && d.lr_scaling != "none")
    throw core::ConfigError(fmt::format(
        "train.distributed.lr_scaling: {} applies to per_process batches; with global batches a step is the same on "
        "any number of processes, so keep lr_scaling: none (or set batch_size: per_process)",
        d.lr_scaling));
  dp.world = world;
  if (d.batch_size == "global") {
    if (t.batch_size % world != 0)
      throw core::ConfigError(fmt::format(
          "train.batch_size: {} images cannot be split evenly over {} processes; use a multiple of {}, or "
          "train.distributed.batch_size: per_process",
          t.batch_size, world, world));
    dp.global_batch = t.batch_size;
    dp.process_batch = t.batch_size / world;
  } else {
    dp.process_batch = t.batch_size;
    dp.global_batch = static_cast<int64_t>(t.batch_size) * world;
  }
  dp.lr_factor = d.lr_scaling == "linear" ? world : d.lr_scaling == "sqrt" ? std::sqrt(static_cast<double>(world)) : 1.0;
}

// Joins the other processes of a data-parallel run: one GPU and a share of the CPU cores per
// process, logging left to rank 0. Returns this process's device.
c10::Device join_processes(const ExperimentConfig& config, const ProcessPlacement& place, c10::Device device,
                           DataParallel& dp) {
  dp.rank = place.rank;
  if (place.rank > 0) {
    core::set_log_prefix(fmt::format("rank {}: ", place.rank));
    if (core::log_level() < core::LogLevel::kWarn) core::set_log_level(core::LogLevel::kWarn);
  }
  if (device.is_cuda()) {
    if (config.runtime.device.rfind("cuda:", 0) == 0)
      throw core::ConfigError(fmt::format("runtime.device: {} names one GPU, but each of the {} processes uses the "
                                          "GPU of its LOCAL_RANK; set it to cuda or auto",
                                          config.runtime.device, place.world_size));
    device = core::resolve_device(core::parse_device(fmt::format("cuda:{}", place.local_rank)));
  }
  if (config.runtime.threads == 0)  // the machine's cores are shared by its processes
    core::configure_threads(core::plan_threads(core::hardware_threads(), place.local_world_size, device.is_cuda()).intra_op);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(config.train.distributed.timeout_s * 1000.0));
  dp.group = ProcessGroup::connect(place, device, timeout);
  return device;
}

// Copies rank 0's parameters (or BatchNorm statistics) to every process.
void broadcast_from_first(ProcessGroup& group, const std::vector<torch::Tensor>& tensors, const std::string& what) {
  torch::NoGradGuard no_grad;
  for (const torch::Tensor& t : tensors) {
    torch::Tensor data = t.detach();
    group.broadcast(data, what);
  }
}

double number_of(const models::PickleRef& state, const char* key) {
  const models::PickleRef v = models::pickle_get(state, key);
  if (!v) throw core::CheckpointError(fmt::format("the checkpoint's trainer state lacks '{}'", key));
  return v->kind == models::PickleValue::Kind::kInt ? static_cast<double>(v->integer) : v->number;
}

}  // namespace

std::pair<Checkpoint, fs::path> resume_checkpoint(const fs::path& run) {
  const fs::path last = run / "last.ckpt";
  std::string problem;
  try {
    Checkpoint c = read_checkpoint(last);
    if (c.state) return {std::move(c), last};
    problem = last.string() + ": holds no trainer state to resume from";
  } catch (const core::CheckpointError& e) {
    problem = e.what();
  }
  // Every checkpoint the trainer writes carries its state: take the newest intact one.
  std::optional<std::pair<Checkpoint, fs::path>> newest;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(run, ec)) {
    if (entry.path().extension() != ".ckpt" || entry.path() == last) continue;
    try {
      Checkpoint c = read_checkpoint(entry.path());
      if (c.state && (!newest || c.epoch > newest->first.epoch ||
                      (c.epoch == newest->first.epoch && entry.path().filename() == "best.ckpt")))
        newest = {std::move(c), entry.path()};
    } catch (const core::CheckpointError& e) {
      core::log::warn("{} (skipped)", e.what());
    }
  }
  if (!newest)
    throw core::CheckpointError(fmt::format("{}; no other intact checkpoint with trainer state in {} to resume from",
                                            problem, run.string()));
  core::log::warn("{}; resuming from {} (epoch {}) instead", problem, newest->second.filename().string(),
                  newest->first.epoch);
  return std::move(*newest);
}

ExperimentConfig load_run_config(const fs::path& run) {
  const core::RunDirectory dir = core::RunDirectory::open(run);
  return load_experiment(dir.config_file().string(), {});
}

TrainSummary train_experiment(const ExperimentConfig& config, const TrainOptions& options) {
  const TrainSection& t = config.train;
  const auto seed = static_cast<uint64_t>(config.experiment.seed);
  // Everything that can be refused is checked before the run folder exists.
  data::validate(config.data);
  const bool resuming = !options.resume.empty();
  std::optional<Checkpoint> resume_from;
  fs::path resume_file;
  if (resuming) std::tie(resume_from, resume_file) = resume_checkpoint(options.resume);  // before touching anything
  DataParallel dp;
  plan_batches(t, options.placement.world_size, dp);
  // Seeds first: the model's initial weights depend on them.
  c10::Device device = core::activate_runtime(config.runtime, seed);
  if (options.placement.distributed()) device = join_processes(config, options.placement, device, dp);
  const augment::Pipeline train_augment = config.augment.train_pipeline();
  const augment::Pipeline val_augment = config.augment.validation_pipeline();
  const augment::BatchPipeline device_augment = config.augment.device_pipeline();
  std::shared_ptr<models::Network> net = models::build_model(config.model);
  const bool segmenter = net->is_segmenter();
  if (!segmenter && (t.monitor == "val_dice" || t.monitor == "val_iou"))
    throw core::ConfigError(fmt::format("train.monitor: {} needs a segmenter; use val_auc or val_loss for the classifier",
                                        t.monitor));
  if (config.model.encoder.in_channels != config.data.channels)
    throw core::ConfigError(fmt::format("model.encoder.in_channels ({}) must equal data.channels ({})",
                                        config.model.encoder.in_channels, config.data.channels));
  const data::Dataset dataset = data::open_dataset(config.data);

  // Only rank 0 writes the run folder (the other processes may not even see it).
  std::optional<core::RunDirectory> writable;
  const std::string yaml = experiment_to_yaml(config);
  if (dp.writer()) {
    writable = resuming ? core::RunDirectory::open(options.resume)
                        : core::RunDirectory::create(config.experiment.output_dir, config.experiment.name,
                                                     config.experiment.run_name, options.overwrite);
    if (resuming) {
      core::open_log_file(writable->log_file());
      if (const int removed = writable->remove_interrupted_writes())
        core::log::info("removed {} partial file(s) of writes interrupted when the run stopped", removed);
    } else {
      writable->start(yaml);
    }
  }
  const fs::path run_path = dp.group ? fs::path(dp.group->broadcast(dp.writer() ? writable->path().string() : "",
                                                                     "sharing the run folder's name"))
                                     : writable->path();
  core::log::info("run {}: {} on {}{}", run_path.string(), config.model.name, device.str(),
                  resuming ? fmt::format(", resuming after epoch {}", resume_from->epoch) : "");
  if (dp.group)
    core::log::info("data-parallel: {} processes ({}), {} images per step, {} per process; BatchNorm {}; learning "
                    "rate x{:.3g}",
                    dp.world, dp.group->backend(), dp.global_batch, dp.process_batch,
                    t.distributed.sync_batchnorm ? "synchronised" : "per process", dp.lr_factor);

  const std::vector<int> folds = data::assign_folds(config.data, dataset.index(), seed);
  if (dp.writer()) data::write_folds_csv(writable->file("folds.csv"), dataset.index(), folds);
  const data::FoldSplit split = data::split_by_fold(folds, config.data.fold);
  if (split.train.empty() || split.validation.empty())
    throw core::DataError(fmt::format("fold {} leaves {} training and {} validation images", config.data.fold,
                                      split.train.size(), split.validation.size()));
  std::vector<bool> positive;
  for (int64_t i : split.train) positive.push_back(dataset.index().entries[i].positive);
  const data::EpochSampler sampler(split.train, positive, data::negative_share_schedule(config.data), seed);
  core::log::info("data: {} training, {} validation images ({} positive in training)", split.train.size(),
                  split.validation.size(), std::count(positive.begin(), positive.end(), true));

  net->to(device);
  const bool channels_last = config.runtime.channels_last;
  if (channels_last) models::use_channels_last(*net);
  // Mixed precision: forward passes under autocast, losses in float32, scaled gradients in float16.
  const MixedPrecision precision = mixed_precision_for(config.runtime, device);
  if (precision.enabled) core::log::info("computing in {}", precision.str());
  GradScaler scaler(precision.needs_loss_scaling());
  auto run_model = [&](models::Network& model, const torch::Tensor& images) {
    models::ModelOutput out;
    {
      AutocastScope autocast(precision);
      out = model.forward(channels_last ? images.contiguous(torch::MemoryFormat::ChannelsLast) : images);
    }
    if (precision.enabled) {
      const auto to_float = [](const torch::Tensor& x) { return x.defined() ? x.to(torch::kFloat32) : x; };
      out.masks = to_float(out.masks);
      out.logits = to_float(out.logits);
      for (auto& m : out.extra_masks) m = to_float(m);
    }
    return out;
  };
  if (dp.group && t.distributed.sync_batchnorm)
    models::synchronise_batchnorm(*net, [group = dp.group.get()](torch::Tensor& x) {
      group->sum(x, "synchronised BatchNorm statistics");
    }, dp.rank, dp.world);
  auto optimizer = make_optimizer(t.optimizer, *net);
  std::vector<double> base_lr;
  for (auto& g : optimizer->param_groups()) base_lr.push_back(g.options().get_lr() * dp.lr_factor);
  LrSchedule schedule(t.schedule, t.epochs);

  const core::ThreadPlan threads =
      core::plan_threads(core::hardware_threads(), options.placement.local_world_size, device.is_cuda());
  data::LoaderOptions loader = data::loader_options(config.data, threads.loader_workers);
  core::log::debug("{} loader thread(s), {} LibTorch intra-op thread(s)", loader.workers, at::get_num_threads());
  loader.batch_size = dp.process_batch;
  loader.seed = seed;
  loader.pin_memory = device.is_cuda();
  auto transform_of = [](const augment::Pipeline& p) -> data::SampleTransform {
    if (p.empty()) return {};
    return [&p](data::Sample& s, core::Rng& rng) {
      try {
        p.apply(s.image, s.mask, rng);
      } catch (const core::DataError& e) {
        throw core::DataError(fmt::format("{}: augmentation: {}", s.image_id, e.what()));
      }
    };
  };

  TrainSummary summary;
  summary.run = run_path;
  summary.monitor = t.monitor;
  summary.best_value = -std::numeric_limits<double>::infinity();
  std::vector<EpochResult> rows;
  int64_t step = 0;
  int epochs_without_improvement = 0;
  int first_epoch = 0;
  std::vector<Snapshot> snapshots;
  std::vector<torch::Tensor> swa;  // running average of the parameters, in named_parameters order
  int64_t swa_count = 0;
  std::vector<torch::Tensor> ema;  // exponential moving average of the parameters, same order
  std::vector<std::pair<double, int>> top;  // (monitored value, epoch) of the kept top-NNN.ckpt, best first
  if (resume_from) {
    const Checkpoint& c = *resume_from;
    models::load_weights(*net, c.model, true, resume_file.string());
    restore_optimizer(*optimizer, models::pickle_get(c.state, "optimizer")->tensor);
    restore_rng_states(c.state);
    if (models::pickle_get(c.state, "scaler_scale"))
      scaler.restore(number_of(c.state, "scaler_scale"), static_cast<int64_t>(number_of(c.state, "scaler_growth_tracker")));
    schedule.restore({number_of(c.state, "plateau_factor"), number_of(c.state, "plateau_best"),
                      static_cast<int>(number_of(c.state, "plateau_bad_epochs"))});
    summary.best_value = number_of(c.state, "best_value");
    summary.best_epoch = static_cast<int>(number_of(c.state, "best_epoch"));
    epochs_without_improvement = static_cast<int>(number_of(c.state, "stale_epochs"));
    rows = read_metrics_rows(models::pickle_get(c.state, "metrics"));
    snapshots = read_snapshots(models::pickle_get(c.state, "snapshots"));
    swa_count = static_cast<int64_t>(number_of(c.state, "swa_count"));
    if (const models::PickleRef list = models::pickle_get(c.state, "swa"))
      for (const auto& item : list->items) swa.push_back(item->tensor.to(device));
    if (const models::PickleRef list = models::pickle_get(c.state, "ema"))
      for (const auto& item : list->items) ema.push_back(item->tensor.to(device));
    if (const models::PickleRef list = models::pickle_get(c.state, "top"))
      for (const auto& item : list->items) top.emplace_back(item->items.at(0)->number, static_cast<int>(item->items.at(1)->integer));
    step = c.step;
    first_epoch = static_cast<int>(c.epoch);
    summary.epochs_run = first_epoch;
    if (first_epoch >= t.epochs) {
      core::log::info("the run already finished its {} epochs", t.epochs);
      return summary;
    }
  }
  // Every process starts from rank 0's weights (they agree already; this makes sure).
  if (dp.group) {
    broadcast_from_first(*dp.group, net->parameters(), "sharing the initial weights");
    broadcast_from_first(*dp.group, net->buffers(), "sharing the initial BatchNorm statistics");
  }
  // Validation at the training resolution: loss, Kaggle Dice, IoU, image-level AUC.
  auto evaluate = [&](models::Network& model, int epoch, EpochResult& m) {
    model.eval();
    torch::NoGradGuard no_grad;
    data::LoaderOptions val_loader = loader;
    val_loader.epoch = epoch;
    val_loader.transform = transform_of(val_augment);
    data::BatchLoader val(dataset, dp.group ? shard_evenly(split.validation, dp.rank, dp.world) : split.validation,
                          val_loader);
    double val_loss = 0.0, dice = 0.0, iou_sum = 0.0;
    int64_t n = 0;
    std::vector<double> scores;
    std::vector<int> labels;
    while (auto batch = val.next()) {
      const data::Batch b = batch->to(device);
      const models::ModelOutput out = run_model(model, b.images);
      val_loss += compute_loss(out, b, segmenter, t.loss).item<double>() * static_cast<double>(b.ids.size());
      torch::Tensor score = models::pneumothorax_logit(out, segmenter);
      if (segmenter) {
        const torch::Tensor probs = torch::sigmoid(out.masks.select(1, 0));
        const torch::Tensor predicted = probs > t.threshold, truth = b.masks.select(1, 0) > 0.5;
        dice += kaggle_dice(predicted.cpu(), truth.cpu()).sum().item<double>();
        iou_sum += iou(predicted.cpu(), truth.cpu()).sum().item<double>();
        score = score.defined() ? torch::sigmoid(score) : probs.flatten(1).amax(1);  // else the most confident pixel
      } else {
        score = torch::sigmoid(score);
      }
      const torch::Tensor s = score.to(torch::kCPU, torch::kFloat64).contiguous();
      for (int64_t j = 0; j < s.numel(); ++j) {
        scores.push_back(s[j].item<double>());
        labels.push_back(b.labels[j].item<float>() > 0.5f ? 1 : 0);
      }
      n += static_cast<int64_t>(b.ids.size());
    }
    if (dp.group) {  // each process validated its share: add them up
      const std::vector<double> sums = dp.group->sum_in_rank_order({val_loss, dice, iou_sum, static_cast<double>(n)},
                                                                   "adding up the validation metrics");
      val_loss = sums[0];
      dice = sums[1];
      iou_sum = sums[2];
      n = static_cast<int64_t>(sums[3]);
      const torch::Tensor all_scores = dp.group->gather(torch::tensor(scores, torch::kFloat64), "gathering scores").cpu();
      const torch::Tensor all_labels =
          dp.group->gather(torch::tensor(std::vector<int64_t>(labels.begin(), labels.end()), torch::kInt64),
                           "gathering labels").cpu();
      scores.assign(all_scores.data_ptr<double>(), all_scores.data_ptr<double>() + all_scores.numel());
      labels.assign(all_labels.data_ptr<int64_t>(), all_labels.data_ptr<int64_t>() + all_labels.numel());
    }
    m.val_loss = val_loss / static_cast<double>(n);
    m.val_dice = segmenter ? dice / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
    m.val_iou = segmenter ? iou_sum / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
    m.val_auc = binary_metrics(scores, labels, t.threshold).auc;
  };

  const std::vector<int> cycle_ends = schedule.cycle_ends();
  int epochs_this_session = 0;
  for (int epoch = first_epoch; epoch < t.epochs; ++epoch) {
    const auto started = std::chrono::steady_clock::now();
    const bool frozen = epoch < t.optimizer.freeze_encoder_epochs;
    for (auto& p : net->named_parameters())
      if (is_encoder_parameter(p.key())) p.value().set_requires_grad(!frozen);

    // --- training
    net->train();
    data::LoaderOptions train_loader = loader;
    train_loader.epoch = epoch;
    train_loader.transform = transform_of(train_augment);
    // This process's share of each step's batch (all of it on one process).
    const EpochShard shard = shard_epoch(sampler.order(epoch), dp.global_batch,
                                         t.drop_last && sampler.size(epoch) > dp.global_batch, dp.rank, dp.world);
    data::BatchLoader batches(dataset, shard.order, train_loader);
    const int64_t count = batches.batch_count();
    core::Progress progress(fmt::format("epoch {}/{}", epoch + 1, t.epochs), count, core::Progress::Style::kAuto,
                            dp.writer() ? core::Progress::Sink{} : [](const std::string&, bool) {});
    std::optional<GradientAverager> averager;
    if (dp.group) {
      std::vector<torch::Tensor> trainable;
      for (const auto& p : net->parameters())
        if (p.requires_grad()) trainable.push_back(p);
      averager.emplace(*dp.group, trainable, static_cast<int64_t>(t.distributed.bucket_mb * 1024 * 1024));
    }
    double loss_sum = 0.0;
    int64_t seen = 0;
    optimizer->zero_grad();
    for (int64_t i = 0; auto batch = batches.next(); ++i) {
      data::Batch b = batch->to(device);
      device_augment.apply(b.images, b.masks, b.indices, seed, epoch, loader.mean, loader.std);
      const double progress_epochs = epoch + static_cast<double>(i) / static_cast<double>(count);
      const double factor = schedule.factor(t.schedule.per == "step" ? progress_epochs : epoch);
      for (size_t g = 0; g < base_lr.size(); ++g) optimizer->param_groups()[g].options().set_lr(base_lr[g] * factor);
      torch::Tensor loss = compute_loss(run_model(*net, b.images), b, segmenter, t.loss);
      double value = loss.item<double>();
      auto real = static_cast<int64_t>(b.ids.size());
      double step_samples = static_cast<double>(real);
      if (dp.group) {
        // The step's loss over all processes; each share's loss is weighted so that the
        // averaged gradients are those of the whole batch.
        real = shard.real_samples.at(static_cast<size_t>(i));
        const bool finite_here = std::isfinite(value);
        const std::vector<double> sums = dp.group->sum_in_rank_order(
            {finite_here && real > 0 ? value * static_cast<double>(real) : 0.0, static_cast<double>(real),
             finite_here ? 0.0 : 1.0},
            fmt::format("adding up the loss of step {}", step + 1));
        if (sums[2] > 0 && finite_here)
          throw core::ModelError(fmt::format("the loss became NaN or infinite on another process at epoch {}, batch {}; "
                                             "stopped. The last good checkpoint is {}",
                                             epoch + 1, i + 1, (run_path / "last.ckpt").string()));
        if (finite_here) value = sums[0] / sums[1];
        step_samples = sums[1];
        loss = loss * shard.loss_weights.at(static_cast<size_t>(i));
      }
      if (!std::isfinite(value))
        throw core::ModelError(fmt::format(
            "the loss became {} at epoch {}, batch {} (images {}); stopped. The last good checkpoint is {}. "
            "Lower train.optimizer.lr or add train.clip_grad_norm.",
            value, epoch + 1, i + 1, fmt::join(b.ids, ", "), (run_path / "last.ckpt").string()));
      const bool ends_step = (i + 1) % t.accumulate == 0 || i + 1 == count;
      if (averager && ends_step) averager->arm();
      scaler.scale(loss / t.accumulate).backward();
      if (ends_step) {
        if (averager) averager->finish();      // the same averaged gradients on every process
        const bool finite = scaler.unscale(net->parameters());  // always true without mixed precision
        if (t.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(net->parameters(), t.clip_grad_norm);
        if (finite)
          optimizer->step();
        else
          core::log::debug("float16 gradients overflowed at loss scale {}; step skipped", scaler.current_scale());
        scaler.update(finite);
        optimizer->zero_grad();
        ++step;
        if (t.ema > 0 && finite) {
          torch::NoGradGuard no_grad;
          size_t k = 0;
          for (const auto& p : net->parameters()) {
            if (ema.size() <= k)
              ema.push_back(p.detach().clone());
            else
              ema[k].mul_(t.ema).add_(p.detach(), 1.0 - t.ema);
            ++k;
          }
        }
      }
      loss_sum += value * step_samples;
      seen += static_cast<int64_t>(step_samples);
      progress.advance(1, fmt::format("loss {:.4f}", loss_sum / static_cast<double>(seen)));
    }
    progress.finish();
    if (averager)
      core::log::debug("gradient averaging: {} bucket(s), {:.4f} s waiting for communication in this epoch",
                       averager->buckets(), averager->exposed_seconds());
    averager.reset();
    // Per-process BatchNorm statistics: validate and save rank 0's, as PyTorch DDP does.
    if (dp.group && !t.distributed.sync_batchnorm)
      broadcast_from_first(*dp.group, net->buffers(), "sharing BatchNorm statistics");

    // --- validation, at the training resolution
    EpochResult m;
    m.epoch = epoch + 1;
    m.lr = optimizer->param_groups().back().options().get_lr();
    m.train_loss = seen > 0 ? loss_sum / seen : 0.0;
    evaluate(*net, epoch, m);
    m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    rows.push_back(m);
    if (dp.writer()) write_metrics(*writable, rows);
    const double value = monitored(m, t.monitor);
    schedule.on_validation(value);
    core::log::info("epoch {}/{}: train_loss {:.4f}  val_loss {:.4f}  val_dice {}  val_iou {}  val_auc {}  lr {:.2e}  {:.0f} s",
                    m.epoch, t.epochs, m.train_loss, m.val_loss, number(m.val_dice), number(m.val_iou),
                    number(m.val_auc), m.lr, m.seconds);
    Checkpoint checkpoint = make_checkpoint(*net, yaml, epoch + 1, step, m);
    const bool improved = value > summary.best_value;
    if (improved) {
      summary.best_value = value;
      summary.best_epoch = epoch + 1;
      epochs_without_improvement = 0;
    } else {
      ++epochs_without_improvement;
    }
    if (t.swa.start_epoch > 0 && epoch + 1 >= t.swa.start_epoch) {  // the equal running average
      torch::NoGradGuard no_grad;
      size_t i = 0;
      for (const auto& p : net->named_parameters()) {
        if (swa_count == 0)
          swa.push_back(p.value().detach().clone());
        else
          swa[i].add_((p.value().detach() - swa[i]) / static_cast<double>(swa_count + 1));
        ++i;
      }
      ++swa_count;
    }
    // Top-k: this epoch joins when it beats the worst kept one; the one pushed out is deleted
    // after last.ckpt records the new list.
    std::optional<int> dropped;
    bool keep = false;
    if (t.keep_top > 0 && (static_cast<int>(top.size()) < t.keep_top || value > top.back().first)) {
      keep = true;
      top.emplace_back(value, epoch + 1);
      std::stable_sort(top.begin(), top.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
      if (static_cast<int>(top.size()) > t.keep_top) {
        dropped = top.back().second;
        top.pop_back();
      }
    }
    const bool snapshot = std::find(cycle_ends.begin(), cycle_ends.end(), epoch + 1) != cycle_ends.end();
    if (snapshot) snapshots.push_back({epoch + 1, m.val_loss, m.val_dice, m.val_auc});
    const LrSchedule::State plateau = schedule.state();
    checkpoint.state = models::pickle_dict({
        {"optimizer", models::pickle_tensor(bytes_tensor(optimizer_bytes(*optimizer)))},
        {"rng_cpu", models::pickle_tensor(generator_state(at::detail::getDefaultCPUGenerator()))},
        {"rng_cuda", cuda_rng_states()},
        {"scaler_scale", models::pickle_float(scaler.current_scale())},
        {"scaler_growth_tracker", models::pickle_int(scaler.growth_tracker())},
        {"plateau_factor", models::pickle_float(plateau.factor)},
        {"plateau_best", models::pickle_float(plateau.best)},
        {"plateau_bad_epochs", models::pickle_int(plateau.bad_epochs)},
        {"best_value", models::pickle_float(summary.best_value)},
        {"best_epoch", models::pickle_int(summary.best_epoch)},
        {"stale_epochs", models::pickle_int(epochs_without_improvement)},
        {"metrics", metrics_rows(rows)},
        {"snapshots", snapshot_list(snapshots)},
        {"swa_count", models::pickle_int(swa_count)},
        {"swa", tensor_list(swa)},
        {"ema", tensor_list(ema)},
        {"top", models::pickle_list([&] {
           std::vector<models::PickleRef> items;
           for (const auto& [v, e] : top) items.push_back(models::pickle_list({models::pickle_float(v), models::pickle_int(e)}));
           return items;
         }())},
    });
    // best before last: an interruption between the two resumes from the previous last.ckpt,
    // which repeats this epoch and rewrites both.
    if (dp.writer()) {
      const core::RunDirectory& run = *writable;
      if (improved) write_checkpoint(run.file("best.ckpt"), checkpoint);
      if (snapshot) write_checkpoint(run.file(snapshot_name(epoch + 1)), checkpoint);
      if (keep) write_checkpoint(run.file(fmt::format("top-{:03d}.ckpt", epoch + 1)), checkpoint);
      write_checkpoint(run.file("last.ckpt"), checkpoint);
      if (dropped) {
        std::error_code ec;
        fs::remove(run.file(fmt::format("top-{:03d}.ckpt", *dropped)), ec);
      }
      if (snapshot) write_manifest(run, snapshots, std::nullopt);
    }
    summary.epochs_run = epoch + 1;
    if (!improved && t.early_stopping > 0 && epochs_without_improvement >= t.early_stopping) {
      summary.stopped_early = true;
      core::log::info("early stopping: {} epochs without a better {}", t.early_stopping, t.monitor);
      break;
    }
    if (options.stop_after_epochs > 0 && ++epochs_this_session >= options.stop_after_epochs && epoch + 1 < t.epochs) {
      core::log::info("stopping after {} epoch(s) as asked; continue with: pneumo train --resume {}",
                      options.stop_after_epochs, run_path.string());
      break;
    }
  }
  const bool finished = summary.epochs_run >= t.epochs || summary.stopped_early;
  if (swa_count > 0 && finished) {
    // The averaged weights, BatchNorm statistics recomputed over the training images (without
    // augmentation), then the usual validation.
    std::shared_ptr<models::Network> averaged = network_with(config.model, *net, swa, device, channels_last);
    recompute_batchnorm(*averaged, dataset, split.train, loader, device);
    EpochResult m;
    m.epoch = summary.epochs_run;
    evaluate(*averaged, summary.epochs_run, m);
    if (dp.writer()) {
      write_checkpoint(writable->file("swa.ckpt"), make_checkpoint(*averaged, yaml, summary.epochs_run, step, m));
      write_manifest(*writable, snapshots, m);
    }
    core::log::info("SWA over {} epochs: val_loss {:.4f}  val_dice {}  val_auc {} (swa.ckpt)", swa_count, m.val_loss,
                    number(m.val_dice), number(m.val_auc));
  }
  if (!ema.empty() && finished) {
    // The moving average with the training model's BatchNorm statistics, validated as is.
    std::shared_ptr<models::Network> averaged = network_with(config.model, *net, ema, device, channels_last);
    EpochResult m;
    m.epoch = summary.epochs_run;
    evaluate(*averaged, summary.epochs_run, m);
    if (dp.writer())
      write_checkpoint(writable->file("ema.ckpt"), make_checkpoint(*averaged, yaml, summary.epochs_run, step, m));
    core::log::info("EMA (decay {}): val_loss {:.4f}  val_dice {}  val_auc {} (ema.ckpt)", t.ema, m.val_loss,
                    number(m.val_dice), number(m.val_auc));
  }
  if (t.monitor == "val_loss") summary.best_value = -summary.best_value;
  summary.epochs = rows;
  core::log::info("best {} {:.4f} at epoch {}; checkpoints in {}", t.monitor, summary.best_value, summary.best_epoch,
                  run_path.string());
  if (dp.group) dp.group->barrier("finishing the run");
  return summary;
}

}  // namespace pneumo::train
