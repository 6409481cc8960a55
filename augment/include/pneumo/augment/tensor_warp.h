// OpenCV's warps for batches of tensors on any device (CPU or GPU), through grid_sample.
//
// Coordinates are OpenCV's: pixel (x, y) has its centre at (x, y), so sampling at integer
// positions returns pixels unchanged. Border handling follows cv::BORDER_*: the continuous
// source position is folded back into the image (replicate, reflect, reflect_101) before
// bilinear interpolation, which gives OpenCV's values exactly (the folds map the pixel grid
// onto itself), and a constant border interpolates towards the fill value as OpenCV does.
// OpenCV rounds sampling positions to 1/32 pixel and, for 8-bit images, its weights to 1/2048;
// these functions do neither, so results differ from OpenCV's by that rounding only.
#pragma once

#include <ATen/core/Tensor.h>

namespace pneumo::augment {

enum class Border { kConstant, kReplicate, kReflect, kReflect101 };

// From cv::BORDER_CONSTANT (0), REPLICATE (1), REFLECT (2) or REFLECT_101 (4). Returns false for
// BORDER_WRAP (3) and anything else.
bool border_from_opencv(int cv_border, Border& out);

enum class Interpolation { kLinear, kNearest };

// cv::remap for a batch: out[n, c, i, j] = images[n, c] sampled at (x[n, i, j], y[n, i, j]).
// images: [N, C, H, W] float; x, y: [N, H', W'] float on the same device. `fill`: the value of
// pixels outside the image with Border::kConstant, one per channel ([C]) or one for all ([1]).
at::Tensor remap(const at::Tensor& images, const at::Tensor& x, const at::Tensor& y, Interpolation interpolation,
                 Border border, const at::Tensor& fill);

// cv::warpAffine for a batch (output the size of the input): `matrices` [N, 2, 3] (float64,
// any device) map source positions to destination positions, as OpenCV's do without
// WARP_INVERSE_MAP. Throws DataError for a singular matrix.
at::Tensor warp_affine(const at::Tensor& images, const at::Tensor& matrices, Interpolation interpolation,
                       Border border, const at::Tensor& fill);

// Smooths [N, 1, H, W] float fields over H and W: scipy.ndimage.gaussian_filter(field, sigma)
// (truncate 4, mode 'reflect'), or with `approximate`, cv::GaussianBlur(field, (17, 17), sigma)
// (its kernel, BORDER_REFLECT_101). Separable, as both are.
at::Tensor gaussian_smooth(const at::Tensor& fields, double sigma, bool approximate);

}  // namespace pneumo::augment
