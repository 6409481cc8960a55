#include "pneumo/models/feature_tap.h"

#include <fmt/format.h>

#include "pneumo/core/error.h"

namespace pneumo::models {

namespace {
thread_local FeatureTap* active = nullptr;
}  // namespace

FeatureTap::FeatureTap(int stage) : stage_(stage) {
  if (active != nullptr)
    throw core::ModelError(fmt::format("a feature tap for stage {} is already alive on this thread", active->stage_));
  active = this;
}

FeatureTap::~FeatureTap() { active = nullptr; }

void FeatureTap::offer(int stage, const torch::Tensor& features) {
  if (active != nullptr && active->stage_ == stage && !active->features_.defined()) active->features_ = features;
}

}  // namespace pneumo::models
