// The image operations behind the transforms, with every random choice already made: the
// formulas of Albumentations 0.4.x (albumentations/augmentations/functional.py), so a result
// can be compared with the Python library's pixel for pixel.
//
// Images are one channel, CV_8UC1 (0..255) or CV_32FC1 (0..1 by convention). `interpolation`
// and `border_mode` are OpenCV's flags (cv::INTER_*, cv::BORDER_*), as in Albumentations.
// Spatial functions are applied to masks with cv::INTER_NEAREST and the mask fill value.
#pragma once

#include <cstdint>
#include <vector>

#include <opencv2/core/mat.hpp>

namespace pneumo::augment::fn {

cv::Mat hflip(const cv::Mat& img);
cv::Mat vflip(const cv::Mat& img);

// Rotation by `angle` degrees and scaling about the centre, then a shift of (dx * width,
// dy * height) pixels.
cv::Mat shift_scale_rotate(const cv::Mat& img, double angle, double scale, double dx, double dy,
                           int interpolation, int border_mode, double value);

// A random affine warp (corner jitter up to alpha_affine) then a displacement field of
// Gaussian-smoothed noise (sigma) scaled by alpha. The noise comes from numpy's legacy
// RandomState(random_state), reproduced exactly; `approximate` smooths with a 17x17
// cv::GaussianBlur instead of scipy's gaussian_filter.
cv::Mat elastic_transform(const cv::Mat& img, double alpha, double sigma, double alpha_affine,
                          int interpolation, int border_mode, double value, uint32_t random_state,
                          bool approximate);

// elastic_transform in two steps, so an image and its mask share one field (Albumentations
// draws and smooths it twice, once per target; the result is the same).
struct ElasticField {
  cv::Mat affine;        // 2x3
  cv::Mat map_x, map_y;  // CV_32FC1 sampling positions
};
ElasticField elastic_field(cv::Size size, double alpha, double sigma, double alpha_affine,
                           uint32_t random_state, bool approximate);
cv::Mat apply_elastic(const cv::Mat& img, const ElasticField& field, int interpolation,
                      int border_mode, double value);
// Only the affine step's matrix (ElasticField::affine for the same size, alpha_affine and
// random_state), without drawing the noise.
cv::Mat elastic_affine(cv::Size size, double alpha_affine, uint32_t random_state);

// Piecewise-linear stretching of num_steps cells per axis by the given factors
// (num_steps + 1 of each).
cv::Mat grid_distortion(const cv::Mat& img, int num_steps, const std::vector<double>& xsteps,
                        const std::vector<double>& ysteps, int interpolation, int border_mode,
                        double value);

// Barrel (k > 0) or pincushion (k < 0) distortion about the centre shifted by (dx, dy) pixels.
cv::Mat optical_distortion(const cv::Mat& img, double k, double dx, double dy, int interpolation,
                           int border_mode, double value);

// img * alpha + beta * (255 or 1.0 if beta_by_max, else the image mean), clipped.
cv::Mat brightness_contrast_adjust(const cv::Mat& img, double alpha, double beta, bool beta_by_max);

// 8-bit: a lookup table of (i/255)^gamma * 255 (truncated); float: img^gamma.
cv::Mat gamma_transform(const cv::Mat& img, double gamma);

// Contrast-limited adaptive histogram equalisation; 8-bit only (DataError otherwise).
cv::Mat clahe(const cv::Mat& img, double clip_limit, int tile_width, int tile_height);

// img + normal(mean, sigma) noise from numpy's legacy RandomState(random_state), clipped.
cv::Mat gauss_noise(const cv::Mat& img, double mean, double sigma, uint32_t random_state);

cv::Mat blur(const cv::Mat& img, int ksize);

// Fills each rectangle with `fill_value`.
cv::Mat coarse_dropout(const cv::Mat& img, const std::vector<cv::Rect>& holes, double fill_value);

// Crop of crop_height x crop_width at ((height - crop_height) * h_start, ...), truncated.
// DataError when the crop is larger than the image.
cv::Mat random_crop(const cv::Mat& img, int crop_height, int crop_width, double h_start,
                    double w_start);
cv::Mat center_crop(const cv::Mat& img, int crop_height, int crop_width);
cv::Mat resize(const cv::Mat& img, int height, int width, int interpolation);

// (img - mean * max_pixel_value) / (std * max_pixel_value) as float.
cv::Mat normalize(const cv::Mat& img, double mean, double std, double max_pixel_value);
// img / max_value as float.
cv::Mat to_float(const cv::Mat& img, double max_value);

// scipy.ndimage.gaussian_filter(field, sigma) with its defaults (mode 'reflect',
// truncate 4.0), in double precision. Exposed for tests.
cv::Mat gaussian_filter(const cv::Mat& field, double sigma);

}  // namespace pneumo::augment::fn
