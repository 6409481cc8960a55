// The training run: a Trainer sets the run up from the experiment, then loops over epochs. Its
// parts: DataParallel (the process group and batch split), Forward (autocast forward pass and
// loss), Validator, CheckpointPolicy (best / top-k / snapshots / SWA / EMA), and the
// TrainingState value that everything which must survive a resume lives in (checkpoint.h).
#include "pneumo/train/trainer.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include "checkpoint_policy.h"
#include "data_parallel.h"
#include "forward.h"
#include "run_records.h"
#include "runtime_state.h"
#include "validator.h"
#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/core/progress.h"
#include "pneumo/core/run_dir.h"
#include "pneumo/core/runtime.h"
#include "pneumo/data/folds.h"
#include "pneumo/data/input_gate.h"
#include "pneumo/models/batch_norm.h"
#include "pneumo/train/average.h"
#include "pneumo/train/schedule.h"

namespace pneumo::train {

namespace fs = std::filesystem;

namespace {

data::SampleTransform transform_of(const augment::Pipeline& p) {
  if (p.empty()) return {};
  return [&p](data::Sample& s, core::Rng& rng) {
    try {
      p.apply(s.image, s.mask, rng);
    } catch (const core::DataError& e) {
      throw core::DataError(fmt::format("{}: augmentation: {}", s.image_id, e.what()));
    }
  };
}

// A fresh network for `section` holding `parameters` (in named_parameters order) and the
// buffers (BatchNorm statistics) of `source`: the SWA and EMA members.
std::shared_ptr<models::Network> network_with(const models::ModelSection& section, models::Network& source,
                                              const std::vector<torch::Tensor>& parameters, const c10::Device& device,
                                              bool channels_last) {
  std::shared_ptr<models::Network> net = models::build_model(section);
  net->to(device);
  if (channels_last) models::use_channels_last(*net);
  torch::NoGradGuard no_grad;
  size_t i = 0;
  for (auto& p : net->parameters()) p.copy_(parameters[i++].to(device));
  auto buffers = source.named_buffers();
  for (auto& b : net->named_buffers()) b.value().copy_(buffers[b.key()]);
  return net;
}

// The checks that need the built network; before anything is written.
void check_fits(const ExperimentConfig& config, const models::Network& net) {
  const TrainSection& t = config.train;
  if (!net.is_segmenter() && (t.monitor == "val_dice" || t.monitor == "val_iou"))
    throw core::ConfigError(fmt::format("train.monitor: {} needs a segmenter; use val_auc or val_loss for the classifier",
                                        t.monitor));
  if (config.model.encoder.in_channels != config.data.channels)
    throw core::ConfigError(fmt::format("model.encoder.in_channels ({}) must equal data.channels ({})",
                                        config.model.encoder.in_channels, config.data.channels));
}

// The checks that need the opened data: a class table trains a classifier with one logit per
// class; masks train a segmenter, or the classifier's pneumothorax logit.
void check_data_fits(const ExperimentConfig& config, const models::Network& net, const data::Dataset& dataset) {
  const auto classes = static_cast<int64_t>(dataset.classes().size());
  if (!dataset.has_masks() && net.is_segmenter())
    throw core::ConfigError(fmt::format("model.name: {} is a segmenter, but data.table ({}) holds image-level classes "
                                        "only; give data.labels or data.masks, or train the classifier",
                                        config.model.name, config.data.table));
  if (net.is_segmenter()) return;
  if (classes > 0 && config.model.classes != classes)
    throw core::ConfigError(fmt::format("model.classes: {}; expected {}, one logit per class of data.classes ({})",
                                        config.model.classes, classes, fmt::join(dataset.classes(), ", ")));
  if (classes == 0 && config.model.classes != 1 && config.model.classes != 14)
    throw core::ConfigError(fmt::format("model.classes: {}; with masks (data.labels or data.masks) the classifier "
                                        "trains its pneumothorax logit: expected 1, or 14 (CheXNet's head, logit 7)",
                                        config.model.classes));
  const LossSection& loss = config.train.loss;
  if (loss.class_balance != "none" && !loss.class_weights.empty())
    throw core::ConfigError("train.loss.class_balance: chexnet computes the class weights; set train.loss.class_weights "
                            "to [] or class_balance to none");
  const int64_t expected = std::max<int64_t>(classes, 1);
  if (!loss.class_weights.empty() && static_cast<int64_t>(loss.class_weights.size()) != expected)
    throw core::ConfigError(fmt::format("train.loss.class_weights: {} values; expected {} (one per class)",
                                        loss.class_weights.size(), expected));
}

// CheXNet's weighting: each class's positives weigh |N|/|P| over the training images' known
// targets (the pneumothorax label without a class table).
std::vector<double> balanced_class_weights(const data::DatasetIndex& index, const std::vector<int64_t>& train) {
  const size_t classes = std::max<size_t>(index.entries.front().targets.size(), 1);
  std::vector<double> positives(classes, 0), negatives(classes, 0);
  for (int64_t i : train) {
    const data::IndexEntry& e = index.entries[static_cast<size_t>(i)];
    for (size_t c = 0; c < classes; ++c) {
      const float t = e.targets.empty() ? (e.positive ? 1.0f : 0.0f) : e.targets[c];
      positives[c] += t == 1.0f ? 1 : 0;
      negatives[c] += t == 0.0f ? 1 : 0;
    }
  }
  std::vector<double> weights;
  for (size_t c = 0; c < classes; ++c) weights.push_back(positives[c] > 0 ? negatives[c] / positives[c] : 1.0);
  return weights;
}

// The data section is checked first, before anything else can fail or be written.
const ExperimentConfig& validated(const ExperimentConfig& config) {
  data::validate(config.data);
  return config;
}

class Trainer {
 public:
  Trainer(const ExperimentConfig& config, const TrainOptions& options);
  TrainSummary run();

