"""The Python way of predicting, for bench_infer: pydicom, OpenCV resize, a PyTorch eager
U-Net/ResNet34 (smp's layout, from tests/models/reference_models.py) holding the same weights,
then the same post-processing (bilinear resize to the native size, threshold 0.5) and a
vectorised SIIM RLE encoder.

usage: infer_python.py WEIGHTS.pth SIZE THREADS REPEATS OUT.csv DEVICE FILE...
DEVICE: cpu or cuda (the network runs there; the probabilities come back to the host)
prints one JSON line: {"latency_ms": ..., "images_per_second": ...}
"""
import json
import os
import resource
import sys
import time

import cv2
import numpy as np
import pydicom
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "models"))
from reference_models import Unet  # noqa: E402
from siim_python import MEAN, STD, rle  # noqa: E402


def predict(model, path, size, device):
    pixels = pydicom.dcmread(path).pixel_array
    small = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    x = (small[None, :, :] - MEAN[:, None, None]) / STD[:, None, None]
    with torch.no_grad():
        logits = model(torch.from_numpy(x[None]).to(device))[0]
    probability = torch.sigmoid(logits)[0, 0].cpu().numpy()
    probability = cv2.resize(probability, (pixels.shape[1], pixels.shape[0]), interpolation=cv2.INTER_LINEAR)
    return rle(probability > 0.5)


def main():
    weights, size, threads, repeats, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    device, files = sys.argv[6], sys.argv[7:]
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    model = Unet(None, False)
    model.load_state_dict(torch.load(weights))
    model.to(device).eval()
    predict(model, files[0], size, device)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(model, files[0], size, device)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    rows = [(os.path.splitext(os.path.basename(f))[0], predict(model, f, size, device)) for f in files]
    elapsed = time.perf_counter() - start
    with open(out, "w") as f:
        f.write("ImageId,EncodedPixels\n")
        for image_id, encoded in rows:
            f.write(f"{image_id},{encoded}\n")
    print(json.dumps({"latency_ms": 1000 * sorted(times)[len(times) // 2], "images_per_second": len(files) / elapsed,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
