"""Reference outputs for pneumo's augmentation ops, computed the Python way: numpy and
OpenCV-Python with the formulas of Albumentations 0.4.x (albumentations/augmentations/
functional.py). Albumentations itself is not packaged by Debian, so its formulas are
transcribed here, independently of pneumo's C++.

usage: reference_augment.py CASES_FILE IMAGE_PNG OUT_DIR

Each line of CASES_FILE: `name op key=value ...`; `float=1` feeds the image as float32 / 255.
Writes OUT_DIR/<name>.png (8-bit results) or OUT_DIR/<name>.f32 (raw float32 results).
"""
import sys

import cv2
import numpy as np


def numpy_gaussian_filter(field, sigma):
    """scipy.ndimage.gaussian_filter(field, sigma) for 2-D float64 input: mode 'reflect',
    truncate 4.0, axis 0 then axis 1 (used where python3-scipy is absent)."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 / (sigma * sigma) * x ** 2)
    w = w / w.sum()

    def along(a, axis):
        n = a.shape[axis]
        idx = np.arange(-radius, n + radius)
        period = 2 * n
        idx = np.mod(idx, period)
        idx = np.where(idx < n, idx, period - 1 - idx)
        padded = np.take(a, idx, axis=axis)
        out = np.zeros_like(a)
        for k in range(2 * radius + 1):
            sl = [slice(None)] * 2
            sl[axis] = slice(k, k + n)
            out += padded[tuple(sl)] * w[k]
        return out

    return along(along(field, 0), 1)


try:  # what Albumentations calls
    from scipy.ndimage import gaussian_filter
except ImportError:
    gaussian_filter = numpy_gaussian_filter


def clip(img, dtype, maxval):
    return np.clip(img, 0, maxval).astype(dtype)


def maxval(img):
    return 255 if img.dtype == np.uint8 else 1.0


def shift_scale_rotate(img, angle, scale, dx, dy, interpolation, border_mode, value):
    height, width = img.shape[:2]
    center = (width / 2, height / 2)
    matrix = cv2.getRotationMatrix2D(center, angle, scale)
    matrix[0, 2] += dx * width
    matrix[1, 2] += dy * height
    return cv2.warpAffine(img, M=matrix, dsize=(width, height), flags=interpolation,
                          borderMode=border_mode, borderValue=value)


def elastic_transform(image, alpha, sigma, alpha_affine, interpolation, border_mode, value,
                      random_state, approximate):
    random_state = np.random.RandomState(random_state)
    height, width = image.shape[:2]
    center_square = np.float32((height, width)) // 2
    square_size = min((height, width)) // 3
    pts1 = np.float32([center_square + square_size,
                       [center_square[0] + square_size, center_square[1] - square_size],
                       center_square - square_size])
    pts2 = pts1 + random_state.uniform(-alpha_affine, alpha_affine, size=pts1.shape).astype(np.float32)
    matrix = cv2.getAffineTransform(pts1, pts2)
    image = cv2.warpAffine(image, M=matrix, dsize=(width, height), flags=interpolation,
                           borderMode=border_mode, borderValue=value)
    if approximate:
        dx = random_state.rand(height, width).astype(np.float32) * 2 - 1
        cv2.GaussianBlur(dx, (17, 17), sigma, dst=dx)
        dx *= alpha
        dy = random_state.rand(height, width).astype(np.float32) * 2 - 1
        cv2.GaussianBlur(dy, (17, 17), sigma, dst=dy)
        dy *= alpha
    else:
        dx = np.float32(gaussian_filter((random_state.rand(height, width) * 2 - 1), sigma) * alpha)
        dy = np.float32(gaussian_filter((random_state.rand(height, width) * 2 - 1), sigma) * alpha)
    x, y = np.meshgrid(np.arange(width), np.arange(height))
    map_x = np.float32(x + dx)
    map_y = np.float32(y + dy)
    return cv2.remap(image, map1=map_x, map2=map_y, interpolation=interpolation,
                     borderMode=border_mode, borderValue=value)


def grid_distortion(img, num_steps, xsteps, ysteps, interpolation, border_mode, value):
    height, width = img.shape[:2]
    x_step = width // num_steps
    xx = np.zeros(width, np.float32)
    prev = 0
    for idx, x in enumerate(range(0, width, x_step)):
        start, end = x, x + x_step
        if end > width:
            end, cur = width, width
        else:
            cur = prev + x_step * xsteps[idx]
        xx[start:end] = np.linspace(prev, cur, end - start)
        prev = cur
    y_step = height // num_steps
    yy = np.zeros(height, np.float32)
    prev = 0
    for idx, y in enumerate(range(0, height, y_step)):
        start, end = y, y + y_step
        if end > height:
            end, cur = height, height
        else:
            cur = prev + y_step * ysteps[idx]
        yy[start:end] = np.linspace(prev, cur, end - start)
        prev = cur
    map_x, map_y = np.meshgrid(xx, yy)
    return cv2.remap(img, map_x.astype(np.float32), map_y.astype(np.float32),
                     interpolation=interpolation, borderMode=border_mode, borderValue=value)


def optical_distortion(img, k, dx, dy, interpolation, border_mode, value):
    height, width = img.shape[:2]
    fx = width
    fy = width
    cx = width * 0.5 + dx
    cy = height * 0.5 + dy
    camera_matrix = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float32)
    distortion = np.array([k, k, 0, 0, 0], dtype=np.float32)
    map1, map2 = cv2.initUndistortRectifyMap(camera_matrix, distortion, None, None,
                                             (width, height), cv2.CV_32FC1)
    return cv2.remap(img, map1, map2, interpolation=interpolation, borderMode=border_mode,
                     borderValue=value)


def brightness_contrast_adjust(img, alpha, beta, beta_by_max):
    if img.dtype == np.uint8:
        lut = np.arange(0, 256).astype("float32")
        if alpha != 1:
            lut *= alpha
        if beta != 0:
            lut += beta * 255 if beta_by_max else beta * np.mean(img)
        lut = np.clip(lut, 0, 255).astype(np.uint8)
        return cv2.LUT(img, lut)
    img = img.astype("float32")
    if alpha != 1:
        img *= alpha
    if beta != 0:
        img += beta * 1.0 if beta_by_max else beta * np.mean(img)
    return clip(img, np.float32, 1.0)


def gamma_transform(img, gamma, eps=1e-7):
    if img.dtype == np.uint8:
        inv_gamma = 1.0 / (gamma + eps)
        table = np.array([((i / 255.0) ** inv_gamma) * 255 for i in np.arange(0, 256)]).astype("uint8")
        return cv2.LUT(img, table)
    return np.power(img, gamma)


def gauss_noise(img, mean, sigma, seed):
    gauss = np.random.RandomState(seed).normal(mean, sigma, img.shape)
    return clip(img.astype("float32") + gauss, img.dtype, maxval(img))


def run(op, img, a):
    f, i = (lambda k: float(a[k])), (lambda k: int(a[k]))
    if op == "hflip":
        return np.ascontiguousarray(img[:, ::-1])
    if op == "vflip":
        return np.ascontiguousarray(img[::-1])
    if op == "ssr":
        return shift_scale_rotate(img, f("angle"), f("scale"), f("dx"), f("dy"), i("interp"),
                                  i("border"), f("value"))
    if op == "elastic":
        return elastic_transform(img, f("alpha"), f("sigma"), f("alpha_affine"), i("interp"),
                                 i("border"), f("value"), i("seed"), bool(i("approx")))
    if op == "grid":
        xs = [float(v) for v in a["xsteps"].split(",")]
        ys = [float(v) for v in a["ysteps"].split(",")]
        return grid_distortion(img, i("steps"), xs, ys, i("interp"), i("border"), f("value"))
    if op == "optical":
        return optical_distortion(img, f("k"), f("dx"), f("dy"), i("interp"), i("border"), f("value"))
    if op == "bc":
        return brightness_contrast_adjust(img, f("alpha"), f("beta"), bool(i("by_max")))
    if op == "gamma":
        return gamma_transform(img, f("gamma"))
    if op == "clahe":
        return cv2.createCLAHE(clipLimit=f("clip"), tileGridSize=(i("tw"), i("th"))).apply(img)
    if op == "noise":
        return gauss_noise(img, f("mean"), f("sigma"), i("seed"))
    if op == "blur":
        return cv2.blur(img, (i("k"), i("k")))
    if op == "dropout":
        out = img.copy()
        for hole in a["holes"].split(";"):
            x1, y1, x2, y2 = (int(v) for v in hole.split(","))
            out[y1:y2, x1:x2] = f("fill")
        return out
    if op == "random_crop":
        h, w = img.shape[:2]
        y1 = int((h - i("ch")) * f("hs"))
        x1 = int((w - i("cw")) * f("ws"))
        return img[y1:y1 + i("ch"), x1:x1 + i("cw")]
    if op == "center_crop":
        h, w = img.shape[:2]
        y1, x1 = (h - i("ch")) // 2, (w - i("cw")) // 2
        return img[y1:y1 + i("ch"), x1:x1 + i("cw")]
    if op == "resize":
        return cv2.resize(img, dsize=(i("w"), i("h")), interpolation=i("interp"))
    if op == "normalize":
        mean = np.array([f("mean")], dtype=np.float32)
        mean *= f("max")
        std = np.array([f("std")], dtype=np.float32)
        std *= f("max")
        denominator = np.reciprocal(std, dtype=np.float32)
        out = img.astype(np.float32)
        out -= mean
        out *= denominator
        return out
    if op == "to_float":
        return img.astype("float32") / f("max")
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
