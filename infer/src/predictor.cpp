#include "pneumo/infer/predictor.h"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>
#include <opencv2/imgproc.hpp>
#include <torch/script.h>
#include <torch/torch.h>

#include "cuda_graphs.h"
#include "grad_cam.h"
#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/core/ordered_workers.h"
#include "pneumo/core/runtime.h"
#include "pneumo/core/progress.h"
#include "pneumo/data/loader.h"
#include "pneumo/models/feature_tap.h"
#include "pneumo/models/network.h"
#include "pneumo/train/mixed_precision.h"

namespace pneumo::infer {

namespace {

// An exported file's forward pass: (mask probabilities [N, 1, S, S], image probabilities [N]).
std::pair<torch::Tensor, torch::Tensor> run_script(torch::jit::Module& script, const torch::Tensor& x) {
  const auto out = script.forward({x}).toTuple();
  return {out->elements()[0].toTensor(), out->elements()[1].toTensor()};
}

// Enters autocast for the predictor's reduced precision, if it has one, until `scope` ends.
void enter_precision(std::optional<train::AutocastScope>& scope, const PredictorOptions& options,
                     const c10::Device& device) {
  if (options.precision == "bfloat16") scope.emplace(train::MixedPrecision{true, device.type(), at::kBFloat16});
}

// The outputs in float32 (bfloat16 under autocast).
models::ModelOutput as_float32(models::ModelOutput out) {
  if (out.masks.defined()) out.masks = out.masks.to(torch::kFloat32);
  if (out.logits.defined()) out.logits = out.logits.to(torch::kFloat32);
  for (torch::Tensor& t : out.extra_masks) t = t.to(torch::kFloat32);
  return out;
}

// Images [from, from + n) of a network's outputs.
models::ModelOutput first_or_second_half(const models::ModelOutput& out, int64_t from, int64_t n) {
  models::ModelOutput part;
  if (out.masks.defined()) part.masks = out.masks.narrow(0, from, n);
  if (out.logits.defined()) part.logits = out.logits.narrow(0, from, n);
  for (const torch::Tensor& t : out.extra_masks) part.extra_masks.push_back(t.narrow(0, from, n));
  return part;
}

// A network member's input: normalised as it was trained, on the device, NHWC when asked.
torch::Tensor network_input(const Member& m, const std::vector<cv::Mat>& images, const c10::Device& device,
                            bool channels_last) {
  data::LoaderOptions normalise;
  normalise.channels = m.config.data.channels;
  normalise.mean = m.config.data.mean;
  normalise.std = m.config.data.std;
  torch::Tensor x = data::image_tensor(images, normalise).to(device);
  if (channels_last) x = models::to_channels_last(x);
  return x;
}

// What an explanation of member m explains (explain.h): one value for the batch of one image.
torch::Tensor explained_target(const Member& m, const models::ModelOutput& out) {
  const torch::Tensor logit = pneumothorax_logit(m, out);
  if (logit.defined()) return logit.sum();
  if (!m.segmenter) return std::get<0>(out.logits.max(1)).sum();  // a class table without Pneumothorax: its top class
  const torch::Tensor masks = out.masks.select(1, 0);
  const torch::Tensor positive = (masks > 0).to(masks.scalar_type());
  return positive.sum().item<double>() > 0 ? (masks * positive).sum() : masks.sum();
}

}  // namespace

double Prediction::score() const {
  if (image_probability) return *image_probability;
  if (probability.empty()) return 0.0;
  double max = 0.0;
  cv::minMaxLoc(probability, nullptr, &max);
  return max;
}

int64_t Prediction::area_pixels() const { return mask.empty() ? 0 : cv::countNonZero(mask); }

std::optional<double> Prediction::area_mm2() const {
  if (!input.pixel_spacing_mm[0] || !input.pixel_spacing_mm[1]) return std::nullopt;
  return static_cast<double>(area_pixels()) * *input.pixel_spacing_mm[0] * *input.pixel_spacing_mm[1];
}

Predictor::Predictor(std::vector<Member> members, PostprocessSection postprocess, PredictorOptions options,
                     c10::Device device, std::optional<Calibration> calibration)
    : members_(std::move(members)),
      postprocess_(postprocess),
      options_(options),
      calibration_(std::move(calibration)),
      device_(device) {
  if (members_.empty()) throw core::UsageError("an ensemble needs at least one model");
  if (options_.precision != "float32" && options_.precision != "bfloat16")
    throw core::UsageError(fmt::format("precision '{}': expected float32 or bfloat16", options_.precision));
  if (options_.precision == "bfloat16" && !device_.is_cuda() && !core::cpu_has_bfloat16_instructions())
    core::log::warn("bfloat16 inference: this CPU has no bfloat16 instructions (AVX512-BF16 or AMX), so LibTorch "
                    "emulates them and inference is likely slower than in float32");
  for (Member& m : members_) {
    if (options_.channels_last && m.network) models::use_channels_last(*m.network);
    const data::DataSection& d = m.config.data;
    size_t found = resizers_.size();
    for (size_t r = 0; r < resizers_.size(); ++r)
      if (resizers_[r].options().size == d.size && resizers_[r].options().interpolation == d.interpolation) found = r;
    if (found == resizers_.size()) {
      data::PreprocessOptions o;
      o.size = d.size;
      o.interpolation = d.interpolation;
      resizers_.emplace_back(o);
    }
    resizer_of_.push_back(found);
    if (m.segmenter) segment_size_ = std::max(segment_size_, d.size);
    input_size_ = std::max(input_size_, d.size);
    if (!m.classes.empty()) classes_ = m.classes;  // load_members made sure they agree
  }
  gate_ = members_.front().config.gate;
  if (!options_.gate) gate_.enabled = false;
  if (options_.cuda_graphs && !device_.is_cuda())
    core::log::info("CUDA graphs apply to CUDA devices only; running the models eagerly on the {}", device_.str());
  if (options_.cuda_graphs && device_.is_cuda())
    for (const Member& m : members_) {
      CudaGraphCache::Forward forward;
      if (m.script)
        forward = [script = m.script](const torch::Tensor& x) {
          auto [masks, image_probability] = run_script(*script, x);
          return std::vector<torch::Tensor>{masks, image_probability};
        };
      else
        forward = [network = m.network](const torch::Tensor& x) {
          models::ModelOutput out = network->forward(x);
          std::vector<torch::Tensor> flat = {out.masks, out.logits};  // deep-supervision outputs are not used here
          return flat;
        };
      graphs_.push_back(std::make_shared<CudaGraphCache>(std::move(forward)));
    }
}

data::GateDecision Predictor::check_gate(const InputImage& input) const {
  return data::check_input(gate_, input.facts, input.pixels, input_size_);
}

PreparedInput Predictor::prepare(InputImage input) const {
  PreparedInput p;
  for (const data::Preprocessor& r : resizers_) p.resized.push_back(r.resize(input.pixels));
  p.input = std::move(input);
  return p;
}

// The members' weighted sums over a batch: pixel probabilities [N, S, S] at the largest
// segmenter's size, and image probabilities [N] (classifiers' gate, segmenters' auxiliary heads).
class EnsembleSums {
 public:
  explicit EnsembleSums(int64_t segment_size) : segment_size_(segment_size) {}

