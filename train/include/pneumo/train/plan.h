// `pneumo plan`: an experiment proposed from the data, each value with its reason.
//
// The dataset's fingerprint (data/fingerprint.h) decides the input size (from the areas of the
// pneumothoraces), the normalisation (from the intensities, or ImageNet's for ImageNet
// weights), the negative-share schedule (from the positive share), the folds (grouped by
// patient when patients repeat) and the grey mapping; the batch size comes from a measured
// trial: real forward/backward/optimiser steps of the experiment's network at the proposed
// size on its device, counting the memory they hold, until the largest batch that fits the
// budget is found. The plan is an ordinary experiment file: `pneumo cv plan.yaml` runs it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pneumo/data/fingerprint.h"
#include "pneumo/train/experiment.h"

namespace pneumo::train {

// --- The rules, one function each (exposed for tests) ----------------------------------------

// The smallest tenth of the pneumothoraces should still span kSmallLesionPixels at the input
// size (about 20 x 20 pixels): the smallest of kInputSizes where the 10th-percentile area share
// reaches it, but never above the images' median short side (upsampling adds no detail). For
// SIIM's 2,669 positive training images (10th percentile 0.19% of 1024 x 1024) this is 512.
inline constexpr double kSmallLesionPixels = 400.0;
inline constexpr int kInputSizes[] = {128, 256, 384, 512, 640, 768, 1024};

struct Proposal {
  std::string key;  // "data.size"
  std::string why;  // one line, written as the key's comment
};

int propose_input_size(const data::DatasetFingerprint& fingerprint, std::string* why);

// Imbalanced data (under 40% positive): the first epoch draws as many negatives as there are
// positives (share = positives / negatives), rising linearly to every negative at the last
// epoch, so the final epochs see the true prevalence. Balanced data: empty (all, every epoch).
std::vector<data::NegativeSharePoint> propose_negative_share(const data::DatasetFingerprint& fingerprint,
                                                             int64_t epochs, std::string* why);

// --- The batch size trial --------------------------------------------------------------------

struct TrialStep {
  int64_t batch = 0;
  int64_t peak_bytes = 0;  // the most the step held (weights, gradients, optimiser state included)
  // The most held during the forward and backward passes, which grow with the batch (the
  // optimiser's update, whose temporaries do not, can hold more than a small batch's passes).
  int64_t pass_peak_bytes = 0;
  double seconds = 0;      // the whole step
  bool fitted = false;     // no allocation was refused
};

struct BatchTrial {
  std::string device;
  int size = 0;
  int64_t budget_bytes = 0;
  int64_t usable_bytes = 0;  // budget x headroom: what a proposed batch may peak at
  int64_t batch = 0;         // the proposal: the largest verified batch within usable_bytes
  int64_t predicted = 0;     // the batch that batches 1 and 2 predict would fill usable_bytes
  std::vector<TrialStep> steps;
};

struct BatchTrialOptions {
  int64_t budget_bytes = 0;  // 0: the device's memory (CUDA: its total; CPU: MemAvailable)
  int64_t max_batch = 32;
  double headroom = 0.9;  // leaves a tenth for the loader's pinned batches, fragmentation, the CUDA context
};

// Builds the experiment's network (random weights) and optimiser on its device and runs
// training steps on synthetic batches at data.size: batch 1 twice (the second measured), batch
// 2, then the batch the two predict, halved until it fits. Throws DeviceError saying what it
// needs when even batch 1 does not fit the budget.
BatchTrial measure_batch_size(const ExperimentConfig& config, const BatchTrialOptions& options);

// --- The whole plan ----------------------------------------------------------------------------

struct PlanOptions {
  BatchTrialOptions trial;
  int intensity_images = 200;
  int threads = 1;  // for the fingerprint's reads
};

struct ExperimentPlan {
  ExperimentConfig config;  // the proposed experiment
  data::DatasetFingerprint fingerprint;
  BatchTrial trial;
  std::vector<Proposal> proposals;  // in the order they were decided
};

// Fingerprints the data `base` names (base.data), then proposes. Throws DataError for data that
// cannot be read, ConfigError for a base that does not validate, DeviceError as the trial does.
ExperimentPlan plan_experiment(const ExperimentConfig& base, const PlanOptions& options);

// The plan as an experiment file: a comment block with the fingerprint and the trial, then the
// whole resolved experiment, each proposed key with its reason as a comment.
std::string plan_to_yaml(const ExperimentPlan& plan, const std::string& source);

// One line per proposal, "data.size: 512  (the smallest tenth ...)", for the terminal.
std::vector<std::string> describe_proposals(const ExperimentPlan& plan);

}  // namespace pneumo::train
