#include "pneumo/augment/functional.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <opencv2/calib3d.hpp>
#include <opencv2/imgproc.hpp>

#include "numpy_random.h"
#include "pneumo/core/error.h"

namespace pneumo::augment::fn {

namespace {

void require_one_channel(const cv::Mat& img, const char* op) {
  if (img.empty() || (img.type() != CV_8UC1 && img.type() != CV_32FC1))
    throw core::DataError(fmt::format(
        "{}: expected a one-channel 8-bit or float image; got {}x{} with {} channel(s), depth {}",
        op, img.cols, img.rows, img.channels(), img.depth()));
}

// scipy.ndimage 'reflect' boundary (d c b a | a b c d | d c b a), periodic for long reaches.
int reflect_index(int i, int n) {
  const int period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

// The hot loops of gaussian_filter, compiled for AVX2 as well as the baseline and chosen at run
// time. AVX2 alone (no FMA) keeps every multiply and add rounded separately, as in scipy.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PNEUMO_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PNEUMO_VECTOR_CLONES
#endif

// out = centre * w0, then out += (a + b) * wj for each pair of taps, element by element.
PNEUMO_VECTOR_CLONES
void scale_into(double* __restrict out, const double* __restrict centre, double w0, int n) {
  for (int i = 0; i < n; ++i) out[i] = centre[i] * w0;
}
PNEUMO_VECTOR_CLONES
void add_pair(double* __restrict out, const double* __restrict a, const double* __restrict b,
              double w, int n) {
  for (int i = 0; i < n; ++i) out[i] += (a[i] + b[i]) * w;
}

// scipy's correlate1d with a symmetric kernel along one line, in its summation order
// (centre tap first, then pairs from the outermost inwards), over a whole row at once so that
// the compiler vectorises across the row.
void correlate_row(const double* in, double* out, int n, const std::vector<double>& w,
                   std::vector<double>& line) {
  const int radius = static_cast<int>(w.size() / 2);
  const double* fw = w.data() + radius;  // fw[j] for j in -radius..radius
  line.resize(static_cast<size_t>(n + 2 * radius));
  for (int i = -radius; i < n + radius; ++i) line[i + radius] = in[reflect_index(i, n)];
  const double* l = line.data() + radius;
  scale_into(out, l, fw[0], n);
  for (int j = -radius; j < 0; ++j) add_pair(out, l + j, l - j, fw[j], n);
}

// The displacement grid of elastic_transform: index + offset, computed as numpy does
// (int64 + float32 -> float64, then float32).
void add_identity(cv::Mat& dx, cv::Mat& dy) {
  for (int y = 0; y < dx.rows; ++y) {
    float* px = dx.ptr<float>(y);
    float* py = dy.ptr<float>(y);
    for (int x = 0; x < dx.cols; ++x) {
      px[x] = static_cast<float>(static_cast<double>(x) + static_cast<double>(px[x]));
      py[x] = static_cast<float>(static_cast<double>(y) + static_cast<double>(py[x]));
    }
  }
}

// The clip-and-cast of Albumentations' @clipped on a double image.
cv::Mat clipped_to(const cv::Mat& values, int type) {
  cv::Mat out(values.size(), type);
  const double max = type == CV_8UC1 ? 255.0 : 1.0;
  for (int y = 0; y < values.rows; ++y) {
    const double* src = values.ptr<double>(y);
    for (int x = 0; x < values.cols; ++x) {
      const double v = std::min(std::max(src[x], 0.0), max);
      if (type == CV_8UC1)
        out.ptr<uint8_t>(y)[x] = static_cast<uint8_t>(v);  // numpy astype truncates
      else
        out.ptr<float>(y)[x] = static_cast<float>(v);
    }
  }
  return out;
}

}  // namespace

cv::Mat hflip(const cv::Mat& img) {
  cv::Mat out;
  cv::flip(img, out, 1);
  return out;
}

cv::Mat vflip(const cv::Mat& img) {
  cv::Mat out;
  cv::flip(img, out, 0);
  return out;
}

cv::Mat shift_scale_rotate(const cv::Mat& img, double angle, double scale, double dx, double dy,
                           int interpolation, int border_mode, double value) {
  const int height = img.rows, width = img.cols;
  const cv::Point2f center(static_cast<float>(width / 2.0), static_cast<float>(height / 2.0));
  cv::Mat matrix = cv::getRotationMatrix2D(center, angle, scale);
  matrix.at<double>(0, 2) += dx * width;
  matrix.at<double>(1, 2) += dy * height;
  cv::Mat out;
  cv::warpAffine(img, out, matrix, cv::Size(width, height), interpolation, border_mode,
                 cv::Scalar::all(value));
  return out;
}

cv::Mat gaussian_filter(const cv::Mat& field, double sigma) {
  CV_Assert(field.type() == CV_64FC1);
  const int radius = static_cast<int>(4.0 * sigma + 0.5);
  std::vector<double> w(2 * radius + 1);
  double sum = 0.0;
  const double c = -0.5 / (sigma * sigma);
  for (int i = -radius; i <= radius; ++i) sum += (w[i + radius] = std::exp(c * i * i));
  for (double& v : w) v /= sum;
  const double* fw = w.data() + radius;
  const int rows = field.rows, cols = field.cols;
  // Axis 0: each output row from the rows above and below it (reflected at the edges).
  cv::Mat first(field.size(), CV_64FC1), out(field.size(), CV_64FC1);
  for (int y = 0; y < rows; ++y) {
    double* dst = first.ptr<double>(y);
    scale_into(dst, field.ptr<double>(y), fw[0], cols);
    for (int j = -radius; j < 0; ++j)
      add_pair(dst, field.ptr<double>(reflect_index(y + j, rows)),
               field.ptr<double>(reflect_index(y - j, rows)), fw[j], cols);
  }
  // Axis 1: along each row.
  std::vector<double> line;
  for (int y = 0; y < rows; ++y) correlate_row(first.ptr<double>(y), out.ptr<double>(y), cols, w, line);
  return out;
}

namespace {

// The affine step of elastic_transform: three points jittered by up to alpha_affine, drawn first
// from the op's RandomState.
cv::Mat draw_elastic_affine(cv::Size size, double alpha_affine, NumpyRandomState& rs) {
  const int height = size.height, width = size.width;
  // Albumentations builds the affine triangle from (height, width) as if it were (x, y).
  const float c0 = static_cast<float>(height / 2), c1 = static_cast<float>(width / 2);
  const auto s = static_cast<float>(std::min(height, width) / 3);
  const cv::Point2f pts1[3] = {{c0 + s, c1 + s}, {c0 + s, c1 - s}, {c0 - s, c1 - s}};
  cv::Point2f pts2[3];
  for (int i = 0; i < 3; ++i) {
    const auto jx = static_cast<float>(rs.uniform(-alpha_affine, alpha_affine));
    const auto jy = static_cast<float>(rs.uniform(-alpha_affine, alpha_affine));
    pts2[i] = {pts1[i].x + jx, pts1[i].y + jy};
  }
  return cv::getAffineTransform(pts1, pts2);
}

}  // namespace

cv::Mat elastic_affine(cv::Size size, double alpha_affine, uint32_t random_state) {
  NumpyRandomState rs(random_state);
  return draw_elastic_affine(size, alpha_affine, rs);
}

ElasticField elastic_field(cv::Size size, double alpha, double sigma, double alpha_affine,
                           uint32_t random_state, bool approximate) {
  NumpyRandomState rs(random_state);
  const int height = size.height, width = size.width;
  ElasticField field;
  field.affine = draw_elastic_affine(size, alpha_affine, rs);

  cv::Mat dx(height, width, CV_32FC1), dy(height, width, CV_32FC1);
  for (cv::Mat* d : {&dx, &dy}) {
    if (approximate) {
      for (int y = 0; y < height; ++y) {
        float* p = d->ptr<float>(y);
        for (int x = 0; x < width; ++x) p[x] = static_cast<float>(rs.random_double()) * 2.0f - 1.0f;
      }
      cv::GaussianBlur(*d, *d, cv::Size(17, 17), sigma);
      const auto a = static_cast<float>(alpha);  // numpy multiplies float32 by float32(alpha)
      for (int y = 0; y < height; ++y) {
        float* p = d->ptr<float>(y);
        for (int x = 0; x < width; ++x) p[x] *= a;
      }
    } else {
      cv::Mat noise(height, width, CV_64FC1);
      for (int y = 0; y < height; ++y) {
        double* p = noise.ptr<double>(y);
        for (int x = 0; x < width; ++x) p[x] = rs.random_double() * 2.0 - 1.0;
      }
      const cv::Mat smooth = gaussian_filter(noise, sigma);
      for (int y = 0; y < height; ++y) {
        const double* src = smooth.ptr<double>(y);
        float* p = d->ptr<float>(y);
        for (int x = 0; x < width; ++x) p[x] = static_cast<float>(src[x] * alpha);
      }
    }
  }
  add_identity(dx, dy);
  field.map_x = dx;
  field.map_y = dy;
  return field;
}

cv::Mat apply_elastic(const cv::Mat& img, const ElasticField& field, int interpolation,
                      int border_mode, double value) {
  cv::Mat warped, out;
  cv::warpAffine(img, warped, field.affine, img.size(), interpolation, border_mode, cv::Scalar::all(value));
  cv::remap(warped, out, field.map_x, field.map_y, interpolation, border_mode, cv::Scalar::all(value));
  return out;
}

cv::Mat elastic_transform(const cv::Mat& img, double alpha, double sigma, double alpha_affine,
                          int interpolation, int border_mode, double value, uint32_t random_state,
                          bool approximate) {
  return apply_elastic(img, elastic_field(img.size(), alpha, sigma, alpha_affine, random_state, approximate),
                       interpolation, border_mode, value);
}

cv::Mat grid_distortion(const cv::Mat& img, int num_steps, const std::vector<double>& xsteps,
                        const std::vector<double>& ysteps, int interpolation, int border_mode,
                        double value) {
  // One axis: cells of `step` pixels, each stretched by its factor, the last one ending at the
  // image edge; values as np.linspace(prev, cur, n) stored in float32.
  const auto axis = [&](int size, const std::vector<double>& steps, const char* name) {
    const int step = size / num_steps;
    if (step < 1)
      throw core::DataError(fmt::format("GridDistortion: image {} of {} is smaller than num_steps {}",
                                        name, size, num_steps));
    std::vector<float> grid(size, 0.0f);
    double prev = 0.0;
    for (int idx = 0, start = 0; start < size; ++idx, start += step) {
      int end = start + step;
      double cur;
      if (end > size) {
        end = size;
        cur = size;
      } else {
        if (idx >= static_cast<int>(steps.size()))
          throw core::DataError(fmt::format(
              "GridDistortion: image {} {} needs more than num_steps + 1 = {} cells; use an image "
              "at least num_steps^2 pixels wide or fewer steps",
              name, size, steps.size()));
        cur = prev + step * steps[idx];
      }
      const int n = end - start;
      const double delta = n > 1 ? (cur - prev) / (n - 1) : 0.0;
      for (int i = 0; i < n; ++i)
        grid[start + i] = static_cast<float>(i == n - 1 && n > 1 ? cur : prev + i * delta);
      prev = cur;
    }
    return grid;
  };
  const std::vector<float> xx = axis(img.cols, xsteps, "width");
  const std::vector<float> yy = axis(img.rows, ysteps, "height");
  cv::Mat map_x(img.size(), CV_32FC1), map_y(img.size(), CV_32FC1);
  for (int y = 0; y < img.rows; ++y)
    for (int x = 0; x < img.cols; ++x) {
      map_x.at<float>(y, x) = xx[x];
      map_y.at<float>(y, x) = yy[y];
    }
  cv::Mat out;
  cv::remap(img, out, map_x, map_y, interpolation, border_mode, cv::Scalar::all(value));
  return out;
}

cv::Mat optical_distortion(const cv::Mat& img, double k, double dx, double dy, int interpolation,
                           int border_mode, double value) {
  const int height = img.rows, width = img.cols;
  // Focal lengths: the width and the height, as Albumentations 0.4.6.
  const cv::Matx33f camera(static_cast<float>(width), 0.0f, static_cast<float>(width * 0.5 + dx),
                           0.0f, static_cast<float>(height), static_cast<float>(height * 0.5 + dy),
                           0.0f, 0.0f, 1.0f);
  const cv::Matx<float, 1, 5> distortion(static_cast<float>(k), static_cast<float>(k), 0, 0, 0);
  cv::Mat map1, map2;
  cv::initUndistortRectifyMap(camera, distortion, cv::noArray(), cv::noArray(),
                              cv::Size(width, height), CV_32FC1, map1, map2);
  cv::Mat out;
  cv::remap(img, out, map1, map2, interpolation, border_mode, cv::Scalar::all(value));
  return out;
}

cv::Mat brightness_contrast_adjust(const cv::Mat& img, double alpha, double beta, bool beta_by_max) {
  require_one_channel(img, "brightness/contrast");
  if (img.type() == CV_8UC1) {
    const float shift = beta == 0.0 ? 0.0f
                                    : static_cast<float>(beta * (beta_by_max ? 255.0 : cv::mean(img)[0]));
    cv::Mat lut(1, 256, CV_8UC1);
    for (int i = 0; i < 256; ++i) {
      float v = static_cast<float>(i);
      if (alpha != 1.0) v *= static_cast<float>(alpha);
      if (beta != 0.0) v += shift;
      lut.at<uint8_t>(i) = static_cast<uint8_t>(std::min(std::max(v, 0.0f), 255.0f));
    }
    cv::Mat out;
    cv::LUT(img, lut, out);
    return out;
  }
  cv::Mat out = img.clone();
  if (alpha != 1.0) out *= static_cast<float>(alpha);
  if (beta != 0.0) out += cv::Scalar::all(static_cast<float>(beta * (beta_by_max ? 1.0 : cv::mean(out)[0])));
  cv::min(cv::max(out, 0.0), 1.0, out);
  return out;
}

cv::Mat gamma_transform(const cv::Mat& img, double gamma) {
  require_one_channel(img, "RandomGamma");
  if (img.type() == CV_8UC1) {
    // numpy's arange(0, 256 / 255, 1 / 255) holds i * (1 / 255), not i / 255.
    cv::Mat lut(1, 256, CV_8UC1);
    for (int i = 0; i < 256; ++i)
      lut.at<uint8_t>(i) = static_cast<uint8_t>(std::pow(i * (1.0 / 255.0), gamma) * 255.0);
    cv::Mat out;
    cv::LUT(img, lut, out);
    return out;
  }
  cv::Mat out(img.size(), CV_32FC1);
  const auto g = static_cast<float>(gamma);
  for (int y = 0; y < img.rows; ++y)
    for (int x = 0; x < img.cols; ++x) out.at<float>(y, x) = std::pow(img.at<float>(y, x), g);
  return out;
}

cv::Mat clahe(const cv::Mat& img, double clip_limit, int tile_width, int tile_height) {
  if (img.type() != CV_8UC1)
    throw core::DataError("CLAHE: works on 8-bit images only; put it before ToFloat/Normalize");
  cv::Mat out;
  cv::createCLAHE(clip_limit, cv::Size(tile_width, tile_height))->apply(img, out);
  return out;
}

cv::Mat gauss_noise(const cv::Mat& img, double mean, double sigma, uint32_t random_state) {
  require_one_channel(img, "GaussNoise");
  NumpyRandomState rs(random_state);
  cv::Mat values;
  img.convertTo(values, CV_64FC1);
  for (int y = 0; y < values.rows; ++y) {
    double* p = values.ptr<double>(y);
    for (int x = 0; x < values.cols; ++x) p[x] += rs.normal(mean, sigma);
  }
  return clipped_to(values, img.type());
}

cv::Mat blur(const cv::Mat& img, int ksize) {
  cv::Mat out;
  cv::blur(img, out, cv::Size(ksize, ksize));
  return out;
}

cv::Mat coarse_dropout(const cv::Mat& img, const std::vector<cv::Rect>& holes, double fill_value) {
  cv::Mat out = img.clone();
  for (const cv::Rect& hole : holes) out(hole & cv::Rect(0, 0, img.cols, img.rows)).setTo(fill_value);
  return out;
}

cv::Mat random_crop(const cv::Mat& img, int crop_height, int crop_width, double h_start, double w_start) {
  if (crop_height > img.rows || crop_width > img.cols)
    throw core::DataError(fmt::format(
        "crop of {}x{} (height x width) is larger than the {}x{} image", crop_height, crop_width,
        img.rows, img.cols));
  const int y1 = static_cast<int>((img.rows - crop_height) * h_start);
  const int x1 = static_cast<int>((img.cols - crop_width) * w_start);
  return img(cv::Rect(x1, y1, crop_width, crop_height)).clone();
}

cv::Mat center_crop(const cv::Mat& img, int crop_height, int crop_width) {
  if (crop_height > img.rows || crop_width > img.cols)
    throw core::DataError(fmt::format(
        "CenterCrop of {}x{} (height x width) is larger than the {}x{} image", crop_height,
        crop_width, img.rows, img.cols));
  const int y1 = (img.rows - crop_height) / 2;
  const int x1 = (img.cols - crop_width) / 2;
  return img(cv::Rect(x1, y1, crop_width, crop_height)).clone();
}

cv::Mat resize(const cv::Mat& img, int height, int width, int interpolation) {
  if (img.rows == height && img.cols == width) return img;
  cv::Mat out;
  cv::resize(img, out, cv::Size(width, height), 0, 0, interpolation);
  return out;
}

cv::Mat normalize(const cv::Mat& img, double mean, double std, double max_pixel_value) {
  const float m = static_cast<float>(mean) * static_cast<float>(max_pixel_value);
  const float denominator = 1.0f / (static_cast<float>(std) * static_cast<float>(max_pixel_value));
  cv::Mat out;
  img.convertTo(out, CV_32FC1);
  for (int y = 0; y < out.rows; ++y) {
    float* p = out.ptr<float>(y);
    for (int x = 0; x < out.cols; ++x) p[x] = (p[x] - m) * denominator;
  }
  return out;
}

cv::Mat to_float(const cv::Mat& img, double max_value) {
  const auto divisor = static_cast<float>(max_value);
  cv::Mat out;
  img.convertTo(out, CV_32FC1);
  for (int y = 0; y < out.rows; ++y) {
    float* p = out.ptr<float>(y);
    for (int x = 0; x < out.cols; ++x) p[x] /= divisor;
  }
  return out;
}

}  // namespace pneumo::augment::fn
