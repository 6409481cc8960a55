#include "pneumo/models/batch_norm.h"

#include <memory>

#include <fmt/format.h>
#include <torch/torch.h>

#include "layers.h"
#include "pneumo/core/error.h"

namespace pneumo::models {

namespace {

struct SumHolder : torch::CustomClassHolder {
  std::shared_ptr<const SyncContext> sync;
};

// The sum over processes as an autograd operation. Every process's loss depends on the sum,
// so the gradient reaching one process's share is the sum over processes of the gradients.
class SumOverProcesses : public torch::autograd::Function<SumOverProcesses> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& local,
                               const std::shared_ptr<const SyncContext>& sync) {
    auto holder = c10::make_intrusive<SumHolder>();
    holder->sync = sync;
    ctx->saved_data["sum"] = c10::IValue::make_capsule(std::move(holder));
    torch::Tensor total = local.contiguous().clone();
    sync->sum(total);
    return total;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto capsule = ctx->saved_data["sum"].toCapsule();
    const auto* holder = static_cast<const SumHolder*>(capsule.get());
    torch::Tensor total = grads.at(0).contiguous().clone();
    holder->sync->sum(total);
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
  if (folded) {
    if (is_training())
      throw core::ModelError("a BatchNorm folded into its convolution for inference cannot train; load the network "
                             "again to train it");
    return input;
  }
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
  // Every share's size, mean and variance per channel, gathered in float64 (each process
  // fills its row, the rows are summed over the processes), then combined as in Chan et al.'s
  // parallel variance: no cancellation, whatever the mean.
  const auto [var, mean] = torch::var_mean(x, {0, 2, 3}, /*unbiased=*/false);
  const SyncContext& sync = *sum_across_processes;
  const auto options = x.options().dtype(torch::kFloat64);
  const torch::Tensor row = torch::cat({mean.to(torch::kFloat64), var.to(torch::kFloat64), torch::full({1}, local_count, options)});
  torch::Tensor slot = torch::zeros({sync.world, 1}, options);
  slot[sync.rank] = 1.0;
  const torch::Tensor rows = slot * row.unsqueeze(0);  // [world, 2C + 1], this process's row filled
  const torch::Tensor all = SumOverProcesses::apply(rows, sum_across_processes);
  const torch::Tensor counts = all.select(1, 2 * c).unsqueeze(1);  // [world, 1]
  const double count = counts.sum().item<double>();
  if (count <= 1)
    throw core::ModelError(fmt::format("BatchNorm needs more than one value per channel in a training batch; the "
                                       "whole batch holds {}",
                                       count));
  const torch::Tensor means = all.slice(1, 0, c), vars = all.slice(1, c, 2 * c);
  const torch::Tensor batch_mean = (means * counts).sum(0) / count;
  const torch::Tensor batch_var = ((vars + (means - batch_mean).square()) * counts).sum(0) / count;
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

int synchronise_batchnorm(torch::nn::Module& model, SumAcrossProcesses sum, int rank, int world) {
  if (sum && (world < 1 || rank < 0 || rank >= world))
    throw core::ModelError(fmt::format("synchronised BatchNorm: rank {} is not in 0..{}", rank, world - 1));
  const auto shared = sum ? std::make_shared<const SyncContext>(SyncContext{std::move(sum), rank, world}) : nullptr;
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