  void add_pixels(torch::Tensor p, double weight) {
    if (p.size(1) != segment_size_)
      p = torch::nn::functional::interpolate(p.unsqueeze(1), torch::nn::functional::InterpolateFuncOptions()
                                                                 .size(std::vector<int64_t>{segment_size_, segment_size_})
                                                                 .mode(torch::kBilinear)
                                                                 .align_corners(false))
              .squeeze(1);
    add(pixels_, pixel_weight_, p, weight);
  }

  void add_image(const torch::Tensor& p, double weight, bool auxiliary) {
    if (auxiliary)
      add(aux_, aux_weight_, p, weight);
    else
      add(gate_, gate_weight_, p, weight);
  }

  // The gate [N] float64 on the CPU: classifiers when the ensemble has any, else the
  // segmenters' auxiliary heads; undefined without either.
  torch::Tensor gate() const {
    if (gate_weight_ > 0) return (gate_ / gate_weight_).to(torch::kCPU, torch::kFloat64);
    if (aux_weight_ > 0) return (aux_ / aux_weight_).to(torch::kCPU, torch::kFloat64);
    return {};
  }

  void add_classes(const torch::Tensor& p, double weight) { add(classes_, class_weight_, p, weight); }

  // The class-table classifiers' averaged probabilities [N, classes] float64 on the CPU;
  // undefined without one.
  torch::Tensor classes() const {
    if (class_weight_ == 0) return {};
    return (classes_ / class_weight_).to(torch::kCPU, torch::kFloat64).contiguous();
  }

