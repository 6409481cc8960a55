#include "pneumo/augment/tensor_warp.h"

#include <cmath>
#include <vector>

#include <fmt/format.h>
#include <torch/torch.h>

#include "pneumo/core/error.h"
#include "pneumo/core/tensor_shape.h"

namespace pneumo::augment {

namespace {

// Folds continuous source positions into the image along an axis of `size` pixels, the way
// OpenCV's border modes index pixels outside it. Constant borders are left to the sampler.
at::Tensor fold(const at::Tensor& p, int64_t size, Border border) {
  const double last = static_cast<double>(size - 1);
  switch (border) {
    case Border::kConstant:
      return p;
    case Border::kReplicate:  // aaa|abcd|ddd
      return p.clamp(0.0, last);
    case Border::kReflect101: {  // cb|abcd|cb: mirrored about pixels 0 and size - 1
      const double period = 2.0 * last;
      const at::Tensor t = at::remainder(p, period);
      return at::where(t > last, period - t, t);
    }
    case Border::kReflect: {  // ba|abcd|dc: mirrored about -0.5 and size - 0.5
      const double period = 2.0 * static_cast<double>(size);
      const at::Tensor t = at::remainder(p + 0.5, period);
      return at::where(t > static_cast<double>(size), period - t, t) - 0.5;
    }
  }
  return p;
}

// For padded indices -radius .. size - 1 + radius, the pixel each reads under `border`
// (kReflect: scipy's 'reflect'; kReflect101: OpenCV's default), for any radius.
at::Tensor padded_indices(int64_t size, int64_t radius, Border border, const c10::Device& device) {
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(size + 2 * radius));
  for (int64_t i = -radius; i < size + radius; ++i) {
    int64_t t = 0;
    if (border == Border::kReflect) {
      const int64_t period = 2 * size;
      t = ((i % period) + period) % period;
      if (t >= size) t = period - 1 - t;
    } else if (size > 1) {  // kReflect101
      const int64_t period = 2 * (size - 1);
      t = ((i % period) + period) % period;
      if (t >= size) t = period - t;
    }
    out.push_back(t);
  }
  return torch::tensor(out, torch::kLong).to(device);
}

// Image coordinates -> grid_sample's [-1, 1] (align_corners: -1 and 1 are the outer pixels' centres).
at::Tensor normalise(const at::Tensor& p, int64_t size) { return p * (2.0 / static_cast<double>(size - 1)) - 1.0; }

void check_images(const at::Tensor& images, const char* what) {
  if (images.dim() != 4 || !images.is_floating_point())
    throw core::DataError(fmt::format("{}: expected [N, C, H, W] floating-point images; got {} {}", what,
                                      core::shape_string(images), c10::toString(images.scalar_type())));
  if (images.size(2) < 2 || images.size(3) < 2)
    throw core::DataError(fmt::format("{}: images of {}x{} pixels; warps need at least 2x2", what, images.size(3),
                                      images.size(2)));
}

}  // namespace

bool border_from_opencv(int cv_border, Border& out) {
  switch (cv_border) {
    case 0: out = Border::kConstant; return true;
    case 1: out = Border::kReplicate; return true;
    case 2: out = Border::kReflect; return true;
    case 4: out = Border::kReflect101; return true;
    default: return false;
  }
}

at::Tensor remap(const at::Tensor& images, const at::Tensor& x, const at::Tensor& y, Interpolation interpolation,
                 Border border, const at::Tensor& fill) {
  check_images(images, "remap");
  if (x.dim() != 3 || x.sizes() != y.sizes() || x.size(0) != images.size(0))
    throw core::DataError(fmt::format("remap: positions {} and {} do not fit images {}; expected [N, H', W'] each",
                                      core::shape_string(x), core::shape_string(y),
                                      core::shape_string(images)));
  const int64_t height = images.size(2), width = images.size(3);
  const at::Tensor grid = at::stack({normalise(fold(x.to(images.scalar_type()), width, border), width),
                                     normalise(fold(y.to(images.scalar_type()), height, border), height)},
                                    -1);
  const int64_t mode = interpolation == Interpolation::kNearest ? 1 : 0;  // grid_sample: bilinear 0, nearest 1
  if (border != Border::kConstant)  // positions are inside already; "border" padding guards rounding
    return at::grid_sampler(images, grid, mode, /*padding_mode=border*/ 1, /*align_corners=*/true);
  if (fill.numel() != 1 && fill.numel() != images.size(1))
    throw core::DataError(fmt::format("remap: {} fill values for {} channels", fill.numel(), images.size(1)));
  // Zero padding interpolates towards 0; shifting by the fill makes that the fill value.
  const at::Tensor f = fill.to(images.options()).reshape({1, -1, 1, 1});
  return at::grid_sampler(images - f, grid, mode, /*padding_mode=zeros*/ 0, /*align_corners=*/true) + f;
}

