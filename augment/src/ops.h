// The op table behind Pipeline: each Albumentations name maps to a factory that reads the op's
// parameters and returns the transform.
#pragma once

#include <functional>
#include <string>

#include "op_params.h"
#include "pneumo/augment/pipeline.h"
#include "pneumo/core/registry.h"

namespace pneumo::augment {

using OpFactory = std::function<TransformPtr(OpParams&)>;

core::Registry<OpFactory>& op_registry();

void register_spatial_ops(core::Registry<OpFactory>& registry);
void register_pixel_ops(core::Registry<OpFactory>& registry);
void register_composition_ops(core::Registry<OpFactory>& registry);

// One list item, `Name` or `{Name: {params}}`, split into the name and its parameters (null
// when none). `path` names the item in errors.
struct OpItem {
  std::string name;
  const core::ConfigNode* params;
};
OpItem split_op_item(const core::ConfigNode& item, const std::string& path);

// One list item: `Name`, or `{Name: {params}}`. `path` names it in errors.
TransformPtr build_transform(const core::ConfigNode& item, const std::string& path);

// p (in [0, 1], default `default_p`) and always_apply, which every op takes.
Probability read_probability(OpParams& params, double default_p);

// The fill and interpolation settings every warping op shares: OpenCV's flags and fill values
// (grey levels), Albumentations' defaults (linear, reflect_101, 0).
struct WarpSettings {
  int interpolation;
  int border_mode;
  double value;
  double mask_value;
};
WarpSettings read_warp_settings(OpParams& params);

// ShiftScaleRotate's and ElasticTransform's parameters and draws, shared by the loader's ops and
// the device's (batch_pipeline.cpp), so that both read the same keys and defaults and draw in
// the same order.
struct ShiftScaleRotateParams {
  Range shift, scale, rotate;
  static ShiftScaleRotateParams read(OpParams& params);
  struct Draw {
    double angle, scale, dx, dy;
  };
  Draw draw(core::Rng& rng) const;
};

struct ElasticParams {
  double alpha, sigma, alpha_affine;
  bool approximate;
  static ElasticParams read(OpParams& params);
  // The seed of numpy's RandomState that the op's affine step and noise come from.
  static uint32_t draw_random_state(core::Rng& rng);
};

// Checks shared by the ops.
core::Check<double> positive();
core::Check<double> non_negative();
core::Check<int> positive_int();

}  // namespace pneumo::augment
