"""Independent SIIM mask decoder (the competition's rle2mask logic in numpy) for the tests.

usage: reference_rle.py LABELS.csv OUT_DIR ID...
Writes OUT_DIR/<ImageId>.raw: the 1024x1024 uint8 union mask (0/255), row-major.
"""
import csv
import os
import sys

import numpy as np


def rle2mask(rle, width, height):
    mask = np.zeros(width * height, dtype=np.uint8)
    values = [int(v) for v in rle.split()]
    position = 0
    for start, length in zip(values[0::2], values[1::2]):
        position += start
        mask[position:position + length] = 255
        position += length
    return mask.reshape(width, height).T  # column-major flat index x*height + y


def main(labels, out, ids):
    wanted = set(ids)
    masks = {}
    with open(labels, newline="", encoding="utf-8-sig") as f:
        for row in csv.reader(f):
            if not row or row[0].strip() == "ImageId":
                continue
            image_id, rle = row[0].strip(), row[1].strip()
            if image_id not in wanted:
                continue
            mask = masks.setdefault(image_id, np.zeros((1024, 1024), dtype=np.uint8))
            if rle != "-1":
                mask |= rle2mask(rle, 1024, 1024)
    for image_id in ids:
        masks[image_id].tofile(os.path.join(out, image_id + ".raw"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
