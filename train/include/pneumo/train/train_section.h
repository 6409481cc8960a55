// The `train:` section of an experiment file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pneumo/core/config_schema.h"
#include "pneumo/train/losses.h"

namespace pneumo::train {

struct OptimizerSection {
  std::string name = "adam";
  double lr = 3e-4;
  double weight_decay = 0.0;
  std::vector<double> betas{0.9, 0.999};  // adam, adamw, radam
  double momentum = 0.9;  // sgd
  bool nesterov = false;  // sgd
  double encoder_lr_multiplier = 1.0;
  int freeze_encoder_epochs = 0;

  template <class V>
  void visit(V& v) {
    v("name", name, "optimiser", core::one_of({"adam", "adamw", "radam", "sgd"}));
    v("lr", lr, "base learning rate", core::Check<double>{"> 0", [](const double& x) { return x > 0; }});
    v("weight_decay", weight_decay, "L2 (adam, radam, sgd) or decoupled (adamw) weight decay", core::at_least(0.0));
    v("betas", betas, "adam, adamw, radam: the two moment decays",
      core::Check<std::vector<double>>{"two values in [0, 1)", [](const std::vector<double>& b) {
                                         return b.size() == 2 && b[0] >= 0 && b[0] < 1 && b[1] >= 0 && b[1] < 1;
                                       }});
    v("momentum", momentum, "sgd momentum", core::in_range(0.0, 0.999));
    v("nesterov", nesterov, "sgd Nesterov momentum");
    v("encoder_lr_multiplier", encoder_lr_multiplier, "the encoder's learning rate is lr times this",
      core::at_least(0.0));
    v("freeze_encoder_epochs", freeze_encoder_epochs, "keep the encoder frozen for the first N epochs",
      core::at_least(0));
  }
};

struct ScheduleSection {
  std::string name = "cosine";
  std::string per = "step";  // when the rate changes: every optimiser step or every epoch
  double warmup_epochs = 0.0;
  double warmup_start = 0.01;  // warm-up starts at lr times this
  double min_lr_factor = 0.0;  // cosine floor, as a fraction of lr
  int step_size = 10;          // step
  double gamma = 0.1;          // step, multistep, plateau
  std::vector<int> milestones;  // multistep
  int cycle_epochs = 10;       // cosine_restarts: first cycle length
  int cycle_multiplier = 1;    // cosine_restarts: each cycle this many times longer
  int patience = 3;            // plateau

  template <class V>
  void visit(V& v) {
    v("name", name, "learning-rate schedule",
      core::one_of({"constant", "step", "multistep", "cosine", "cosine_restarts", "plateau"}));
    v("per", per, "apply the schedule per optimiser step or per epoch", core::one_of({"step", "epoch"}));
    v("warmup_epochs", warmup_epochs, "linear warm-up in front of the schedule", core::at_least(0.0));
    v("warmup_start", warmup_start, "warm-up starts at lr times this", core::in_range(0.0, 1.0));
    v("min_lr_factor", min_lr_factor, "cosine schedules end at lr times this", core::in_range(0.0, 1.0));
    v("step_size", step_size, "step: epochs between decays", core::at_least(1));
    v("gamma", gamma, "step, multistep, plateau: decay factor", core::in_range(0.0, 1.0));
    v("milestones", milestones, "multistep: epochs at which to decay");
    v("cycle_epochs", cycle_epochs, "cosine_restarts: first cycle length in epochs (a snapshot at each end)",
      core::at_least(1));
    v("cycle_multiplier", cycle_multiplier, "cosine_restarts: growth of each next cycle", core::at_least(1));
    v("patience", patience, "plateau: epochs without improvement before decaying", core::at_least(1));
  }
};

// The loss: the mask terms are ComboLossOptions itself (the library reads this section as it
// is), plus the terms around them.
struct LossSection : ComboLossOptions {
  double aux_weight = 0.2;
  std::vector<double> extra_mask_weights{0.5};
  double label_smoothing = 0.0;
  std::vector<double> class_weights;
  std::string class_balance = "none";

