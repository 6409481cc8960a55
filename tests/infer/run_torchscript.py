"""Runs a pneumo TorchScript export the way a Python user would (Debian's python3-torch).

usage: run_torchscript.py MODEL.pt INPUTS.pth OUT.pth
INPUTS.pth: a torch.save dict with "x"; OUT.pth gets "mask", "probability" and the metadata's
input size as "size".
"""
import json
import sys

import torch


def main():
    model_file, inputs_file, out_file = sys.argv[1:4]
    extra = {"pneumo.json": ""}
    model = torch.jit.load(model_file, _extra_files=extra)
    meta = json.loads(extra["pneumo.json"])
    x = torch.load(inputs_file)["x"]
    with torch.no_grad():
        mask, probability = model(x)
    torch.save({"mask": mask, "probability": probability,
                "size": torch.tensor(meta["input"]["size"])}, out_file)


if __name__ == "__main__":
    main()
