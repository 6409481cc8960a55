#include "pneumo/train/radam.h"

#include <cmath>
#include <sstream>
#include <string>
#include <type_traits>

#include <torch/optim/serialize.h>
#include <torch/torch.h>

namespace pneumo::train {

namespace {

// LibTorch keys optimiser state by the parameter's TensorImpl: its address as text up to the 2.x
// release that made the key the pointer itself (the same text c10::guts::to_string made).
template <class StateMap>
typename StateMap::key_type state_key(const StateMap&, const torch::Tensor& p) {
  void* impl = p.unsafeGetTensorImpl();
  if constexpr (std::is_same_v<typename StateMap::key_type, std::string>) {
    std::ostringstream text;
    text << impl;
    return text.str();
  } else {
    return impl;
  }
}

}  // namespace

RAdamOptions::RAdamOptions(double lr) : lr_(lr) {}

void RAdamOptions::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(lr);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(betas);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(eps);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(weight_decay);
}

void RAdamOptions::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, lr);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(betas_t, betas);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, eps);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(double, weight_decay);
}

void RAdamParamState::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg_sq);
}

void RAdamParamState::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg_sq);
}

RAdam::RAdam(std::vector<torch::optim::OptimizerParamGroup> param_groups, RAdamOptions defaults)
    : Optimizer(param_groups, std::make_unique<RAdamOptions>(defaults)) {
  // Since LibTorch 2.x's add_param_group merges a group's own options into the defaults only for
  // the optimisers LibTorch knows (Adam, SGD, ...), a group of ours would silently run with the
  // defaults (found when CI moved to LibTorch 2.15: every group had the default learning rate).
  // Each group gets back the options it came with.
  for (size_t i = 0; i < param_groups.size(); ++i)
    if (param_groups[i].has_options()) param_groups_[i].set_options(param_groups[i].options().clone());
  TORCH_CHECK(defaults.lr() >= 0, "RAdam: invalid learning rate ", defaults.lr());
  TORCH_CHECK(defaults.eps() >= 0, "RAdam: invalid epsilon ", defaults.eps());
  const auto [beta1, beta2] = defaults.betas();
  TORCH_CHECK(beta1 >= 0 && beta1 < 1, "RAdam: invalid beta1 ", beta1);
  TORCH_CHECK(beta2 >= 0 && beta2 < 1, "RAdam: invalid beta2 ", beta2);
  TORCH_CHECK(defaults.weight_decay() >= 0, "RAdam: invalid weight decay ", defaults.weight_decay());
}

torch::Tensor RAdam::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure) {
    torch::AutoGradMode enable_grad(true);
    loss = closure();
  }
  for (auto& group : param_groups_) {
    const auto& options = static_cast<const RAdamOptions&>(group.options());
    const auto [beta1, beta2] = options.betas();
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      TORCH_CHECK(!p.grad().is_sparse(), "RAdam does not support sparse gradients");
      torch::Tensor grad = p.grad();
      auto found = state_.find(state_key(state_, p));
      if (found == state_.end()) {
        auto fresh = std::make_unique<RAdamParamState>();
        fresh->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        found = state_.emplace(state_key(state_, p), std::move(fresh)).first;
      }
      auto& state = static_cast<RAdamParamState&>(*found->second);
      state.step(state.step() + 1);
      const auto step = static_cast<double>(state.step());
      if (options.weight_decay() != 0) grad = grad.add(p, options.weight_decay());

      state.exp_avg().mul_(beta1).add_(grad, 1 - beta1);
      state.exp_avg_sq().mul_(beta2).addcmul_(grad, grad, 1 - beta2);
      const double bias_correction1 = 1 - std::pow(beta1, step);
      const double bias_correction2 = 1 - std::pow(beta2, step);
      // The length of the approximated simple moving average, and its limit.
      const double rho_inf = 2 / (1 - beta2) - 1;
      const double rho_t = rho_inf - 2 * step * std::pow(beta2, step) / bias_correction2;
      const torch::Tensor corrected = state.exp_avg() / bias_correction1;
      if (rho_t > 5) {  // the variance is tractable: rectified adaptive step
        const double rect = std::sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t));
        const torch::Tensor adaptive = std::sqrt(bias_correction2) / state.exp_avg_sq().sqrt().add_(options.eps());
        p.add_(corrected * options.lr() * adaptive * rect, -1.0);
      } else {  // early steps: un-adapted momentum (SGD with bias-corrected momentum)
        p.add_(corrected * options.lr(), -1.0);
      }
    }
  }
  return loss;
}

void RAdam::save(torch::serialize::OutputArchive& archive) const {
  torch::optim::serialize<RAdamParamState, RAdamOptions>(archive, *this);
}

void RAdam::load(torch::serialize::InputArchive& archive) {
  torch::optim::serialize<RAdamParamState, RAdamOptions>(archive, *this);
}

}  // namespace pneumo::train
