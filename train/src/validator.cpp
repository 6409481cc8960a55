#include "validator.h"

#include <limits>

#include <torch/torch.h>

#include "data_parallel.h"
#include "pneumo/train/metrics.h"

namespace pneumo::train {

Validator::Validator(const data::Dataset& dataset, std::vector<int64_t> indices, data::LoaderOptions loader,
                     c10::Device device, Forward forward, const TrainSection& train, bool segmenter,
                     DataParallel* parallel)
    : dataset_(dataset),
      indices_(parallel && parallel->distributed() ? shard_evenly(indices, parallel->rank(), parallel->world())
                                                   : std::move(indices)),
      loader_(std::move(loader)),
      device_(device),
      forward_(forward),
      train_(train),
      segmenter_(segmenter),
      parallel_(parallel && parallel->distributed() ? parallel : nullptr) {}

void Validator::validate(models::Network& model, int epoch, EpochResult& m) const {
  model.eval();
  torch::NoGradGuard no_grad;
  data::LoaderOptions options = loader_;
  options.epoch = epoch;
  data::BatchLoader batches(dataset_, indices_, options);
  Sums sums;
  while (auto batch = batches.next()) add_batch(model, batch->to(device_), sums);
  if (parallel_) add_up_processes(sums);
  const auto n = static_cast<double>(sums.images);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  m.val_loss = sums.loss / n;
  m.val_dice = segmenter_ ? sums.dice / n : nan;
  m.val_iou = segmenter_ ? sums.iou / n : nan;
  if (dataset_.classes().empty()) {
    m.val_auc = binary_metrics(sums.scores, sums.labels, train_.threshold).auc;
    return;
  }
  const ClassAucs aucs = class_aucs(sums.class_scores, sums.class_targets, dataset_.classes().size());
  m.val_auc = aucs.mean;
  m.val_class_auc = aucs.per_class;
}

// [N, ...] batch -> the loss, Dice and IoU summed over its images, and one score per image.
void Validator::add_batch(models::Network& model, const data::Batch& b, Sums& sums) const {
  const models::ModelOutput out = forward_(model, b.images);
  const auto count = static_cast<int64_t>(b.ids.size());
  sums.loss += experiment_loss(out, b, segmenter_, train_.loss, forward_.class_weights).item<double>() * static_cast<double>(count);
  sums.images += count;
  if (b.targets.defined() && !segmenter_) {
    const torch::Tensor probs = torch::sigmoid(out.logits).to(torch::kCPU, torch::kFloat64).contiguous();
    const torch::Tensor targets = b.targets.to(torch::kCPU).contiguous();
    sums.class_scores.insert(sums.class_scores.end(), probs.data_ptr<double>(), probs.data_ptr<double>() + probs.numel());
    sums.class_targets.insert(sums.class_targets.end(), targets.data_ptr<float>(),
                              targets.data_ptr<float>() + targets.numel());
    return;
  }
  torch::Tensor score = models::pneumothorax_logit(out, segmenter_);
  if (segmenter_) {
    const torch::Tensor probs = torch::sigmoid(out.masks.select(1, 0));
    const torch::Tensor predicted = probs > train_.threshold, truth = b.masks.select(1, 0) > 0.5;
    sums.dice += kaggle_dice(predicted.cpu(), truth.cpu()).sum().item<double>();
    sums.iou += iou(predicted.cpu(), truth.cpu()).sum().item<double>();
    score = score.defined() ? torch::sigmoid(score) : probs.flatten(1).amax(1);  // else the most confident pixel
  } else {
    score = torch::sigmoid(score);
  }
  const torch::Tensor s = score.to(torch::kCPU, torch::kFloat64).contiguous();
  for (int64_t j = 0; j < s.numel(); ++j) {
    sums.scores.push_back(s[j].item<double>());
    sums.labels.push_back(b.labels[j].item<float>() > 0.5f ? 1 : 0);
  }
}

// Each process validated its share: add them up, gather the scores in rank order.
void Validator::add_up_processes(Sums& sums) const {
  ProcessGroup& group = parallel_->group();
  const std::vector<double> totals = group.sum_in_rank_order(
      {sums.loss, sums.dice, sums.iou, static_cast<double>(sums.images)}, "adding up the validation metrics");
  sums.loss = totals[0];
  sums.dice = totals[1];
  sums.iou = totals[2];
  sums.images = static_cast<int64_t>(totals[3]);
  if (!dataset_.classes().empty()) {  // a class table: the class scores and targets only
    const torch::Tensor class_scores =
        group.gather(torch::tensor(sums.class_scores, torch::kFloat64), "gathering class scores").cpu();
    const torch::Tensor class_targets =
        group.gather(torch::tensor(sums.class_targets, torch::kFloat32), "gathering class targets").cpu();
    sums.class_scores.assign(class_scores.data_ptr<double>(), class_scores.data_ptr<double>() + class_scores.numel());
    sums.class_targets.assign(class_targets.data_ptr<float>(),
                              class_targets.data_ptr<float>() + class_targets.numel());
    return;
  }
  const torch::Tensor scores = group.gather(torch::tensor(sums.scores, torch::kFloat64), "gathering scores").cpu();
  const torch::Tensor labels =
      group.gather(torch::tensor(std::vector<int64_t>(sums.labels.begin(), sums.labels.end()), torch::kInt64),
                   "gathering labels").cpu();
  sums.scores.assign(scores.data_ptr<double>(), scores.data_ptr<double>() + scores.numel());
  sums.labels.assign(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + labels.numel());
}

}  // namespace pneumo::train
