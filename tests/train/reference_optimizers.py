"""Reference trajectories of torch.optim.RAdam (Debian's python3-torch) for pneumo's RAdam.

Two parameter groups (different learning rates, one with weight decay), float64, 12 steps of
the gradient g = 2 * (p - target) + 0.1 * step * sin(p); the parameters after every step are
saved so that both the early un-adapted steps and the rectified ones are compared.

usage: reference_optimizers.py OUT_FILE     (a torch.save dict of tensors)
"""
import sys

import torch


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    a = torch.randn(3, 4, dtype=torch.float64)
    b = torch.randn(5, dtype=torch.float64)
    target_a = torch.randn(3, 4, dtype=torch.float64)
    target_b = torch.randn(5, dtype=torch.float64)
    values = {"a0": a.clone(), "b0": b.clone(), "target_a": target_a, "target_b": target_b}
    a.requires_grad_(True)
    b.requires_grad_(True)
    optimizer = torch.optim.RAdam([
        {"params": [a], "lr": 0.01},
        {"params": [b], "lr": 0.05, "weight_decay": 0.1},
    ], betas=(0.8, 0.95), eps=1e-6)
    for step in range(1, 13):
        with torch.no_grad():
            a.grad = 2 * (a - target_a) + 0.1 * step * torch.sin(a)
            b.grad = 2 * (b - target_b) + 0.1 * step * torch.sin(b)
        optimizer.step()
        values[f"a{step}"] = a.detach().clone()
        values[f"b{step}"] = b.detach().clone()
    torch.save(values, out)


if __name__ == "__main__":
    main()