  // The averaged pixel probabilities [N, S, S] float32 on the CPU; undefined without segmenters.
  torch::Tensor pixels() const {
    if (pixel_weight_ == 0) return {};
    return (pixels_ / pixel_weight_).to(torch::kCPU, torch::kFloat32).contiguous();
  }

 private:
  static void add(torch::Tensor& sum, double& total, const torch::Tensor& p, double weight) {
    sum = sum.defined() ? sum + weight * p : weight * p;
    total += weight;
  }

  int64_t segment_size_;
  torch::Tensor pixels_, gate_, aux_, classes_;
  double pixel_weight_ = 0, gate_weight_ = 0, aux_weight_ = 0, class_weight_ = 0;
};

std::vector<Prediction> Predictor::predict(std::vector<PreparedInput> batch) const {
  torch::NoGradGuard no_grad;  // (an exported file's forward records nothing either)
  const auto started = std::chrono::steady_clock::now();
  EnsembleSums sums(segment_size_);
  for (size_t k = 0; k < members_.size(); ++k) {
    std::vector<cv::Mat> images;
    for (const PreparedInput& p : batch) images.push_back(p.resized[resizer_of_[k]]);
    if (members_[k].script)
      add_exported_member(k, images, sums);
    else
      add_network_member(k, images, sums);
  }
  const torch::Tensor gate = sums.gate(), probability = sums.pixels(), classes = sums.classes();
  const auto modelled = std::chrono::steady_clock::now();
  std::vector<Prediction> out;
  out.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    Prediction pred;
    pred.input = std::move(batch[i].input);
    const auto row = static_cast<int64_t>(i);
    if (gate.defined()) pred.image_probability = gate[row].item<double>();
    if (classes.defined())
      pred.class_probabilities.assign(classes[row].data_ptr<double>(), classes[row].data_ptr<double>() + classes.size(1));
    const cv::Size native = pred.input.pixels.size();
    if (probability.defined()) {
      pred.input_size_probability =
          cv::Mat(segment_size_, segment_size_, CV_32FC1, probability[row].data_ptr<float>()).clone();
      if (pred.input_size_probability.size() == native)
        pred.probability = pred.input_size_probability.clone();
      else
        cv::resize(pred.input_size_probability, pred.probability, native, 0, 0, cv::INTER_LINEAR);
      pred.mask = infer::postprocess(pred.probability, postprocess_, pred.image_probability);
      pred.positive = cv::countNonZero(pred.mask) > 0;
    } else {  // classifiers only: a decision without a mask
      pred.mask = cv::Mat::zeros(native, CV_8UC1);
      pred.positive = pred.image_probability && *pred.image_probability >= postprocess_.classifier_threshold;
    }
    if (calibration_) pred.calibrated = calibration_->apply(pred.score());
    out.push_back(std::move(pred));
  }
  const PredictionTiming timing{std::chrono::duration<double>(modelled - started).count(),
                                std::chrono::duration<double>(std::chrono::steady_clock::now() - modelled).count()};
  for (Prediction& p : out) p.timing = timing;
  return out;
}

// An exported ensemble: grey values 0..255 in, (mask probabilities, image probability) out.
void Predictor::add_exported_member(size_t k, const std::vector<cv::Mat>& images, EnsembleSums& sums) const {
  const Member& m = members_[k];
  const int size = m.config.data.size;
  const auto n = static_cast<int64_t>(images.size());
  torch::Tensor x = torch::empty({n, 1, size, size}, torch::kFloat32);
  for (int64_t i = 0; i < n; ++i) {
    cv::Mat as_float(size, size, CV_32FC1, x[i][0].data_ptr<float>());
    images[static_cast<size_t>(i)].convertTo(as_float, CV_32F);
  }
  x = x.to(device_);
  const auto run = [&](const torch::Tensor& input) {
    if (graphs_.empty()) return run_script(*m.script, input);
    std::vector<torch::Tensor> out = (*graphs_[k])(input);
    return std::make_pair(out[0], out[1]);
  };
  // Flip TTA: the mirrored copies go through the network in the same batch as the originals.
  std::optional<train::AutocastScope> autocast;
  enter_precision(autocast, options_, device_);
  auto [mask, image_probability] = run(options_.hflip ? torch::cat({x, x.flip({3})}) : x);
  mask = mask.to(torch::kFloat32);
  image_probability = image_probability.to(torch::kFloat32);
  if (options_.hflip) {
    if (m.segmenter) mask = (mask.narrow(0, 0, n) + mask.narrow(0, n, n).flip({3})) / 2;
    image_probability = (image_probability.narrow(0, 0, n) + image_probability.narrow(0, n, n)) / 2;
  }
  if (m.segmenter) sums.add_pixels(mask.select(1, 0), m.weight);
  if (m.script_gate) sums.add_image(image_probability, m.weight, false);
}

