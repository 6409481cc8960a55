#include "pneumo/augment/pipeline.h"

#include <fmt/format.h>
#include <opencv2/imgproc.hpp>

#include "ops.h"
#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"

namespace pneumo::augment {

namespace fs = std::filesystem;

namespace {

std::vector<TransformPtr> build_list(const core::ConfigNode& list, const std::string& path) {
  if (!list.is_sequence())
    throw core::ConfigError(fmt::format("{} {}: expected a list of ops (- Name: {{params}}); got {}",
                                        list.where().str(), path, list.kind_name()));
  std::vector<TransformPtr> out;
  for (size_t i = 0; i < list.items().size(); ++i)
    out.push_back(build_transform(list.items()[i], fmt::format("{}[{}]", path, i)));
  return out;
}

// Compose(transforms, p=1.0): with probability p, each child in order (each with its own p).
class Compose : public Transform {
 public:
  explicit Compose(OpParams& params)
      : Transform("Compose", read_probability(params, 1.0)), children_(children(params)) {}

 protected:
  void apply(Target& t, core::Rng& rng) const override {
    for (const TransformPtr& child : children_) (*child)(t, rng);
  }

 private:
  static std::vector<TransformPtr> children(OpParams& params) {
    const core::ConfigNode* node = params.child("transforms");
    if (node == nullptr) params.fail("transforms", "required: the list of ops to apply");
    return build_list(*node, params.path() + ".transforms");
  }
  std::vector<TransformPtr> children_;
};

// OneOf(transforms, p=0.5): with probability p, one child chosen with probability proportional
// to its p, then applied unconditionally.
class OneOf : public Transform {
 public:
  explicit OneOf(OpParams& params) : Transform("OneOf", read_probability(params, 0.5)) {
    const core::ConfigNode* node = params.child("transforms");
    if (node == nullptr) params.fail("transforms", "required: the ops to choose from");
    children_ = build_list(*node, params.path() + ".transforms");
    if (children_.empty()) params.fail("transforms", "needs at least one op");
    double total = 0.0;
    for (const TransformPtr& child : children_) total += child->p();
    if (!(total > 0.0)) params.fail("transforms", "the children's p values sum to 0");
    double running = 0.0;
    for (const TransformPtr& child : children_) cumulative_.push_back((running += child->p()) / total);
  }

 protected:
  void apply(Target& t, core::Rng& rng) const override {
    const double u = rng.uniform();
    size_t pick = 0;
    while (pick + 1 < cumulative_.size() && u >= cumulative_[pick]) ++pick;
    (*children_[pick])(t, rng, /*force=*/true);
  }

