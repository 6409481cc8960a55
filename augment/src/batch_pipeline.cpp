#include "pneumo/augment/batch_pipeline.h"

#include <functional>

#include <fmt/format.h>
#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include "ops.h"
#include "pneumo/augment/functional.h"
#include "pneumo/augment/tensor_warp.h"
#include "pneumo/core/error.h"
#include "pneumo/core/random.h"
#include "pneumo/core/registry.h"
#include "pneumo/core/tensor_shape.h"

namespace pneumo::augment {

namespace {

// Keeps the device pipeline's draws apart from the loader's, which are seeded from the same seed.
constexpr uint64_t kBatchStream = 0x626174636821ULL;

// Grey levels (0..255) -> the batch's normalised values, per channel.
struct Normalisation {
  at::Tensor scale, offset;  // [C] on the batch's device
  at::Tensor image_fill(double grey) const { return scale * grey + offset; }
};

}  // namespace

// One op of a BatchPipeline. Draws per sample on the CPU, then warps all chosen samples at once.
class BatchOp {
 public:
  BatchOp(std::string name, Probability probability)
      : name_(std::move(name)), p_(probability.p), always_apply_(probability.always_apply) {}
  virtual ~BatchOp() = default;

  const std::string& name() const { return name_; }

  // Transform's decision: no draw with always_apply, else one uniform draw against p.
  bool applies(core::Rng& rng) const { return always_apply_ || rng.uniform() < p_; }
  // The op's random parameters for one sample, drawn as Pipeline's op draws them.
  virtual std::vector<double> draw(core::Rng&) const { return {}; }
  // Applies to the chosen samples: `draws` and `seeds` (for noise drawn on the device) have one
  // entry per sample of `images`.
  virtual void apply(at::Tensor& images, at::Tensor& masks, const std::vector<std::vector<double>>& draws,
                     const std::vector<uint64_t>& seeds, const Normalisation& normalisation) const = 0;

 private:
  std::string name_;
  double p_;
  bool always_apply_;
};

namespace {

// WarpSettings as the device runs them.
struct DeviceWarp {
  Interpolation interpolation;
  Border border;
  double value;
  double mask_value;

  static DeviceWarp read(OpParams& params) {
    const WarpSettings s = read_warp_settings(params);
    DeviceWarp w{};
    if (s.interpolation != cv::INTER_LINEAR && s.interpolation != cv::INTER_NEAREST)
      params.fail("interpolation", "on the device: linear or nearest");
    w.interpolation = s.interpolation == cv::INTER_NEAREST ? Interpolation::kNearest : Interpolation::kLinear;
    if (!border_from_opencv(s.border_mode, w.border))
      params.fail("border_mode", "on the device: constant, replicate, reflect or reflect_101 (not wrap)");
    w.value = s.value;
    w.mask_value = s.mask_value;
    return w;
  }

  // The image with the op's interpolation, the mask with nearest neighbour (masks hold 0..1).
  template <class Warp>
  void both(at::Tensor& images, at::Tensor& masks, const Normalisation& n, Warp warp) const {
    images = warp(images, interpolation, n.image_fill(value));
    if (masks.defined())
      masks = warp(masks, Interpolation::kNearest, torch::full({1}, mask_value / 255.0, masks.options()));
  }

  // Both through warp_affine with one matrix per sample ([N, 2, 3]).
  void affine(at::Tensor& images, at::Tensor& masks, const Normalisation& n, const at::Tensor& matrices) const {
    both(images, masks, n, [&](const at::Tensor& x, Interpolation i, const at::Tensor& fill) {
      return warp_affine(x, matrices, i, border, fill);
    });
  }
};

at::Tensor matrices_tensor(const std::vector<cv::Mat>& matrices, const at::Tensor& like) {
  std::vector<double> values;
  for (const cv::Mat& m : matrices)
    for (int r = 0; r < 2; ++r)
      for (int c = 0; c < 3; ++c) values.push_back(m.at<double>(r, c));
  return torch::tensor(values, torch::kDouble).reshape({static_cast<int64_t>(matrices.size()), 2, 3}).to(like.device());
}

class Flip : public BatchOp {
 public:
  Flip(const char* name, OpParams& params, bool horizontal)
      : BatchOp(name, read_probability(params, 0.5)), dim_(horizontal ? 3 : 2) {}

  void apply(at::Tensor& images, at::Tensor& masks, const std::vector<std::vector<double>>&,
             const std::vector<uint64_t>&, const Normalisation&) const override {
    images = images.flip({dim_});
    if (masks.defined()) masks = masks.flip({dim_});
  }

 private:
  int64_t dim_;
};

class ShiftScaleRotate : public BatchOp {
 public:
  explicit ShiftScaleRotate(OpParams& params)
      : BatchOp("ShiftScaleRotate", read_probability(params, 0.5)),
        params_(ShiftScaleRotateParams::read(params)),
        warp_(DeviceWarp::read(params)) {}