// A network: normalised as it was trained, sigmoid of its mask and image logits (+ flip TTA).
void Predictor::add_network_member(size_t k, const std::vector<cv::Mat>& images, EnsembleSums& sums) const {
  const Member& m = members_[k];
  const torch::Tensor x = network_input(m, images, device_, options_.channels_last);
  const auto run = [&](const torch::Tensor& input) {
    if (graphs_.empty()) return m.network->forward(input);
    std::vector<torch::Tensor> flat = (*graphs_[k])(input);
    models::ModelOutput out;
    out.masks = flat[0];
    out.logits = flat[1];
    return out;
  };
  // Flip TTA: the mirrored copies go through the network in the same batch as the originals.
  std::optional<train::AutocastScope> autocast;
  enter_precision(autocast, options_, device_);
  models::ModelOutput out = as_float32(run(options_.hflip ? torch::cat({x, x.flip({3})}) : x));
  autocast.reset();
  std::optional<models::ModelOutput> mirrored;
  if (options_.hflip) {
    const int64_t n = x.size(0);
    mirrored = first_or_second_half(out, n, n);
    out = first_or_second_half(out, 0, n);
  }
  if (m.segmenter) {
    torch::Tensor p = torch::sigmoid(out.masks.select(1, 0));
    if (mirrored) p = (p + torch::sigmoid(mirrored->masks.select(1, 0)).flip({2})) / 2;
    sums.add_pixels(p, m.weight);
  }
  const torch::Tensor logit = pneumothorax_logit(m, out);
  if (logit.defined()) {
    torch::Tensor p = torch::sigmoid(logit);
    if (mirrored) p = (p + torch::sigmoid(pneumothorax_logit(m, *mirrored))) / 2;
    sums.add_image(p, m.weight, m.segmenter);
  }
  if (!m.classes.empty()) {
    torch::Tensor p = torch::sigmoid(out.logits);
    if (mirrored) p = (p + torch::sigmoid(mirrored->logits)) / 2;
    sums.add_classes(p, m.weight);
  }
}

cv::Mat Predictor::explain(const InputImage& input, const ExplainOptions& options) const {
  check_explain_options(options);
  const PreparedInput prepared = prepare(input);
  const cv::Size native = input.pixels.size();
  cv::Mat sum = cv::Mat::zeros(native, CV_32FC1);
  double weights = 0;
  torch::AutoGradMode with_gradients(true);
  for (size_t k = 0; k < members_.size(); ++k) {
    const Member& m = members_[k];
    if (!m.network) continue;
    const int depth = m.segmenter ? m.config.model.encoder.depth : 5;
    const int stage = options.stage > 0 ? options.stage : depth;
    if (stage > depth)
      throw core::UsageError(fmt::format("explanation stage {}: {} has an encoder of {} stages", stage,
                                         m.checkpoint.string(), depth));
    const torch::Tensor x = network_input(m, {prepared.resized[resizer_of_[k]]}, device_, options_.channels_last);
    models::FeatureTap tap(stage);
    const models::ModelOutput out = m.network->forward(x);
    if (!tap.features().defined())
      throw core::ModelError(fmt::format("{}: the network gave no stage-{} features to explain", m.checkpoint.string(), stage));
    const torch::Tensor target = explained_target(m, out);
    const torch::Tensor gradients = torch::autograd::grad({target}, {tap.features()})[0];
    torch::Tensor cam = class_activation_map(tap.features().detach(), gradients.detach(), options.method)[0];
    cam = cam.to(torch::kCPU, torch::kFloat32).contiguous();
    cv::Mat small(static_cast<int>(cam.size(0)), static_cast<int>(cam.size(1)), CV_32FC1, cam.data_ptr<float>());
    cv::Mat map;
    cv::resize(small, map, native, 0, 0, cv::INTER_LINEAR);
    double max = 0;
    cv::minMaxLoc(map, nullptr, &max);
    if (max > 0) map /= max;
    sum += map * m.weight;
    weights += m.weight;
  }
  if (weights == 0) return {};
  double max = 0;
  cv::minMaxLoc(sum, nullptr, &max);
  if (max > 0) sum /= max;
  return sum;
}

}  // namespace pneumo::infer