 private:
  std::vector<TransformPtr> children_;
  std::vector<double> cumulative_;
};

}  // namespace

void Transform::operator()(Target& target, core::Rng& rng, bool force) const {
  if (force || always_apply_ || rng.uniform() < p_) {
    try {
      apply(target, rng);
    } catch (const core::DataError& e) {
      const std::string message = e.what();
      if (message.rfind(name_, 0) == 0) throw;  // already names the op
      throw core::DataError(fmt::format("{}: {}", name_, message));
    }
  }
}

Probability read_probability(OpParams& params, double default_p) {
  Probability p;
  p.p = params.number("p", default_p, core::in_range(0.0, 1.0));
  p.always_apply = params.flag("always_apply", false);
  return p;
}

WarpSettings read_warp_settings(OpParams& params) {
  WarpSettings s{};
  s.interpolation = params.interpolation("interpolation", cv::INTER_LINEAR);
  s.border_mode = params.border_mode("border_mode", cv::BORDER_REFLECT_101);
  s.value = params.optional_number("value").value_or(0.0);
  s.mask_value = params.optional_number("mask_value").value_or(0.0);
  return s;
}

ShiftScaleRotateParams ShiftScaleRotateParams::read(OpParams& params) {
  ShiftScaleRotateParams p;
  p.shift = params.range("shift_limit", {-0.0625, 0.0625});
  p.scale = params.range("scale_limit", {-0.1, 0.1}, {}, 1.0, positive());
  p.rotate = params.range("rotate_limit", {-45, 45});
  return p;
}

ShiftScaleRotateParams::Draw ShiftScaleRotateParams::draw(core::Rng& rng) const {
  Draw d{};
  d.angle = rng.uniform(rotate.lo, rotate.hi);
  d.scale = rng.uniform(scale.lo, scale.hi);
  d.dx = rng.uniform(shift.lo, shift.hi);
  d.dy = rng.uniform(shift.lo, shift.hi);
  return d;
}

ElasticParams ElasticParams::read(OpParams& params) {
  ElasticParams p{};
  p.alpha = params.number("alpha", 1.0, non_negative());
  p.sigma = params.number("sigma", 50.0, positive());
  p.alpha_affine = params.number("alpha_affine", 50.0, non_negative());
  p.approximate = params.flag("approximate", false);
  return p;
}

uint32_t ElasticParams::draw_random_state(core::Rng& rng) { return static_cast<uint32_t>(rng.randint(0, 10000)); }

core::Check<double> positive() {
  return {"> 0", [](const double& v) { return v > 0.0; }};
}
core::Check<double> non_negative() { return core::at_least(0.0); }
core::Check<int> positive_int() { return core::at_least(1); }

void register_composition_ops(core::Registry<OpFactory>& registry) {
  registry.add("Compose", [](OpParams& p) { return std::make_shared<Compose>(p); });
  registry.add("OneOf", [](OpParams& p) { return std::make_shared<OneOf>(p); });
}

core::Registry<OpFactory>& op_registry() {
  static core::Registry<OpFactory>* registry = [] {
    auto* r = new core::Registry<OpFactory>("augmentation op");
    register_spatial_ops(*r);
    register_pixel_ops(*r);
    register_composition_ops(*r);
    return r;
  }();
  return *registry;
}

OpItem split_op_item(const core::ConfigNode& item, const std::string& path) {
  if (item.is_scalar()) return {item.text(), nullptr};
  if (item.is_map() && item.entries().size() == 1) return {item.entries()[0].key, &item.entries()[0].value};
  throw core::ConfigError(fmt::format(
      "{} {}: expected an op: a name (HorizontalFlip) or one name with its parameters "
      "(HorizontalFlip: {{p: 0.5}}); got {}",
      item.where().str(), path, item.is_map() ? "a map with several keys" : item.kind_name()));
}

TransformPtr build_transform(const core::ConfigNode& item, const std::string& path) {
  const auto [name, params] = split_op_item(item, path);
  const OpFactory* factory = op_registry().find(name);
  if (factory == nullptr)
    throw core::ConfigError(fmt::format("{} {}: {}", item.where().str(), path,
                                        op_registry().unknown_message(name)));
  OpParams op_params(name, params, path + "." + name, item.where());
  TransformPtr transform = (*factory)(op_params);
  op_params.finish();
  return transform;
}

namespace {

core::ConfigNode read_pipeline_file(const fs::path& file) {
  core::ConfigNode root = core::parse_yaml(core::read_text_file(file), file.string());
  if (!root.is_sequence())
    throw core::ConfigError(fmt::format("{}: expected a pipeline file: a YAML list of ops; got {}",
                                        file.string(), root.kind_name()));
  return root;
}

}  // namespace

core::ConfigNode inline_pipeline_file(const core::ConfigNode& node) {
  if (!node.is_scalar()) return node;
  // Relative to the file that names it (or to the working folder for a --set).
  fs::path file = node.text();
  const fs::path origin = node.where().source;
  if (file.is_relative() && node.where().line > 0 && origin.has_parent_path())
    file = origin.parent_path() / file;
  try {
    return read_pipeline_file(file);
  } catch (const core::IoError& e) {
    throw core::ConfigError(fmt::format("{} pipeline file: {}", node.where().str(), e.what()));
  }
}

Pipeline Pipeline::from_config(const core::ConfigNode& node, const std::string& path) {
  if (node.is_null()) return {};
  if (node.is_scalar()) return from_config(inline_pipeline_file(node), path);
  Pipeline pipeline;
  pipeline.transforms_ = build_list(node, path);
  return pipeline;
}

Pipeline Pipeline::from_file(const fs::path& file) {
  return from_config(read_pipeline_file(file), file.filename().string());
}

void Pipeline::apply(Target& target, core::Rng& rng) const {
  for (const TransformPtr& transform : transforms_) (*transform)(target, rng);
}

void Pipeline::apply(cv::Mat& image, cv::Mat& mask, core::Rng& rng) const {
  Target target{image, mask};
  apply(target, rng);
  image = target.image;
  mask = target.mask;
}

std::vector<std::string> op_names() { return op_registry().names(); }

}  // namespace pneumo::augment