 private:
  void open_run_folder();
  void split_data();
  void prepare_model();
  void prepare_loading();
  void restore(const Checkpoint& checkpoint);
  double train_epoch(int epoch);
  void check_step_loss(double value, int epoch, int64_t batch, const data::Batch& b) const;
  void optimizer_step();
  bool end_epoch(EpochResult result);
  void capture_state();
  void finish_members();
  TrainSummary summary() const;

  const ExperimentConfig& config_;
  const TrainSection& train_;
  const TrainOptions& options_;
  const uint64_t seed_;
  std::optional<Checkpoint> resume_from_;
  fs::path resume_file_;
  DataParallel parallel_;
  c10::Device device_{c10::kCPU};
  augment::Pipeline train_augment_, val_augment_;
  augment::BatchPipeline device_augment_;
  std::shared_ptr<models::Network> net_;
  bool segmenter_ = true;
  std::optional<data::Dataset> dataset_;
  std::optional<core::RunDirectory> run_dir_;  // rank 0 only
  std::string config_yaml_;
  fs::path run_path_;
  data::FoldSplit split_;
  std::optional<data::EpochSampler> sampler_;
  Forward forward_;
  std::optional<GradScaler> scaler_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  std::vector<double> base_lr_;
  std::optional<LrSchedule> schedule_;
  data::LoaderOptions loader_;
  std::optional<Validator> validator_;
  std::optional<CheckpointPolicy> policy_;
  TrainingState state_;
  bool stopped_early_ = false;
};

// Everything that can be refused is checked before the run folder exists; the order of the
// steps keeps the random draws (initial weights, folds) those of every earlier pneumo.
Trainer::Trainer(const ExperimentConfig& config, const TrainOptions& options)
    : config_(config),
      train_(config.train),
      options_(options),
      seed_(static_cast<uint64_t>(config.experiment.seed)),
      parallel_(validated(config).train, options.placement.world_size) {
  if (!options.resume.empty()) {
    auto [checkpoint, file] = resume_checkpoint(options.resume);  // before touching anything
    resume_from_ = std::move(checkpoint);
    resume_file_ = std::move(file);
  }
  device_ = core::activate_runtime(config.runtime, seed_);  // seeds first: the initial weights depend on them
  if (options.placement.distributed()) device_ = parallel_.join(config, options.placement, device_);
  train_augment_ = config.augment.train_pipeline();
  val_augment_ = config.augment.validation_pipeline();
  device_augment_ = config.augment.device_pipeline();
  net_ = models::build_model(config.model);
  segmenter_ = net_->is_segmenter();
  check_fits(config, *net_);
  dataset_.emplace(data::open_dataset(config.data));
  check_data_fits(config, *net_, *dataset_);
  open_run_folder();
  split_data();
  prepare_model();
  prepare_loading();
  state_.best_value = -std::numeric_limits<double>::infinity();
  policy_.emplace(train_, run_dir_ ? &*run_dir_ : nullptr, config_yaml_, schedule_->cycle_ends());
}

// Only rank 0 writes the run folder (the other processes may not even see it).
void Trainer::open_run_folder() {
  const bool resuming = resume_from_.has_value();
  ExperimentConfig recorded = config_;
  recorded.data.classes = dataset_->classes();  // the resolved class order, for evaluate and predict
  // What the model is trained on, for the input gate of predict, serve and pacs.
  std::vector<int64_t> all(dataset_->index().entries.size());
  std::iota(all.begin(), all.end(), 0);
  data::record_training_inputs(recorded.gate, dataset_->index(), all, core::hardware_threads());
  config_yaml_ = experiment_to_yaml(recorded);
  if (parallel_.writer()) {
    const core::ExperimentSection& e = config_.experiment;
    run_dir_ = resuming                  ? core::RunDirectory::open(options_.resume)
               : !options_.folder.empty() ? core::RunDirectory::create_at(options_.folder, options_.overwrite)
                                          : core::RunDirectory::create(e.output_dir, e.name, e.run_name, options_.overwrite);
    if (resuming) {
      core::open_log_file(run_dir_->log_file());
      if (const int removed = run_dir_->remove_interrupted_writes())
        core::log::info("removed {} partial file(s) of writes interrupted when the run stopped", removed);
    } else {
      run_dir_->start(config_yaml_);
    }
  }
  run_path_ = parallel_.distributed()
                  ? fs::path(parallel_.group().broadcast(parallel_.writer() ? run_dir_->path().string() : "",
                                                         "sharing the run folder's name"))
                  : run_dir_->path();
  core::log::info("run {}: {} on {}{}", run_path_.string(), config_.model.name, device_.str(),
                  resuming ? fmt::format(", resuming after epoch {}", resume_from_->epoch) : "");
  if (parallel_.distributed())
    core::log::info("data-parallel: {} processes ({}), {} images per step, {} per process; BatchNorm {}; learning "
                    "rate x{:.3g}",
                    parallel_.world(), parallel_.group().backend(), parallel_.global_batch(), parallel_.process_batch(),
                    train_.distributed.sync_batchnorm ? "synchronised" : "per process", parallel_.lr_factor());
}

void Trainer::split_data() {
  const data::DatasetIndex& index = dataset_->index();
  const std::vector<int> folds = data::assign_folds(config_.data, index, seed_);
  if (parallel_.writer()) data::write_folds_csv(run_dir_->file("folds.csv"), index, folds);
  split_ = data::split_by_fold(folds, config_.data.fold);
  if (split_.train.empty() || split_.validation.empty())
    throw core::DataError(fmt::format("fold {} leaves {} training and {} validation images", config_.data.fold,
                                      split_.train.size(), split_.validation.size()));
  std::vector<bool> positive;
  for (int64_t i : split_.train) positive.push_back(index.entries[i].positive);
  sampler_.emplace(split_.train, positive, data::negative_share_schedule(config_.data), seed_);
  core::log::info("data: {} training, {} validation images ({} positive in training)", split_.train.size(),
                  split_.validation.size(), std::count(positive.begin(), positive.end(), true));
  forward_.class_weights = train_.loss.class_balance == "chexnet" ? balanced_class_weights(index, split_.train)
                                                                  : train_.loss.class_weights;
  if (train_.loss.class_balance == "chexnet")
    core::log::info("class weights |N|/|P|: {:.3g}", fmt::join(forward_.class_weights, ", "));
}

// Device, memory format, mixed precision, synchronised BatchNorm, optimiser and schedule.
void Trainer::prepare_model() {
  net_->to(device_);
  const std::string& memory_order = config_.runtime.channels_last;
  forward_.channels_last = core::resolve_channels_last(memory_order, device_, net_->is_segmenter());
  if (forward_.channels_last) models::use_channels_last(*net_);
  core::log::info("memory order: {} (runtime.channels_last: {}{})", forward_.channels_last ? "NHWC" : "NCHW", memory_order,
                  memory_order == "auto" && device_.is_cpu() ? "; CPU kernels " + core::cpu_kernel_isa() : "");
  forward_.precision = mixed_precision_for(config_.runtime, device_);
  if (forward_.precision.enabled) core::log::info("computing in {}", forward_.precision.str());
  scaler_.emplace(forward_.precision.needs_loss_scaling());
  if (parallel_.distributed() && train_.distributed.sync_batchnorm)
    models::synchronise_batchnorm(*net_, [group = &parallel_.group()](torch::Tensor& x) {
      group->sum(x, "synchronised BatchNorm statistics");
    }, parallel_.rank(), parallel_.world());
  optimizer_ = make_optimizer(train_.optimizer, *net_);
  for (auto& g : optimizer_->param_groups()) base_lr_.push_back(g.options().get_lr() * parallel_.lr_factor());
  schedule_.emplace(train_.schedule, train_.epochs);
}

void Trainer::prepare_loading() {
  const core::ThreadPlan threads =
      core::plan_threads(core::hardware_threads(), options_.placement.local_world_size, device_.is_cuda());
  loader_ = data::loader_options(config_.data, threads.loader_workers);
  core::log::debug("{} loader thread(s), {} LibTorch intra-op thread(s)", loader_.workers, at::get_num_threads());
  loader_.batch_size = parallel_.process_batch();
  loader_.seed = seed_;
  loader_.pin_memory = device_.is_cuda();
  data::LoaderOptions validation = loader_;
  validation.transform = transform_of(val_augment_);
  validator_.emplace(*dataset_, split_.validation, validation, device_, forward_, train_, segmenter_, &parallel_);
}

void Trainer::restore(const Checkpoint& c) {
  models::load_weights(*net_, c.model, true, resume_file_.string());
  state_ = TrainingState::from_checkpoint(c, resume_file_.string());
  restore_optimizer(*optimizer_, state_.optimizer);
  restore_random_state(state_);
  if (state_.has_scaler) scaler_->restore(state_.scaler_scale, state_.scaler_growth_tracker);
  schedule_->restore({state_.plateau_factor, state_.plateau_best, state_.plateau_bad_epochs});
  for (auto* list : {&state_.swa, &state_.ema})
    for (torch::Tensor& t : *list) t = t.to(device_);
}

TrainSummary Trainer::run() {
  if (resume_from_) {
    restore(*resume_from_);
    if (state_.epoch >= train_.epochs) {
      core::log::info("the run already finished its {} epochs", train_.epochs);
      return summary();
    }
  }
  // Every process starts from rank 0's weights (they agree already; this makes sure).
  if (parallel_.distributed()) {
    parallel_.broadcast_from_first(net_->parameters(), "sharing the initial weights");
    parallel_.broadcast_from_first(net_->buffers(), "sharing the initial BatchNorm statistics");
  }
  int epochs_this_session = 0;
  for (auto epoch = static_cast<int>(state_.epoch); epoch < train_.epochs; ++epoch) {
    const auto started = std::chrono::steady_clock::now();
    EpochResult result;
    result.epoch = epoch + 1;
    result.train_loss = train_epoch(epoch);
    result.lr = optimizer_->param_groups().back().options().get_lr();
    validator_->validate(*net_, epoch, result);
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (end_epoch(result)) break;
    if (options_.stop_after_epochs > 0 && ++epochs_this_session >= options_.stop_after_epochs && epoch + 1 < train_.epochs) {
      core::log::info("stopping after {} epoch(s) as asked; continue with: pneumo train --resume {}",
                      options_.stop_after_epochs, run_path_.string());
      break;
    }
  }
  if (state_.epoch >= train_.epochs || stopped_early_) finish_members();
  TrainSummary s = summary();
  core::log::info("best {} {:.4f} at epoch {}; checkpoints in {}", train_.monitor, s.best_value, s.best_epoch,
                  run_path_.string());
  if (parallel_.distributed()) parallel_.group().barrier("finishing the run");
  return s;
}

// One pass over this epoch's share of the training images; returns the mean loss.
double Trainer::train_epoch(int epoch) {
  const bool frozen = epoch < train_.optimizer.freeze_encoder_epochs;
  for (torch::Tensor& p : net_->encoder_parameters()) p.set_requires_grad(!frozen);
  net_->train();
  data::LoaderOptions options = loader_;
  options.epoch = epoch;
  options.transform = transform_of(train_augment_);
  // This process's share of each step's batch (all of it on one process).
  const int64_t global_batch = parallel_.global_batch();
  const EpochShard shard = shard_epoch(sampler_->order(epoch), global_batch,
                                       train_.drop_last && sampler_->size(epoch) > global_batch, parallel_.rank(),
                                       parallel_.world());
  data::BatchLoader batches(*dataset_, shard.order, options);
  const int64_t count = batches.batch_count();
  core::Progress progress(fmt::format("epoch {}/{}", epoch + 1, train_.epochs), count, core::Progress::Style::kAuto,
                          parallel_.writer() ? core::Progress::Sink{} : [](const std::string&, bool) {});
  std::optional<GradientAverager> averager;
  if (parallel_.distributed()) {
    std::vector<torch::Tensor> trainable;
    for (const auto& p : net_->parameters())
      if (p.requires_grad()) trainable.push_back(p);
    averager.emplace(parallel_.group(), trainable, static_cast<int64_t>(train_.distributed.bucket_mb * 1024 * 1024));
  }
  double loss_sum = 0.0;
  int64_t seen = 0;
  optimizer_->zero_grad();
  for (int64_t i = 0; auto batch = batches.next(); ++i) {
    data::Batch b = batch->to(device_);
    device_augment_.apply(b.images, b.masks, b.indices, seed_, epoch, loader_.mean, loader_.std);
    const double progress_epochs = epoch + static_cast<double>(i) / static_cast<double>(count);
    const double factor = schedule_->factor(train_.schedule.per == "step" ? progress_epochs : epoch);
    for (size_t g = 0; g < base_lr_.size(); ++g) optimizer_->param_groups()[g].options().set_lr(base_lr_[g] * factor);
    torch::Tensor loss = experiment_loss(forward_(*net_, b.images), b, segmenter_, train_.loss, forward_.class_weights);
    double value = loss.item<double>();
    double step_samples = static_cast<double>(b.ids.size());
    if (parallel_.distributed()) {
      // The step's loss over all processes; each share's loss is weighted so that the
      // averaged gradients are those of the whole batch.
      const int64_t real = shard.real_samples.at(static_cast<size_t>(i));
      const bool finite_here = std::isfinite(value);
      const std::vector<double> sums = parallel_.group().sum_in_rank_order(
          {finite_here && real > 0 ? value * static_cast<double>(real) : 0.0, static_cast<double>(real),
           finite_here ? 0.0 : 1.0},
          fmt::format("adding up the loss of step {}", state_.step + 1));
      if (sums[2] > 0 && finite_here)
        throw core::ModelError(fmt::format("the loss became NaN or infinite on another process at epoch {}, batch {}; "
                                           "stopped. The last good checkpoint is {}",
                                           epoch + 1, i + 1, (run_path_ / "last.ckpt").string()));
      if (finite_here) value = sums[0] / sums[1];
      step_samples = sums[1];
      loss = loss * shard.loss_weights.at(static_cast<size_t>(i));
    }
    check_step_loss(value, epoch, i, b);
    const bool ends_step = (i + 1) % train_.accumulate == 0 || i + 1 == count;
    if (averager && ends_step) averager->arm();
    scaler_->scale(loss / train_.accumulate).backward();
    if (ends_step) {
      if (averager) averager->finish();  // the same averaged gradients on every process
      optimizer_step();
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
  if (parallel_.distributed() && !train_.distributed.sync_batchnorm)
    parallel_.broadcast_from_first(net_->buffers(), "sharing BatchNorm statistics");
  return seen > 0 ? loss_sum / static_cast<double>(seen) : 0.0;
}

void Trainer::check_step_loss(double value, int epoch, int64_t batch, const data::Batch& b) const {
  if (std::isfinite(value)) return;
  throw core::ModelError(fmt::format(
      "the loss became {} at epoch {}, batch {} (images {}); stopped. The last good checkpoint is {}. "
      "Lower train.optimizer.lr or add train.clip_grad_norm.",
      value, epoch + 1, batch + 1, fmt::join(b.ids, ", "), (run_path_ / "last.ckpt").string()));
}

// Unscale (mixed precision), clip, step unless float16 gradients overflowed, then the EMA.
void Trainer::optimizer_step() {
  const bool finite = scaler_->unscale(net_->parameters());  // always true without mixed precision
  if (train_.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(net_->parameters(), train_.clip_grad_norm);
  if (finite)
    optimizer_->step();
  else
    core::log::debug("float16 gradients overflowed at loss scale {}; step skipped", scaler_->current_scale());
  scaler_->update(finite);
  optimizer_->zero_grad();
  ++state_.step;
  if (finite) policy_->after_step(state_, *net_);
}

// Records the validated epoch, steps the schedule, writes the checkpoints; returns whether
// early stopping ends the run.
bool Trainer::end_epoch(EpochResult result) {
  state_.history.push_back(result);
  if (parallel_.writer()) write_metrics(*run_dir_, state_.history, dataset_->classes());
  const double value = monitored_value(result, train_.monitor);
  schedule_->on_validation(value);
  log_epoch(result, train_.epochs, dataset_->classes());
  state_.epoch = result.epoch;
  capture_state();
  const bool improved = policy_->after_epoch(state_, *net_, result, value);
  if (!improved && policy_->stop_early(state_)) {
    stopped_early_ = true;
    core::log::info("early stopping: {} epochs without a better {}", train_.early_stopping, train_.monitor);
    return true;
  }
  return false;
}

// The state held in LibTorch objects and the schedule, as of now.
void Trainer::capture_state() {
  state_.optimizer = optimizer_bytes(*optimizer_);
  capture_random_state(state_);
  state_.has_scaler = true;
  state_.scaler_scale = scaler_->current_scale();
  state_.scaler_growth_tracker = scaler_->growth_tracker();
  const LrSchedule::State plateau = schedule_->state();
  state_.plateau_factor = plateau.factor;
  state_.plateau_best = plateau.best;
  state_.plateau_bad_epochs = plateau.bad_epochs;
}

// At the end of a run: the SWA average (BatchNorm statistics recomputed over the training
// images, without augmentation) and the EMA (with the training model's statistics), each
// validated and saved.
void Trainer::finish_members() {
  const auto epoch = static_cast<int>(state_.epoch);
  if (state_.swa_count > 0) {
    auto averaged = network_with(config_.model, *net_, state_.swa, device_, forward_.channels_last);
    recompute_batchnorm(*averaged, *dataset_, split_.train, loader_, device_);
    EpochResult m;
    m.epoch = epoch;
    validator_->validate(*averaged, epoch, m);
    policy_->write_member("swa.ckpt", *averaged, state_, m, /*in_manifest=*/true);
    core::log::info("SWA over {} epochs: val_loss {:.4f}  val_dice {}  val_auc {} (swa.ckpt)", state_.swa_count,
                    m.val_loss, metric_text(m.val_dice), metric_text(m.val_auc));
  }
  if (!state_.ema.empty()) {
    auto averaged = network_with(config_.model, *net_, state_.ema, device_, forward_.channels_last);
    EpochResult m;
    m.epoch = epoch;
    validator_->validate(*averaged, epoch, m);
    policy_->write_member("ema.ckpt", *averaged, state_, m, /*in_manifest=*/false);
    core::log::info("EMA (decay {}): val_loss {:.4f}  val_dice {}  val_auc {} (ema.ckpt)", train_.ema, m.val_loss,
                    metric_text(m.val_dice), metric_text(m.val_auc));
  }
}

TrainSummary Trainer::summary() const {
  TrainSummary s;
  s.run = run_path_;
  s.epochs_run = static_cast<int>(state_.epoch);
  s.monitor = train_.monitor;
  s.best_value = train_.monitor == "val_loss" ? -state_.best_value : state_.best_value;
  s.best_epoch = state_.best_epoch;
  s.stopped_early = stopped_early_;
  s.epochs = state_.history;
  return s;
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
  return Trainer(config, options).run();
}

}  // namespace pneumo::train
