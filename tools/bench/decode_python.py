"""The Python way of decoding DICOMs for training: pydicom (default handlers) + OpenCV resize.

usage: decode_python.py SIZE SECONDS FILE...   prints one line: images_per_second
"""
import sys
import time

import cv2
import pydicom


def main(size, seconds, files):
    cv2.setNumThreads(1)  # one core, like one pneumo worker
    done = 0
    start = time.perf_counter()
    while True:
        for path in files:
            pixels = pydicom.dcmread(path).pixel_array
            cv2.resize(pixels, (size, size), interpolation=cv2.INTER_AREA)
            done += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    print("%.2f" % (done / elapsed))


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:])
