// The network as inference runs it. Each BatchNorm that follows a convolution is folded into it
// (the convolution's weights scaled per output channel, a bias added; the BatchNorm then passes
// its input through), which removes a pass over every feature map: about 7% of a U-Net/ResNet34
// forward on the CPU (PyTorch's profiler, 512 px). Which BatchNorm follows which convolution is
// read from the module tree (in a Sequential, the module before; `bnK` after `convK`, DenseNet's
// `norm0` after `conv0` and `norm2` after `conv1`), and a
// probe then checks the folded network against the network as it was: when any output moved
// more than the tolerance (a pairing the forward pass does not have, such as DenseNet's
// pre-activation layers), everything is put back.
#pragma once

#include <cstdint>
#include <string>

#include "pneumo/models/network.h"

namespace pneumo::models {

struct BatchNormFolding {
  int folded = 0;              // BatchNorm layers folded into the convolution before them
  int kept = 0;                // BatchNorm layers left as they are (no convolution before them)
  double max_difference = 0;   // the probe's largest |folded - unfolded| output, over its largest |output|
  bool applied = false;        // false: nothing folded (see `why_not`)
  std::string why_not;
};

// For a network in eval mode on its device, float32. The probe is one [1, in_channels,
// probe_size, probe_size] image of seeded noise (the global random generators are left as they
// were). A folded BatchNorm refuses to train (ModelError).
BatchNormFolding fold_batch_norms(Network& network, int64_t in_channels, int64_t probe_size = 64,
                                  double tolerance = 1e-4);

}  // namespace pneumo::models