  std::vector<double> draw(core::Rng& rng) const override {
    const ShiftScaleRotateParams::Draw d = params_.draw(rng);
    return {d.angle, d.scale, d.dx, d.dy};
  }

  void apply(at::Tensor& images, at::Tensor& masks, const std::vector<std::vector<double>>& draws,
             const std::vector<uint64_t>&, const Normalisation& n) const override {
    const int64_t height = images.size(2), width = images.size(3);
    // fn::shift_scale_rotate's matrix: about the centre, then shifted by a fraction of the size.
    const cv::Point2f center(static_cast<float>(width / 2.0), static_cast<float>(height / 2.0));
    std::vector<cv::Mat> matrices;
    for (const std::vector<double>& d : draws) {
      cv::Mat m = cv::getRotationMatrix2D(center, d[0], d[1]);
      m.at<double>(0, 2) += d[2] * static_cast<double>(width);
      m.at<double>(1, 2) += d[3] * static_cast<double>(height);
      matrices.push_back(m);
    }
    warp_.affine(images, masks, n, matrices_tensor(matrices, images));
  }

 private:
  ShiftScaleRotateParams params_;
  DeviceWarp warp_;
};

class ElasticTransform : public BatchOp {
 public:
  explicit ElasticTransform(OpParams& params)
      : BatchOp("ElasticTransform", read_probability(params, 0.5)),
        params_(ElasticParams::read(params)),
        warp_(DeviceWarp::read(params)) {}

  // The loader's op draws the seed of numpy's RandomState; its affine step uses it here too.
  std::vector<double> draw(core::Rng& rng) const override {
    return {static_cast<double>(ElasticParams::draw_random_state(rng))};
  }

  void apply(at::Tensor& images, at::Tensor& masks, const std::vector<std::vector<double>>& draws,
             const std::vector<uint64_t>& seeds, const Normalisation& n) const override {
    const int64_t count = images.size(0), height = images.size(2), width = images.size(3);
    std::vector<cv::Mat> affine;
    for (const std::vector<double>& d : draws)
      affine.push_back(fn::elastic_affine(cv::Size(static_cast<int>(width), static_cast<int>(height)),
                                          params_.alpha_affine, static_cast<uint32_t>(d[0])));
    warp_.affine(images, masks, n, matrices_tensor(affine, images));

    // The displacement: uniform noise in [-1, 1) per pixel and axis, smoothed, times alpha,
    // drawn on the device from a private generator seeded per sample.
    at::Generator generator = at::globalContext().defaultGenerator(images.device()).clone();
    std::vector<at::Tensor> noise;
    const auto options = images.options().dtype(torch::kFloat32);
    for (const uint64_t seed : seeds) {
      generator.set_current_seed(seed);
      noise.push_back(at::rand({2, 1, height, width}, generator, options));
    }
    const at::Tensor field =
        (gaussian_smooth(at::cat(noise) * 2.0 - 1.0, params_.sigma, params_.approximate) * params_.alpha)
            .reshape({count, 2, height, width});
    const at::Tensor x = torch::arange(width, options).reshape({1, 1, width}) + field.select(1, 0);
    const at::Tensor y = torch::arange(height, options).reshape({1, height, 1}) + field.select(1, 1);
    warp_.both(images, masks, n, [&](const at::Tensor& t, Interpolation i, const at::Tensor& fill) {
      return remap(t, x, y, i, warp_.border, fill);
    });
  }

 private:
  ElasticParams params_;
  DeviceWarp warp_;
};

using BatchOpFactory = std::function<std::shared_ptr<const BatchOp>(OpParams&)>;

core::Registry<BatchOpFactory>& batch_ops() {
  static core::Registry<BatchOpFactory>* registry = [] {
    auto* r = new core::Registry<BatchOpFactory>("op on the device");
    r->add("HorizontalFlip", [](OpParams& p) { return std::make_shared<Flip>("HorizontalFlip", p, true); });
    r->add("VerticalFlip", [](OpParams& p) { return std::make_shared<Flip>("VerticalFlip", p, false); });
    r->add("ShiftScaleRotate", [](OpParams& p) { return std::make_shared<ShiftScaleRotate>(p); });
    r->add("ElasticTransform", [](OpParams& p) { return std::make_shared<ElasticTransform>(p); });
    return r;
  }();
  return *registry;
}

std::vector<double> per_channel(const std::vector<double>& values, int64_t channels, const char* what) {
  if (values.size() == 1) return std::vector<double>(static_cast<size_t>(channels), values[0]);
  if (values.size() != static_cast<size_t>(channels))
    throw core::DataError(fmt::format("device augmentation: {} {} values for {} channels", values.size(), what, channels));
  return values;
}

}  // namespace

BatchPipeline BatchPipeline::from_config(const core::ConfigNode& node, const std::string& path) {
  if (node.is_null()) return {};
  if (node.is_scalar()) return from_config(inline_pipeline_file(node), path);
  if (!node.is_sequence())
    throw core::ConfigError(fmt::format("{} {}: expected a list of ops (- Name: {{params}}); got {}", node.where().str(),
                                        path, node.kind_name()));
  BatchPipeline pipeline;
  for (size_t i = 0; i < node.items().size(); ++i) {
    const core::ConfigNode& item = node.items()[i];
    const std::string item_path = fmt::format("{}[{}]", path, i);
    const auto [name, params] = split_op_item(item, item_path);
    const BatchOpFactory* factory = batch_ops().find(name);
    if (factory == nullptr)
      throw core::ConfigError(fmt::format("{} {}: {} (other ops run per sample in the loader: augment.train)",
                                          item.where().str(), item_path, batch_ops().unknown_message(name)));
    OpParams op_params(name, params, item_path + "." + name, item.where());
    pipeline.ops_.push_back((*factory)(op_params));
    op_params.finish();
  }
  return pipeline;
}

std::vector<std::string> BatchPipeline::op_names() { return batch_ops().names(); }

namespace {
uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t sample) {
  return core::derive_seed(core::derive_seed(seed, kBatchStream, static_cast<uint64_t>(epoch)),
                           static_cast<uint64_t>(sample), 0);
}
}  // namespace

