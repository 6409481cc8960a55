#include "pneumo/models/network.h"

#include <torch/torch.h>

namespace pneumo::models {

torch::Tensor pneumothorax_logit(const ModelOutput& out, bool segmenter) {
  if (!out.logits.defined()) return {};
  if (segmenter || out.logits.size(1) == 1) return out.logits.select(1, 0);
  return out.logits.select(1, 7);
}

void use_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters())
    if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
  for (auto& b : module.buffers())
    if (b.dim() == 4) b.set_data(b.data().contiguous(torch::MemoryFormat::ChannelsLast));
}

}  // namespace pneumo::models
