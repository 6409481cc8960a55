#include "checkpoint_policy.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <torch/torch.h>

#include "run_records.h"

namespace pneumo::train {

namespace fs = std::filesystem;

double monitored_value(const EpochResult& m, const std::string& monitor) {
  if (monitor == "val_dice") return m.val_dice;
  if (monitor == "val_iou") return m.val_iou;
  if (monitor == "val_auc") return std::isnan(m.val_auc) ? -1.0 : m.val_auc;
  return -m.val_loss;  // val_loss: lower is better
}

CheckpointPolicy::CheckpointPolicy(const TrainSection& train, const core::RunDirectory* run, std::string config_yaml,
                                   std::vector<int> cycle_ends)
    : train_(train), run_(run), config_yaml_(std::move(config_yaml)), cycle_ends_(std::move(cycle_ends)) {}

void CheckpointPolicy::after_step(TrainingState& state, models::Network& net) const {
  if (train_.ema <= 0) return;
  torch::NoGradGuard no_grad;
  size_t k = 0;
  for (const auto& p : net.parameters()) {
    if (state.ema.size() <= k)
      state.ema.push_back(p.detach().clone());
    else
      state.ema[k].mul_(train_.ema).add_(p.detach(), 1.0 - train_.ema);
    ++k;
  }
}

bool CheckpointPolicy::after_epoch(TrainingState& state, models::Network& net, const EpochResult& m,
                                   double value) const {
  const int epoch = m.epoch;
  const bool improved = value > state.best_value;
  if (improved) {
    state.best_value = value;
    state.best_epoch = epoch;
    state.stale_epochs = 0;
  } else {
    ++state.stale_epochs;
  }
  if (train_.swa.start_epoch > 0 && epoch >= train_.swa.start_epoch) update_swa(state, net);
  int dropped = 0;
  const bool keep = join_top(state, epoch, value, dropped);
  const bool snapshot = std::find(cycle_ends_.begin(), cycle_ends_.end(), epoch) != cycle_ends_.end();
  if (snapshot) state.snapshots.push_back({epoch, m.val_loss, m.val_dice, m.val_auc});
  if (!run_) return improved;
  Checkpoint checkpoint = checkpoint_of(net, m);
  state.to_checkpoint(checkpoint);
  if (improved) write_checkpoint(run_->file("best.ckpt"), checkpoint);
  if (snapshot) write_checkpoint(run_->file(fmt::format("snapshot-{:03d}.ckpt", epoch)), checkpoint);
  if (keep) write_checkpoint(run_->file(fmt::format("top-{:03d}.ckpt", epoch)), checkpoint);
  write_checkpoint(run_->file("last.ckpt"), checkpoint);
  if (dropped > 0) {  // deleted only once last.ckpt records the new list
    std::error_code ec;
    fs::remove(run_->file(fmt::format("top-{:03d}.ckpt", dropped)), ec);
  }
  if (snapshot) write_manifest(*run_, state.snapshots, std::nullopt);
  return improved;
}

bool CheckpointPolicy::stop_early(const TrainingState& state) const {
  return train_.early_stopping > 0 && state.stale_epochs >= train_.early_stopping;
}

void CheckpointPolicy::write_member(const std::string& file, models::Network& net, const TrainingState& state,
                                    const EpochResult& result, bool in_manifest) const {
  if (!run_) return;
  Checkpoint checkpoint = checkpoint_of(net, result);
  checkpoint.epoch = state.epoch;
  checkpoint.step = state.step;
  write_checkpoint(run_->file(file), checkpoint);
  if (in_manifest) write_manifest(*run_, state.snapshots, result);
}

Checkpoint CheckpointPolicy::checkpoint_of(models::Network& net, const EpochResult& result) const {
  Checkpoint c;
  c.config_yaml = config_yaml_;
  for (const auto& p : net.named_parameters()) c.model.emplace_back(p.key(), p.value());
  for (const auto& b : net.named_buffers()) c.model.emplace_back(b.key(), b.value());
  c.metrics = checkpoint_metrics(result);
  return c;
}

// This epoch joins when it beats the worst kept one.
bool CheckpointPolicy::join_top(TrainingState& state, int epoch, double value, int& dropped) const {
  const auto k = static_cast<size_t>(train_.keep_top);
  if (k == 0 || (state.top.size() >= k && value <= state.top.back().value)) return false;
  state.top.push_back({value, epoch});
  std::stable_sort(state.top.begin(), state.top.end(), [](const TopEntry& a, const TopEntry& b) { return a.value > b.value; });
  if (state.top.size() > k) {
    dropped = state.top.back().epoch;
    state.top.pop_back();
  }
  return true;
}

// The equal running average of the weights of every epoch since train.swa.start_epoch.
void CheckpointPolicy::update_swa(TrainingState& state, models::Network& net) const {
  torch::NoGradGuard no_grad;
  size_t i = 0;
  for (const auto& p : net.named_parameters()) {
    if (state.swa_count == 0)
      state.swa.push_back(p.value().detach().clone());
    else
      state.swa[i].add_((p.value().detach() - state.swa[i]) / static_cast<double>(state.swa_count + 1));
    ++i;
  }
  ++state.swa_count;
}

}  // namespace pneumo::train
