// RAdam (Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", 2020) for
// LibTorch, which lacks it before 2.x: the update of PyTorch's torch.optim.RAdam (L2 weight
// decay added to the gradient), with state that saves and loads like LibTorch's own optimisers.
#pragma once

#include <tuple>
#include <vector>

#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>

namespace pneumo::train {

struct RAdamOptions : public torch::optim::OptimizerCloneableOptions<RAdamOptions> {
  RAdamOptions(double lr = 1e-3);  // NOLINT(google-explicit-constructor): as LibTorch's options
  TORCH_ARG(double, lr) = 1e-3;
  typedef std::tuple<double, double> betas_t;
  TORCH_ARG(betas_t, betas) = std::make_tuple(0.9, 0.999);
  TORCH_ARG(double, eps) = 1e-8;
  TORCH_ARG(double, weight_decay) = 0;

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
  double get_lr() const override { return lr(); }
  void set_lr(const double value) override { lr(value); }
};

struct RAdamParamState : public torch::optim::OptimizerCloneableParamState<RAdamParamState> {
  TORCH_ARG(int64_t, step) = 0;
  TORCH_ARG(torch::Tensor, exp_avg);
  TORCH_ARG(torch::Tensor, exp_avg_sq);

 public:
  void serialize(torch::serialize::InputArchive& archive) override;
  void serialize(torch::serialize::OutputArchive& archive) const override;
};

class RAdam : public torch::optim::Optimizer {
 public:
  explicit RAdam(std::vector<torch::optim::OptimizerParamGroup> param_groups, RAdamOptions defaults = {});
  explicit RAdam(std::vector<torch::Tensor> params, RAdamOptions defaults = {})
      : RAdam({torch::optim::OptimizerParamGroup(std::move(params))}, std::move(defaults)) {}

  torch::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;
};

}  // namespace pneumo::train
