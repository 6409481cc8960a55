"""The Python way of the seed augmentation recipe, for bench_augment: Albumentations 0.4.6 (the
version our users' pipelines pin; the project environment has it) composing the same ops as
configs/augment/unet-baseline.yaml, crop sizes scaled to the image. Prints images/s on one
process. With CACHED_NPY, each image is first read back from that file (np.load: the Python way's
cache of decoded, resized images), as a training loader does.

usage: augment_python.py SIZE SECONDS IMAGE_PNG MASK_PNG [CACHED_NPY]
"""
import random
import sys
import time
import warnings

import cv2
import numpy as np

with warnings.catch_warnings():  # imgaug, imported by Albumentations 0.4.6, warns on import
    warnings.simplefilter("ignore")
    import albumentations as A

assert A.__version__ == "0.4.6", A.__version__


def recipe(size):
    return A.Compose([
        A.HorizontalFlip(p=0.5),
        A.ShiftScaleRotate(shift_limit=0.0625, scale_limit=0.1, rotate_limit=10, border_mode=cv2.BORDER_CONSTANT,
                           value=0, mask_value=0, p=0.5),
        A.ElasticTransform(alpha=120, sigma=6.0, alpha_affine=3.6, p=0.3),
        A.OneOf([A.RandomContrast(), A.RandomGamma(), A.RandomBrightness()], p=0.3),
        A.OneOf([A.RandomSizedCrop(min_max_height=(size * 11 // 16, size), height=size, width=size, p=0.5),
                 A.CLAHE(clip_limit=2, p=0.5)], p=0.3),
        A.ToFloat(max_value=255),
    ])


def main():
    size, seconds = int(sys.argv[1]), float(sys.argv[2])
    image = cv2.imread(sys.argv[3], cv2.IMREAD_GRAYSCALE)
    mask = cv2.imread(sys.argv[4], cv2.IMREAD_GRAYSCALE)
    cached = sys.argv[5] if len(sys.argv) > 5 else None
    augment = recipe(size)
    random.seed(0)
    np.random.seed(0)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        augment(image=np.load(cached) if cached else image, mask=mask)
        done += 1
    print(done / (time.perf_counter() - start))


if __name__ == "__main__":
    main()
