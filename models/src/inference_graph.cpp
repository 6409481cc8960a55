#include "pneumo/models/inference_graph.h"

#include <memory>
#include <vector>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include "layers.h"
#include "pneumo/core/error.h"

namespace pneumo::models {

namespace {

namespace nn = torch::nn;

struct Pair {
  nn::Conv2dImpl* conv = nullptr;
  BatchNorm2dImpl* bn = nullptr;
  std::shared_ptr<nn::Conv2dImpl> original;  // the convolution as it was, to put back
};

// The convolution whose output `bn` (the i-th child of `parent`) normalises, as the module
// tree says; null when it does not say.
nn::Conv2dImpl* conv_before(nn::Module& parent, const std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>>& children,
                            size_t i) {
  if (parent.as<nn::SequentialImpl>() != nullptr)
    return i > 0 ? children[i - 1].second->as<nn::Conv2dImpl>() : nullptr;
  // The names the encoders and blocks use: torchvision's ResNet (bnK after convK) and DenseNet
  // (norm0 after conv0 in the stem; norm2 after conv1 in a dense layer, whose norm1 comes first).
  const std::string& name = children[i].first;
  std::string conv_name;
  if (name.rfind("bn", 0) == 0) conv_name = "conv" + name.substr(2);
  else if (name == "norm0") conv_name = "conv0";
  else if (name == "norm2") conv_name = "conv1";
  else return nullptr;
  for (const auto& [other, module] : children)
    if (other == conv_name) return module->as<nn::Conv2dImpl>();
  return nullptr;
}

// The convolution followed by `bn`, as one convolution with a bias.
void fold(nn::Conv2dImpl& conv, const BatchNorm2dImpl& bn) {
  torch::NoGradGuard no_grad;
  const auto f64 = torch::kFloat64;
  const torch::Tensor scale = bn.weight.to(f64) / torch::sqrt(bn.running_var.to(f64) + bn.eps);
  const torch::Tensor weight = conv.weight.to(f64) * scale.view({-1, 1, 1, 1});
  const torch::Tensor conv_bias = conv.bias.defined() ? conv.bias.to(f64) : torch::zeros_like(scale);
  const torch::Tensor bias = (conv_bias - bn.running_mean.to(f64)) * scale + bn.bias.to(f64);

  const auto& was = conv.options;
  nn::Conv2dOptions options(was.in_channels(), was.out_channels(), was.kernel_size());
  options.stride(was.stride()).padding(was.padding()).dilation(was.dilation()).groups(was.groups()).bias(true);
  options.padding_mode(was.padding_mode());
  // A new convolution registers its bias. It is built with one channel per group, so that its
  // random initialisation (drawn from the global generator, which is put back so that folding
  // changes no later random draw) costs next to nothing: at full size it was most of a load's
  // folding time. Its weights and sizes are then the folded ones.
  nn::Conv2dOptions smallest = options;
  smallest.in_channels(was.groups()).out_channels(was.groups());
  at::Generator generator = at::detail::getDefaultCPUGenerator();
  const torch::Tensor state = generator.get_state();
  nn::Conv2dImpl folded(smallest);
  generator.set_state(state);
  folded.options.in_channels(was.in_channels()).out_channels(was.out_channels());
  folded.to(conv.weight.device(), conv.weight.scalar_type());
  folded.weight.set_data(weight.to(conv.weight.scalar_type()).contiguous(conv.weight.suggest_memory_format()));
  folded.bias.set_data(bias.to(conv.weight.scalar_type()));
  folded.train(conv.is_training());
  conv = folded;  // in place: every holder of this convolution sees the folded one
}

std::vector<torch::Tensor> outputs(Network& network, const torch::Tensor& probe) {
  torch::NoGradGuard no_grad;
  const ModelOutput out = network.forward(probe);
  std::vector<torch::Tensor> all{out.masks, out.logits};
  all.insert(all.end(), out.extra_masks.begin(), out.extra_masks.end());
  return all;
}

}  // namespace

BatchNormFolding fold_batch_norms(Network& network, int64_t in_channels, int64_t probe_size, double tolerance) {
  BatchNormFolding report;
  if (network.is_training()) {
    report.why_not = "the network is in training mode";
    return report;
  }
  const std::vector<torch::Tensor> parameters = network.parameters();
  if (parameters.empty() || parameters.front().scalar_type() != torch::kFloat32) {
    report.why_not = "only float32 weights are folded";
    return report;
  }
  at::Generator probe_generator = at::make_generator<at::CPUGeneratorImpl>(20261204);
  const torch::Tensor probe = torch::randn({1, in_channels, probe_size, probe_size}, probe_generator)
                                  .to(parameters.front().device());
  std::vector<torch::Tensor> before;
  try {
    before = outputs(network, probe);
  } catch (const std::exception& e) {
    report.why_not = fmt::format("the probe did not run: {}", e.what());
    return report;
  }

  std::vector<Pair> pairs;
  for (const auto& item : network.named_modules("", /*include_self=*/true)) {
    nn::Module& parent = *item.value();
    const auto children = parent.named_children().pairs();
    for (size_t i = 0; i < children.size(); ++i) {
      auto* bn = children[i].second->as<BatchNorm2dImpl>();
      if (bn == nullptr || bn->folded) continue;
      nn::Conv2dImpl* conv = conv_before(parent, children, i);
      if (conv == nullptr || conv->options.out_channels() != bn->channels || !bn->running_mean.defined()) {
        ++report.kept;
        continue;
      }
      pairs.push_back({conv, bn, std::make_shared<nn::Conv2dImpl>(*conv)});
    }
  }
  for (Pair& p : pairs) {
    fold(*p.conv, *p.bn);
    p.bn->folded = true;
  }
  const auto undo = [&] {
    for (Pair& p : pairs) {
      *p.conv = *p.original;
      p.bn->folded = false;
    }
  };

  std::vector<torch::Tensor> after;
  try {
    after = outputs(network, probe);
  } catch (const std::exception& e) {
    undo();
    report.why_not = fmt::format("the folded network did not run: {}", e.what());
    return report;
  }
  double largest = 0, difference = 0;
  for (size_t k = 0; k < before.size(); ++k) {
    if (!before[k].defined()) continue;
    largest = std::max(largest, before[k].abs().max().item<double>());
    difference = std::max(difference, (after[k] - before[k]).abs().max().item<double>());
  }
  report.max_difference = difference / std::max(largest, 1.0);
  if (report.max_difference > tolerance) {
    undo();
    report.why_not = fmt::format("the folded network's outputs moved {:.2g} (relative) on a probe; more than {:.2g}",
                                 report.max_difference, tolerance);
    report.kept += static_cast<int>(pairs.size());
    return report;
  }
  report.folded = static_cast<int>(pairs.size());
  report.applied = report.folded > 0;
  if (!report.applied) report.why_not = "no BatchNorm follows a convolution";
  return report;
}

}  // namespace pneumo::models