  template <class V>
  void visit(V& v) {
    v("bce", bce, "weight of BCE on the mask logits", core::at_least(0.0));
    v("dice", dice, "weight of soft Dice", core::at_least(0.0));
    v("focal", focal, "weight of the focal term (the SIIM winner's)", core::at_least(0.0));
    v("lovasz", lovasz, "weight of the Lovasz hinge", core::at_least(0.0));
    v("weighted_bce_dice", weighted_bce_dice, "weight of the Keras seeds' border-weighted BCE + Dice",
      core::at_least(0.0));
    v("dice_per_image", dice_per_image, "Dice per image (averaged) instead of over the batch");
    v("dice_smooth", dice_smooth, "Dice smoothing: 1 as the Keras seeds, 1e-5 as the SIIM winner",
      core::at_least(0.0));
    v("pos_weight", pos_weight, "BCE weight of positive pixels", core::Check<double>{"> 0", [](const double& x) { return x > 0; }});
    v("focal_gamma", focal_gamma, "focal term: the exponent of (1 - pt)", core::at_least(0.0));
    v("lovasz_per_image", lovasz_per_image, "Lovasz hinge per image (averaged) instead of over the batch");
    v("aux_weight", aux_weight, "weight of the auxiliary head's image-level BCE", core::at_least(0.0));
    v("extra_mask_weights", extra_mask_weights,
      "weights of extra masks (deep supervision, Double U-Net's first output); the last repeats");
    v("label_smoothing", label_smoothing, "classifier: label smoothing", core::in_range(0.0, 0.5));
    v("class_weights", class_weights, "classifier: positive weight per class (empty: none)");
    v("class_balance", class_balance, "classifier: chexnet weighs each class's positives by |N|/|P| of the training "
      "fold (CheXNet's weighted BCE), instead of class_weights", core::one_of({"none", "chexnet"}));
  }
};

struct SwaSection {
  int start_epoch = 0;  // 1-based; 0: off

  template <class V>
  void visit(V& v) {
    v("start_epoch", start_epoch,
      "average the weights of every epoch from this one (1-based) to the end, recompute BatchNorm "
      "statistics over the training data, evaluate and save swa.ckpt (0: off)",
      core::at_least(0));
  }
};

// Data-parallel training over several processes (pneumo launch, or torchrun's environment).
// What is global and what is per process: `train.batch_size` is the batch of one optimiser
// step over all processes by default, so a config trains the same on 1 or N processes.
struct DistributedSection {
  std::string batch_size = "global";
  std::string lr_scaling = "none";
  bool sync_batchnorm = true;
  double timeout_s = 300.0;
  double bucket_mb = 25.0;

  template <class V>
  void visit(V& v) {
    v("batch_size", batch_size,
      "global: train.batch_size is split across the processes (it must divide evenly), so N processes take "
      "the steps one would; per_process: each process takes train.batch_size, an N times larger step",
      core::one_of({"global", "per_process"}));
    v("lr_scaling", lr_scaling,
      "with per_process batches: multiply train.optimizer.lr by N (linear) or sqrt(N) (sqrt), or keep it (none)",
      core::one_of({"none", "linear", "sqrt"}));
    v("sync_batchnorm", sync_batchnorm,
      "normalise with the statistics of the whole step's batch across processes (as on one process); false: "
      "each process uses its own share's, and rank 0's running statistics are kept");
    v("timeout_s", timeout_s,
      "a process that has not answered for this long counts as lost: the others stop with an error",
      core::in_range(1.0, 86400.0));
    v("bucket_mb", bucket_mb, "gradients are averaged in buckets of about this many MiB while the backward pass runs",
      core::in_range(0.0625, 1024.0));
  }
};

struct TrainSection {
  int epochs = 10;
  int batch_size = 8;
  int accumulate = 1;
  double clip_grad_norm = 0.0;
  OptimizerSection optimizer;
  ScheduleSection schedule;
  LossSection loss;
  std::string monitor = "val_dice";
  double threshold = 0.5;
  int early_stopping = 0;
  bool drop_last = true;
  SwaSection swa;
  double ema = 0.0;
  int keep_top = 0;
  DistributedSection distributed;

  template <class V>
  void visit(V& v) {
    v("epochs", epochs, "passes over the training folds", core::in_range(1, 100000));
    v("batch_size", batch_size, "images per step", core::in_range(1, 4096));
    v("accumulate", accumulate, "batches accumulated per optimiser step", core::in_range(1, 1024));
    v("clip_grad_norm", clip_grad_norm, "clip gradients to this L2 norm (0: off)", core::at_least(0.0));
    v("optimizer", optimizer, "optimiser and parameter groups");
    v("schedule", schedule, "learning-rate schedule");
    v("loss", loss, "loss terms and weights");
    v("monitor", monitor, "validation metric that picks best.ckpt (higher is better; val_loss: lower)",
      core::one_of({"val_dice", "val_iou", "val_auc", "val_loss"}));
    v("threshold", threshold, "probability above which a pixel (or image) counts as pneumothorax",
      core::in_range(0.0, 1.0));
    v("early_stopping", early_stopping, "stop after this many epochs without improvement (0: never)",
      core::at_least(0));
    v("drop_last", drop_last, "drop a last training batch smaller than batch_size (BatchNorm needs >1)");
    v("keep_top", keep_top, "also keep the N best epochs as top-NNN.ckpt (0: only best.ckpt)", core::in_range(0, 100));
    v("swa", swa, "stochastic weight averaging");
    v("ema", ema, "keep an exponential moving average of the weights with this decay per step, validated "
      "and saved as ema.ckpt at the end (0: off; e.g. 0.999)", core::in_range(0.0, 0.99999));
    v("distributed", distributed, "data-parallel training over several processes (pneumo launch)");
  }
};

}  // namespace pneumo::train
