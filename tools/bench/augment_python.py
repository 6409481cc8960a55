"""The Python way of one seed augmentation recipe, for bench_augment: Albumentations 0.4.x
control flow (one random.random() < p per op, OneOf picking by weight) over the functions of
tests/augment/reference_augment.py (numpy, OpenCV-Python and scipy, as Albumentations calls
them). Prints images/s on one process.

usage: augment_python.py SIZE SECONDS IMAGE_PNG MASK_PNG
"""
import os
import random
import sys
import time

import cv2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "augment"))
import reference_augment as F  # noqa: E402


def recipe(img, mask, size):
    if random.random() < 0.5:
        img, mask = cv2.flip(img, 1), cv2.flip(mask, 1)
    if random.random() < 0.5:
        angle, scale = random.uniform(-10, 10), random.uniform(0.9, 1.1)
        dx, dy = random.uniform(-0.0625, 0.0625), random.uniform(-0.0625, 0.0625)
        img = F.shift_scale_rotate(img, angle, scale, dx, dy, cv2.INTER_LINEAR, cv2.BORDER_CONSTANT, 0)
        mask = F.shift_scale_rotate(mask, angle, scale, dx, dy, cv2.INTER_NEAREST, cv2.BORDER_CONSTANT, 0)
    if random.random() < 0.3:
        seed = random.randint(0, 10000)
        img = F.elastic_transform(img, 120, 6.0, 3.6, cv2.INTER_LINEAR, cv2.BORDER_REFLECT_101, None, seed, False)
        mask = F.elastic_transform(mask, 120, 6.0, 3.6, cv2.INTER_NEAREST, cv2.BORDER_REFLECT_101, None, seed, False)
    if random.random() < 0.3:
        pick = random.random() * 3
        if pick < 1:
            img = F.brightness_contrast_adjust(img, 1 + random.uniform(-0.2, 0.2), 0, True)
        elif pick < 2:
            img = F.gamma_transform(img, random.randint(80, 120) / 100.0)
        else:
            img = F.brightness_contrast_adjust(img, 1, random.uniform(-0.2, 0.2), True)
    if random.random() < 0.3:
        if random.random() < 0.5:
            crop = random.randint(size * 11 // 16, size)
            hs, ws = random.random(), random.random()
            y1, x1 = int((size - crop) * hs), int((size - crop) * ws)
            img = cv2.resize(img[y1:y1 + crop, x1:x1 + crop], (size, size), interpolation=cv2.INTER_LINEAR)
            mask = cv2.resize(mask[y1:y1 + crop, x1:x1 + crop], (size, size), interpolation=cv2.INTER_NEAREST)
        else:
            img = cv2.createCLAHE(clipLimit=random.uniform(1, 2), tileGridSize=(8, 8)).apply(img)
    return img.astype("float32") / 255.0, mask


def main():
    size, seconds = int(sys.argv[1]), float(sys.argv[2])
    image = cv2.imread(sys.argv[3], cv2.IMREAD_GRAYSCALE)
    mask = cv2.imread(sys.argv[4], cv2.IMREAD_GRAYSCALE)
    random.seed(0)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        recipe(image, mask, size)
        done += 1
    print(done / (time.perf_counter() - start))


if __name__ == "__main__":
    main()