at::Tensor warp_affine(const at::Tensor& images, const at::Tensor& matrices, Interpolation interpolation,
                       Border border, const at::Tensor& fill) {
  check_images(images, "warp_affine");
  const int64_t n = images.size(0), height = images.size(2), width = images.size(3);
  if (matrices.dim() != 3 || matrices.size(0) != n || matrices.size(1) != 2 || matrices.size(2) != 3)
    throw core::DataError(fmt::format("warp_affine: matrices {} for {} images; expected [{}, 2, 3]", core::shape_string(matrices),
                                      n, n));
  // Destination -> source: the inverse of each [A | b] is [A^-1 | -A^-1 b], as OpenCV computes it.
  const at::Tensor m = matrices.to(torch::kCPU, torch::kDouble).contiguous();
  const double* a = m.data_ptr<double>();
  std::vector<double> inverse(static_cast<size_t>(6 * n));
  for (int64_t i = 0; i < n; ++i) {
    const double* r = a + 6 * i;
    const double det = r[0] * r[4] - r[1] * r[3];
    if (!(std::abs(det) > 1e-12) || !std::isfinite(det))
      throw core::DataError(fmt::format("warp_affine: matrix {} of the batch is singular (determinant {})", i, det));
    double* q = inverse.data() + 6 * i;
    q[0] = r[4] / det, q[1] = -r[1] / det, q[3] = -r[3] / det, q[4] = r[0] / det;
    q[2] = -(q[0] * r[2] + q[1] * r[5]);
    q[5] = -(q[3] * r[2] + q[4] * r[5]);
  }
  const auto options = images.options();
  const at::Tensor c = torch::tensor(inverse, torch::kDouble).to(options).reshape({n, 6, 1, 1});
  const at::Tensor xs = torch::arange(width, options).reshape({1, 1, width});
  const at::Tensor ys = torch::arange(height, options).reshape({1, height, 1});
  auto coefficient = [&](int64_t k) { return c.select(1, k); };  // [N, 1, 1]
  const at::Tensor x = coefficient(0) * xs + coefficient(1) * ys + coefficient(2);
  const at::Tensor y = coefficient(3) * xs + coefficient(4) * ys + coefficient(5);
  return remap(images, x, y, interpolation, border, fill);
}

at::Tensor gaussian_smooth(const at::Tensor& fields, double sigma, bool approximate) {
  if (fields.dim() != 4 || fields.size(1) != 1 || !fields.is_floating_point())
    throw core::DataError(fmt::format("gaussian_smooth: expected [N, 1, H, W] floating-point fields; got {} {}",
                                      core::shape_string(fields), c10::toString(fields.scalar_type())));
  if (!(sigma > 0.0)) throw core::DataError(fmt::format("gaussian_smooth: sigma must be > 0; got {}", sigma));
  // scipy: radius int(4 sigma + 0.5), weights exp(-x^2 / (2 sigma^2)) normalised; OpenCV's
  // getGaussianKernel(17, sigma) is the same formula over a fixed 17 taps.
  const int64_t radius = approximate ? 8 : static_cast<int64_t>(4.0 * sigma + 0.5);
  std::vector<double> weights;
  double sum = 0.0;
  for (int64_t i = -radius; i <= radius; ++i) {
    weights.push_back(std::exp(-0.5 * static_cast<double>(i * i) / (sigma * sigma)));
    sum += weights.back();
  }
  for (double& w : weights) w /= sum;
  const int64_t taps = 2 * radius + 1;
  const at::Tensor kernel = torch::tensor(weights, torch::kDouble).to(fields.options());
  const Border border = approximate ? Border::kReflect101 : Border::kReflect;
  const c10::Device device = fields.device();
  at::Tensor out = at::conv2d(fields.index_select(3, padded_indices(fields.size(3), radius, border, device)),
                              kernel.reshape({1, 1, 1, taps}));
  return at::conv2d(out.index_select(2, padded_indices(fields.size(2), radius, border, device)),
                    kernel.reshape({1, 1, taps, 1}));
}

}  // namespace pneumo::augment
