"""Reference outputs for pneumo's augmentation ops, computed the Python way: Albumentations 0.4.6
itself (albumentations.augmentations.functional, the version our users' pipelines pin; installed
in the project environment from tools/python/requirements.txt), each op called with the fixed
parameters its transform would have drawn.

usage: reference_augment.py CASES_FILE IMAGE_PNG OUT_DIR

Each line of CASES_FILE: `name op key=value ...`; `float=1` feeds the image as float32 / 255.
Writes OUT_DIR/<name>.png (8-bit results) or OUT_DIR/<name>.f32 (raw float32 results).
"""
import sys
import warnings

import cv2
import numpy as np

with warnings.catch_warnings():  # imgaug, imported by Albumentations 0.4.6, warns on import
    warnings.simplefilter("ignore")
    import albumentations
    import albumentations.augmentations.functional as F

assert albumentations.__version__ == "0.4.6", albumentations.__version__


def run(op, img, a):
    f, i = (lambda k: float(a[k])), (lambda k: int(a[k]))
    if op == "hflip":
        return F.hflip(img)
    if op == "vflip":
        return F.vflip(img)
    if op == "ssr":
        return F.shift_scale_rotate(img, f("angle"), f("scale"), f("dx"), f("dy"), i("interp"), i("border"), f("value"))
    if op == "elastic":
        # ElasticTransform draws a seed and passes np.random.RandomState(seed).
        return F.elastic_transform(img, f("alpha"), f("sigma"), f("alpha_affine"), i("interp"), i("border"),
                                   f("value"), np.random.RandomState(i("seed")), bool(i("approx")))
    if op == "grid":
        xs = [float(v) for v in a["xsteps"].split(",")]
        ys = [float(v) for v in a["ysteps"].split(",")]
        return F.grid_distortion(img, i("steps"), xs, ys, i("interp"), i("border"), f("value"))
    if op == "optical":
        return F.optical_distortion(img, f("k"), f("dx"), f("dy"), i("interp"), i("border"), f("value"))
    if op == "bc":
        return F.brightness_contrast_adjust(img, f("alpha"), f("beta"), bool(i("by_max")))
    if op == "gamma":
        return F.gamma_transform(img, f("gamma"))
    if op == "clahe":
        return F.clahe(img, f("clip"), (i("tw"), i("th")))
    if op == "noise":
        # GaussNoise draws its field from a RandomState seeded by the seed it draws.
        gauss = np.random.RandomState(i("seed")).normal(f("mean"), f("sigma"), img.shape)
        return F.gauss_noise(img, gauss)
    if op == "blur":
        return F.blur(img, i("k"))
    if op == "dropout":
        holes = [tuple(int(v) for v in hole.split(",")) for hole in a["holes"].split(";")]
        return F.cutout(img, holes, f("fill"))
    if op == "random_crop":
        return F.random_crop(img, i("ch"), i("cw"), f("hs"), f("ws"))
    if op == "center_crop":
        return F.center_crop(img, i("ch"), i("cw"))
    if op == "resize":
        return F.resize(img, i("h"), i("w"), i("interp"))
    if op == "normalize":
        return F.normalize(img, f("mean"), f("std"), f("max"))
    if op == "to_float":
        return F.to_float(img, f("max"))
    raise ValueError("unknown op " + op)


def main():
    cases, image_path, out_dir = sys.argv[1:4]
    image = cv2.imread(image_path, cv2.IMREAD_UNCHANGED)
    for line in open(cases):
        parts = line.split()
        if not parts:
            continue
        name, op = parts[0], parts[1]
        args = dict(p.split("=", 1) for p in parts[2:])
        img = image.astype(np.float32) / 255.0 if args.pop("float", "0") == "1" else image
        out = np.ascontiguousarray(run(op, img, args))
        if out.dtype == np.uint8:
            cv2.imwrite(f"{out_dir}/{name}.png", out)
        else:
            out.astype(np.float32).tofile(f"{out_dir}/{name}.f32")


if __name__ == "__main__":
    main()
