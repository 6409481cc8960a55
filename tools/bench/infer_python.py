"""The Python way of predicting, for bench_infer: pydicom, OpenCV resize, segmentation_models_pytorch's
U-Net/ResNet34 (tests/models/reference_models.py) holding the same weights, then the same
post-processing (bilinear resize to the native size, threshold 0.5) and a vectorised SIIM RLE
encoder. The network runs in PyTorch eager; then, as anchors, the same pipeline with the network
run by torch.compile (when it compiles on this machine within a minute), ONNX Runtime and OpenVINO
(the network exported from PyTorch to ONNX), each first checked against eager PyTorch on the same
input (largest difference in the logits at most 1e-4 of their largest magnitude: float32 sums
taken in another order differ by about 1e-5 of it) and left out, with the reason, otherwise.

usage: infer_python.py WEIGHTS.pth SIZE THREADS REPEATS OUT.csv DEVICE FILE...
DEVICE: cpu or cuda (the network runs there; the probabilities come back to the host; the
anchors run on the CPU only)
prints one JSON line: {"latency_ms": ..., "images_per_second": ..., "peak_rss_mb": ..., "gflop_per_image": ...,
                       "anchors": [{"name", "latency_ms", "images_per_second", "max_abs_diff"} or
                                   {"name", "skipped"}]}   (max_abs_diff relative, as above)
"""
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
import warnings

import cv2
import numpy as np
import pydicom
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "models"))
from reference_models import Unet  # noqa: E402
from siim_python import MEAN, STD, rle  # noqa: E402

COMPILE_SECONDS = 60
TOLERANCE = 1e-4


def prepare(path, size):
    pixels = pydicom.dcmread(path).pixel_array
    small = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    x = (small[None, :, :] - MEAN[:, None, None]) / STD[:, None, None]
    return pixels, np.ascontiguousarray(x[None], dtype=np.float32)


def predict(network, path, size):
    """network: a float32 NCHW array -> a float32 NCHW logits array."""
    pixels, x = prepare(path, size)
    logits = network(x)
    probability = torch.sigmoid(torch.from_numpy(logits[0, 0])).numpy()
    probability = cv2.resize(probability, (pixels.shape[1], pixels.shape[0]), interpolation=cv2.INTER_LINEAR)
    return rle(probability > 0.5)


def measure(network, files, size, repeats, out=None):
    predict(network, files[0], size)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(network, files[0], size)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    rows = [(os.path.splitext(os.path.basename(f))[0], predict(network, f, size)) for f in files]
    elapsed = time.perf_counter() - start
    if out:
        with open(out, "w") as f:
            f.write("ImageId,EncodedPixels\n")
            for image_id, encoded in rows:
                f.write(f"{image_id},{encoded}\n")
    return {"latency_ms": 1000 * sorted(times)[len(times) // 2], "images_per_second": len(files) / elapsed}


def torch_network(model, device):
    def run(x):
        with torch.no_grad():
            return model(torch.from_numpy(x).to(device)).float().cpu().numpy()
    return run


def compiled_network(model, x):
    compiled = torch.compile(model)
    start = time.perf_counter()
    with torch.no_grad():
        compiled(torch.from_numpy(x))
    took = time.perf_counter() - start
    if took > COMPILE_SECONDS:
        raise RuntimeError(f"compiling took {took:.0f} s, over {COMPILE_SECONDS} s")
    return torch_network(compiled, "cpu")


def export_onnx(model, x, path):
    # The exporter prints its progress ("[torch.onnx] ...") on stdout, where the JSON result goes.
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.from_numpy(x),), path, input_names=["image"], output_names=["logits"],
                          dynamo=True, optimize=True)


def onnxruntime_network(onnx_path, threads):
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"image": x})[0]


def openvino_network(onnx_path, threads):
    import openvino
    core = openvino.Core()
    compiled = core.compile_model(core.read_model(onnx_path), "CPU",
                                  {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    return lambda x: np.array(request.infer({0: x})[0])


def gflop_per_image(model, device, size):
    """The network's floating-point operations for one image (PyTorch's count: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, size, size, device=device))
    return counter.get_total_flops() / 1e9


def anchors(model, files, size, threads, repeats, reference):
    _, x = prepare(files[0], size)
    expected = reference(x)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = os.path.join(tmp, "unet.onnx")
        makers = [("PyTorch torch.compile", lambda: compiled_network(model, x)),
                  ("ONNX Runtime", lambda: (export_onnx(model, x, onnx_path), onnxruntime_network(onnx_path, threads))[1]),
                  ("OpenVINO", lambda: (os.path.exists(onnx_path) or export_onnx(model, x, onnx_path),
                                        openvino_network(onnx_path, threads))[1])]
        for name, make in makers:
            try:
                network = make()
                difference = float(np.abs(network(x) - expected).max() / max(np.abs(expected).max(), 1e-12))
                if not difference <= TOLERANCE:
                    raise RuntimeError(f"logits differ from PyTorch eager's by {difference:.3g} of their largest"
                                       f" magnitude, over {TOLERANCE}")
                results.append({"name": name, "max_abs_diff": difference, **measure(network, files, size, repeats)})
            except Exception as error:  # noqa: BLE001 (a left-out anchor says why)
                results.append({"name": name, "skipped": f"{type(error).__name__}: {error}"[:300]})
    return results


def main():
    weights, size, threads, repeats, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    device, files = sys.argv[6], sys.argv[7:]
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    model = Unet()
    model.load_state_dict(torch.load(weights))
    model.to(device).eval()
    eager = torch_network(model, device)
    result = measure(eager, files, size, repeats, out)
    result["gflop_per_image"] = gflop_per_image(model, device, size)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["anchors"] = anchors(model.cpu(), files, size, threads, repeats, torch_network(model, "cpu")) if device == "cpu" else []
    print(json.dumps(result))


if __name__ == "__main__":
    main()
