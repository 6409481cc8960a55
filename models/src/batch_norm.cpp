#include "pneumo/models/batch_norm.h"

#include <memory>

#include <fmt/format.h>
#include <torch/torch.h>

#include "layers.h"
#include "pneumo/core/error.h"

namespace pneumo::models {

namespace {

using Sum = std::function<void(torch::Tensor&)>;

struct SumHolder : torch::CustomClassHolder {
  std::shared_ptr<const Sum> sum;
};

// The sum over processes as an autograd operation. Every process's loss depends on the sum,
// so the gradient reaching one process's share is the sum over processes of the gradients.
class SumOverProcesses : public torch::autograd::Function<SumOverProcesses> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& local,
                               const std::shared_ptr<const Sum>& sum) {
    auto holder = c10::make_intrusive<SumHolder>();
    holder->sum = sum;
    ctx->saved_data["sum"] = c10::IValue::make_capsule(std::move(holder));
    torch::Tensor total = local.clone();
    (*sum)(total);
    return total;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto capsule = ctx->saved_data["sum"].toCapsule();
    const auto* holder = static_cast<const SumHolder*>(capsule.get());
    torch::Tensor total = grads.at(0).contiguous().clone();
    (*holder->sum)(total);
    return {total, torch::Tensor()};
  }
};

}  // namespace

void BatchNorm2dImpl::reset() {
  weight = register_parameter("weight", torch::ones({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
  running_mean = register_buffer("running_mean", torch::zeros({channels}));
  running_var = register_buffer("running_var", torch::ones({channels}));
  num_batches_tracked = register_buffer("num_batches_tracked", torch::zeros({}, torch::kInt64));
}

void BatchNorm2dImpl::reset_running_stats() {
  torch::NoGradGuard no_grad;
  running_mean.zero_();
  running_var.fill_(1);
  num_batches_tracked.zero_();
}

torch::Tensor BatchNorm2dImpl::forward(const torch::Tensor& input) {
  if (input.dim() != 4)
    throw core::ModelError(fmt::format("BatchNorm2d expects [N, C, H, W] input; got {} dimensions", input.dim()));
  double factor = momentum.value_or(0.0);
  if (is_training()) {
    num_batches_tracked.add_(1);
    if (!momentum) factor = 1.0 / static_cast<double>(num_batches_tracked.item<int64_t>());
  }
  if (is_training() && sum_across_processes) return synchronised_forward(input, factor);
  if (is_training() && input.numel() / std::max<int64_t>(input.size(1), 1) <= 1)
    throw core::ModelError(fmt::format("BatchNorm needs more than one value per channel in a training batch; got "
                                       "input of shape {}",
                                       shape_string(input)));
  return torch::batch_norm(input, weight, bias, running_mean, running_var, is_training(), factor, eps,
                           at::globalContext().userEnabledCuDNN());
}

torch::Tensor BatchNorm2dImpl::synchronised_forward(const torch::Tensor& input, double factor) {
  const int64_t c = input.size(1);
  const torch::Tensor x = input.to(torch::kFloat32);
  const double local_count = static_cast<double>(x.numel() / std::max<int64_t>(c, 1));
  // This share's mean and mean square per channel, weighted by its size, summed over the
  // processes in float64; then the whole batch's mean and (biased) variance.
  const auto [var, mean] = torch::var_mean(x, {0, 2, 3}, /*unbiased=*/false);
  const torch::Tensor mean64 = mean.to(torch::kFloat64);
  const torch::Tensor local = torch::cat({mean64 * local_count, (var.to(torch::kFloat64) + mean64.square()) * local_count,
                                          torch::full({1}, local_count, mean64.options())});
  const torch::Tensor total = SumOverProcesses::apply(local, sum_across_processes);
  const double count = total[2 * c].item<double>();
  if (count <= 1)
    throw core::ModelError(fmt::format("BatchNorm needs more than one value per channel in a training batch; the "
                                       "whole batch holds {}",
                                       count));
  const torch::Tensor batch_mean = total.slice(0, 0, c) / count;
  const torch::Tensor batch_var = (total.slice(0, c, 2 * c) / count - batch_mean.square()).clamp_min(0.0);
  {
    torch::NoGradGuard no_grad;
    running_mean.mul_(1.0 - factor).add_(batch_mean.detach().to(running_mean.scalar_type()), factor);
    running_var.mul_(1.0 - factor).add_((batch_var.detach() * (count / (count - 1.0))).to(running_var.scalar_type()),
                                        factor);
  }
  const std::vector<int64_t> shape{1, c, 1, 1};
  const torch::Tensor invstd = torch::rsqrt(batch_var + eps).to(torch::kFloat32);
  const torch::Tensor y =
      (x - batch_mean.to(torch::kFloat32).view(shape)) * invstd.view(shape) * weight.view(shape) + bias.view(shape);
  return y.to(input.scalar_type());
}

void BatchNorm2dImpl::pretty_print(std::ostream& stream) const {
  stream << "BatchNorm2d(" << channels << ", eps=" << eps
         << ", momentum=" << (momentum ? std::to_string(*momentum) : "None")
         << (sum_across_processes ? ", synchronised" : "") << ")";
}

int synchronise_batchnorm(torch::nn::Module& model, SumAcrossProcesses sum) {
  const auto shared = sum ? std::make_shared<const Sum>(std::move(sum)) : nullptr;
  int layers = 0;
  for (const auto& module : model.modules(/*include_self=*/true)) {
    if (auto bn = std::dynamic_pointer_cast<BatchNorm2dImpl>(module)) {
      bn->sum_across_processes = shared;
      ++layers;
    } else if (std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(module)) {
      throw core::ModelError(fmt::format("the model holds a BatchNorm2d ({}) that cannot be synchronised",
                                         module->name()));
    }
  }
  return layers;
}

int reset_batchnorm_statistics(torch::nn::Module& model, std::optional<double> momentum) {
  int layers = 0;
  for (const auto& module : model.modules(/*include_self=*/true))
    if (auto bn = std::dynamic_pointer_cast<BatchNorm2dImpl>(module)) {
      bn->reset_running_stats();
      bn->momentum = momentum;
      ++layers;
    }
  return layers;
}

int set_batchnorm_momentum(torch::nn::Module& model, std::optional<double> momentum) {
  int layers = 0;
  for (const auto& module : model.modules(/*include_self=*/true))
    if (auto bn = std::dynamic_pointer_cast<BatchNorm2dImpl>(module)) {
      bn->momentum = momentum;
      ++layers;
    }
  return layers;
}

}  // namespace pneumo::models
