"""The Python way of a training step, for bench_train: PyTorch eager with torch.optim.Adam on
the same networks (from tests/models/reference_models.py: smp's U-Net / UNet++ and Attention
U-Net with a ResNet34 encoder, Double U-Net over VGG19; torchvision's DenseNet121 with one
logit) and the same
initial weights, loss BCE + soft Dice (segmenters) or BCE (classifier).

usage: train_python.py MODEL WEIGHTS.pth SIZE BATCH STEPS THREADS [DEVICE [AMP [COMPILE]]]
DEVICE: cpu (default) or cuda, synchronised at each phase boundary; AMP: 0 (float32), float16
(autocast with torch's GradScaler, CUDA) or bfloat16 (autocast, no scaler; CUDA or CPU);
COMPILE 1: torch.compile the network (PyTorch 2.x).
prints one JSON line: medians of the step and its phases (ms), "peak_rss_mb"
"""
import contextlib
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "models"))
from reference_models import AttentionUnet, DoubleUnet, Unet, UnetPlusPlus, outputs  # noqa: E402


def build(name):
    if name == "unet":
        return Unet()
    if name == "unet++":
        return UnetPlusPlus()
    if name == "attention_unet":
        return AttentionUnet("resnet34")
    if name == "double_unet":
        return DoubleUnet()
    return torchvision.models.densenet121(num_classes=1)


def main():
    name, weights, size, batch, steps, threads = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:7])
    device = sys.argv[7] if len(sys.argv) > 7 else "cpu"
    amp = sys.argv[8] if len(sys.argv) > 8 and sys.argv[8] != "0" else None
    amp_dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}[amp] if amp else None
    compile_network = len(sys.argv) > 9 and sys.argv[9] == "1"
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(name)
    model.load_state_dict(torch.load(weights))
    model.to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    network_of = torch.compile(model) if compile_network else model
    if hasattr(torch.amp, "GradScaler"):  # PyTorch >= 2.3; torch.cuda.amp's is deprecated there
        scaler = torch.amp.GradScaler("cuda", enabled=amp == "float16")
    else:
        scaler = torch.cuda.amp.GradScaler(enabled=amp == "float16")
    x = torch.rand(batch, 3, size, size).to(device)
    masks = (torch.rand(batch, 1, size, size) > 0.7).float().to(device)
    labels = (torch.rand(batch, 1) > 0.5).float().to(device)

    def now():
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    step_ms, forward_ms, loss_ms, backward_ms, optimizer_ms = [], [], [], [], []
    # torch.compile compiles during the first steps: give it more warm-up.
    warmup = 5 if compile_network else 2
    for step in range(steps + warmup):
        start = now()
        with torch.autocast(device, dtype=amp_dtype) if amp else contextlib.nullcontext():
            out = network_of(x)
        network = now()
        if name == "classifier":
            loss = F.binary_cross_entropy_with_logits(out.float(), labels)
        else:
            logits = outputs(out)[0].float()
            p = torch.sigmoid(logits)
            dice = 1 - (2 * (p * masks).sum() + 1) / (p.sum() + masks.sum() + 1)
            loss = F.binary_cross_entropy_with_logits(logits, masks) + dice
        forward = now()
        scaler.scale(loss).backward()
        backward = now()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()
        end = now()
        if step >= warmup:
            step_ms.append(1000 * (end - start))
            forward_ms.append(1000 * (network - start))
            loss_ms.append(1000 * (forward - network))
            backward_ms.append(1000 * (backward - forward))
            optimizer_ms.append(1000 * (end - backward))

    def median(v):
        return sorted(v)[len(v) // 2]

    # The step's floating-point operations (forward and backward; PyTorch's count, 2 per
    # multiply-add), counted on the eager network.
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter, torch.autocast(device, dtype=amp_dtype) if amp else contextlib.nullcontext():
        out = model(x)
        first = out if name == "classifier" else outputs(out)[0]
        first.float().sum().backward()
    optimizer.zero_grad()

    print(json.dumps({"ms_per_step": median(step_ms), "forward_ms": median(forward_ms), "loss_ms": median(loss_ms),
                      "backward_ms": median(backward_ms), "optimizer_ms": median(optimizer_ms),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "gflop_per_step": counter.get_total_flops() / 1e9}))


if __name__ == "__main__":
    main()
