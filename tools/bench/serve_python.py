"""The Python way of serving the model, for bench_serve: the seeds' Flask page done with the
standard library's threaded HTTP server, one request per thread, each running pydicom, OpenCV
and segmentation_models_pytorch's U-Net/ResNet34 in PyTorch eager (tests/models/reference_models.py) with the same weights,
then the same answer as pneumo serve: probability, SIIM RLE, area and a base64 PNG overlay.

usage: serve_python.py WEIGHTS.pth SIZE THREADS PORT
POST /v1/predict with DICOM bytes; GET /health. Prints "serving" once it listens.
"""
import base64
import io
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pydicom
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "models"))
from reference_models import Unet  # noqa: E402
from siim_python import MEAN, STD, rle  # noqa: E402


def overlay_png(pixels, probability, mask, max_side=512):
    scale = max_side / max(pixels.shape)
    if scale < 1:  # drawn at most 512 pixels wide or high, as pneumo serve's default
        size = (round(pixels.shape[1] * scale), round(pixels.shape[0] * scale))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        probability = cv2.resize(probability, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
    out = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    heat = cv2.applyColorMap((probability * 255).astype(np.uint8), cv2.COLORMAP_JET)
    alpha = np.where(probability > 0.1, 0.6 * probability, 0)[:, :, None]
    out = ((1 - alpha) * out + alpha * heat).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (0, 255, 255), max(1, max(out.shape[:2]) // 256), cv2.LINE_AA)
    return base64.b64encode(cv2.imencode(".png", out, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()).decode()


def make_handler(model, size):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.answer(200, {"status": "ok"})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                pixels = pydicom.dcmread(io.BytesIO(body)).pixel_array.astype(np.uint8)
            except Exception as e:  # noqa: BLE001
                return self.answer(422, {"error": str(e)})
            small = cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
            x = (small[None, :, :] - MEAN[:, None, None]) / STD[:, None, None]
            with torch.no_grad():
                logits = model(torch.from_numpy(x[None]))
            small_p = torch.sigmoid(logits)[0, 0].numpy()
            probability = cv2.resize(small_p, (pixels.shape[1], pixels.shape[0]), interpolation=cv2.INTER_LINEAR)
            mask = probability > 0.5
            self.answer(200, {"probability": float(probability.max()), "positive": bool(mask.any()), "rle": rle(mask),
                              "area_px": int(mask.sum()), "overlay_png": overlay_png(pixels, probability, mask)})

    return Handler


def main():
    weights, size, threads, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    model = Unet()
    model.load_state_dict(torch.load(weights))
    model.eval()
    ThreadingHTTPServer.request_queue_size = 128  # as pneumo's backlog: no resets when many connect at once
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(model, size))
    print("serving", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