namespace pneumo::infer {

namespace {
enum class ReadStatus { kReady, kFailed, kRefused };
struct ReadBatch {
  std::vector<PreparedInput> ready;
  std::vector<std::pair<InputFile, std::string>> failed;  // in input order among themselves
  std::vector<std::pair<InputImage, data::GateDecision>> refused;
  std::vector<ReadStatus> status;  // per input of the batch, in order
};
}  // namespace

int64_t default_batch_size(const Predictor& predictor) {
  if (predictor.device().is_cuda()) return 8;
  int64_t size = 1;
  for (const Member& m : predictor.members()) size = std::max<int64_t>(size, m.config.data.size);
  return std::clamp<int64_t>(int64_t{4} * 512 * 512 / (size * size), 1, 8);
}

void run_predictor(const Predictor& predictor, const std::vector<InputFile>& inputs, const RunOptions& options,
                   const std::function<void(Prediction&)>& on_prediction,
                   const std::function<void(const InputFile&, const std::string&)>& on_failure,
                   const std::function<void(const InputImage&, const data::GateDecision&)>& on_refused) {
  if (options.gate && !on_refused) throw core::Error("run_predictor: a gate needs somewhere to send refused inputs");
  if (options.batch_size < 0) throw core::UsageError(fmt::format("batch size {}: expected >= 0", options.batch_size));
  const int64_t batch_size = options.batch_size > 0 ? options.batch_size : default_batch_size(predictor);
  core::log::info("{}: {} CPU thread(s), batches of {}{}", options.progress_label, at::get_num_threads(), batch_size,
                  options.batch_size > 0 ? "" : " (the default for this model and device; --batch-size sets it)");
  const auto total = static_cast<int64_t>(inputs.size());
  const int64_t batches = (total + batch_size - 1) / batch_size;
  core::OrderedWorkers<ReadBatch> reader(batches, options.workers, options.prefetch, [&](int64_t b) {
    ReadBatch out;
    const int64_t end = std::min<int64_t>(total, (b + 1) * batch_size);
    for (int64_t i = b * batch_size; i < end; ++i) {
      const InputFile& file = inputs[static_cast<size_t>(i)];
      try {
        InputImage image = read_input(file, predictor.window());
        if (options.gate) {
          data::GateDecision decision = predictor.check_gate(image);
          if (!decision.accepted) {
            image.pixels.release();
            out.refused.emplace_back(std::move(image), std::move(decision));
            out.status.push_back(ReadStatus::kRefused);
            continue;
          }
        }
        out.ready.push_back(predictor.prepare(std::move(image)));
        out.status.push_back(ReadStatus::kReady);
      } catch (const core::Error& e) {
        out.failed.emplace_back(file, e.what());
        out.status.push_back(ReadStatus::kFailed);
      } catch (const cv::Exception& e) {
        out.failed.emplace_back(file, e.what());
        out.status.push_back(ReadStatus::kFailed);
      }
    }
    return out;
  });
  core::Progress progress(options.progress_label, total);
  while (std::optional<ReadBatch> batch = reader.next()) {
    std::vector<Prediction> predictions;
    if (!batch->ready.empty()) predictions = predictor.predict(std::move(batch->ready));
    size_t next_ready = 0, next_failed = 0, next_refused = 0;
    for (ReadStatus status : batch->status) {
      if (status == ReadStatus::kReady) {
        on_prediction(predictions[next_ready++]);
      } else if (status == ReadStatus::kFailed) {
        const auto& [file, message] = batch->failed[next_failed++];
        on_failure(file, message);
      } else {
        const auto& [image, decision] = batch->refused[next_refused++];
        on_refused(image, decision);
      }
    }
    progress.advance(static_cast<int64_t>(batch->status.size()));
  }
  progress.finish();
}

}  // namespace pneumo::infer