core::Rng BatchPipeline::sample_rng(uint64_t seed, int64_t epoch, int64_t sample) {
  return core::Rng(sample_seed(seed, epoch, sample));
}

void BatchPipeline::apply(at::Tensor& images, at::Tensor& masks, const std::vector<int64_t>& samples, uint64_t seed,
                          int64_t epoch, const std::vector<double>& mean, const std::vector<double>& std) const {
  if (ops_.empty()) return;
  if (images.dim() != 4 || images.scalar_type() != torch::kFloat32)
    throw core::DataError(fmt::format("device augmentation: images of shape {} and type {}; expected [N, C, H, W] float32",
                                      core::shape_string(images), c10::toString(images.scalar_type())));
  const int64_t n = images.size(0), channels = images.size(1);
  if (static_cast<size_t>(n) != samples.size())
    throw core::DataError(fmt::format("device augmentation: {} images but {} sample ids", n, samples.size()));
  if (masks.defined() && (masks.dim() != 4 || masks.size(0) != n || masks.size(1) != 1 ||
                          masks.size(2) != images.size(2) || masks.size(3) != images.size(3)))
    throw core::DataError(fmt::format("device augmentation: masks of shape {} for images of shape {}; expected [{}, 1, {}, {}]",
                                      core::shape_string(masks), core::shape_string(images), n, images.size(2),
                                      images.size(3)));

  // (grey / 255 - mean) / std = grey * scale + offset
  const std::vector<double> m = per_channel(mean, channels, "mean"), s = per_channel(std, channels, "std");
  std::vector<double> scale, offset;
  for (int64_t c = 0; c < channels; ++c) {
    scale.push_back(1.0 / (255.0 * s[static_cast<size_t>(c)]));
    offset.push_back(-m[static_cast<size_t>(c)] / s[static_cast<size_t>(c)]);
  }
  const Normalisation normalisation{torch::tensor(scale, torch::kDouble).to(images.options()),
                                    torch::tensor(offset, torch::kDouble).to(images.options())};

  std::vector<uint64_t> sample_seeds;
  std::vector<core::Rng> rngs;
  for (const int64_t id : samples) {
    sample_seeds.push_back(sample_seed(seed, epoch, id));
    rngs.emplace_back(sample_seeds.back());
  }

  for (size_t k = 0; k < ops_.size(); ++k) {
    const BatchOp& op = *ops_[k];
    std::vector<int64_t> chosen;
    std::vector<std::vector<double>> draws;
    std::vector<uint64_t> seeds;
    for (int64_t i = 0; i < n; ++i) {
      core::Rng& rng = rngs[static_cast<size_t>(i)];
      if (!op.applies(rng)) continue;
      chosen.push_back(i);
      draws.push_back(op.draw(rng));
      seeds.push_back(core::derive_seed(sample_seeds[static_cast<size_t>(i)], k + 1, 0));
    }
    if (chosen.empty()) continue;
    try {
      if (static_cast<int64_t>(chosen.size()) == n) {
        op.apply(images, masks, draws, seeds, normalisation);
        continue;
      }
      const at::Tensor index = torch::tensor(chosen, torch::kLong).to(images.device());
      at::Tensor some_images = images.index_select(0, index);
      at::Tensor some_masks = masks.defined() ? masks.index_select(0, index) : at::Tensor();
      op.apply(some_images, some_masks, draws, seeds, normalisation);
      images = images.index_copy(0, index, some_images);
      if (masks.defined()) masks = masks.index_copy(0, index, some_masks);
    } catch (const core::DataError& e) {
      throw core::DataError(fmt::format("device augmentation: {}: {}", op.name(), e.what()));
    }
  }
}

}  // namespace pneumo::augment
