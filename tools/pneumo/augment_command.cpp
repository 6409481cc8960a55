// `pneumo augment preview CONFIG --image FILE [--mask M.png] --out grid.png` and
// `pneumo augment apply PIPELINE.yaml --image IN.png [--mask M.png] --out OUT.png`.
#include <cmath>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <torch/torch.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "commands.h"
#include "pneumo/train/experiment.h"
#include "pneumo/augment/batch_pipeline.h"
#include "pneumo/augment/pipeline.h"
#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"
#include "pneumo/core/log.h"
#include "pneumo/data/dicom.h"
#include "pneumo/data/image_io.h"

namespace pneumo::tools {

namespace {

namespace fs = std::filesystem;

struct PreviewOptions {
  std::string config;
  std::vector<std::string> overrides;
  std::string image;
  std::string mask;
  std::string out;
  std::string pipeline = "train";
  int count = 15;
  std::optional<int64_t> seed;
};

struct ApplyOptions {
  std::string pipeline;
  std::string image;
  std::string mask;
  std::string out;
  std::string out_mask;
  int64_t seed = 0;
};

// A DICOM (decoded as training does) or an ordinary image, as 8-bit grey.
cv::Mat read_input_image(const fs::path& file) {
  std::string ext = file.extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".dcm" ? data::read_dicom(file).pixels : data::read_grey_image(file);
}

cv::Mat read_mask(const std::string& file, const cv::Size& size) {
  if (file.empty()) return cv::Mat::zeros(size, CV_8UC1);
  cv::Mat mask = data::read_grey_image(file);
  if (mask.size() != size)
    throw core::DataError(fmt::format("{}: mask is {}x{}; expected the image's {}x{}", file,
                                      mask.cols, mask.rows, size.width, size.height));
  return mask;
}

// One preview tile: the image as 8-bit colour (float images stretched to their range) with
// the mask's outline in red.
cv::Mat tile(const cv::Mat& image, const cv::Mat& mask) {
  cv::Mat grey;
  if (image.depth() == CV_8U) {
    grey = image;
  } else {
    double lo = 0, hi = 0;
    cv::minMaxLoc(image, &lo, &hi);
    image.convertTo(grey, CV_8U, hi > lo ? 255.0 / (hi - lo) : 1.0, hi > lo ? -lo * 255.0 / (hi - lo) : 0.0);
  }
  cv::Mat colour;
  cv::cvtColor(grey, colour, cv::COLOR_GRAY2BGR);
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(mask > 127, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
  cv::drawContours(colour, contours, -1, cv::Scalar(0, 0, 255), std::max(1, image.cols / 256));
  return colour;
}

// One sample through a device pipeline on the CPU, as a batch of one: the image comes back as
// float 0..1, the mask as 8-bit 0/255.
void apply_on_device(const augment::BatchPipeline& ops, augment::Target& target, uint64_t seed, int64_t sample) {
  cv::Mat image, mask;
  target.image.convertTo(image, CV_32F, target.image.depth() == CV_8U ? 1.0 / 255.0 : 1.0);
  at::Tensor images = torch::from_blob(image.data, {1, 1, image.rows, image.cols}, torch::kFloat32).clone();
  at::Tensor masks;
  if (!target.mask.empty()) {
    target.mask.convertTo(mask, CV_32F, 1.0 / 255.0);
    masks = torch::from_blob(mask.data, {1, 1, mask.rows, mask.cols}, torch::kFloat32).clone();
  }
  ops.apply(images, masks, {sample}, seed, 0, {0.0}, {1.0});
  images = images.contiguous();
  target.image = cv::Mat(image.rows, image.cols, CV_32FC1, images.data_ptr<float>()).clone();
  if (masks.defined()) {
    masks = (masks * 255.0).round().to(torch::kUInt8).contiguous();
    target.mask = cv::Mat(mask.rows, mask.cols, CV_8UC1, masks.data_ptr<uint8_t>()).clone();
  }
}

void run_preview(const PreviewOptions& options) {
  const train::ExperimentConfig config = train::load_experiment(options.config, options.overrides);
  const augment::Pipeline pipeline = options.pipeline == "train"
                                         ? config.augment.train_pipeline()
                                         : config.augment.validation_pipeline();
  // Training batches also go through augment.on_device; here it runs on the CPU.
  const augment::BatchPipeline on_device =
      options.pipeline == "train" ? config.augment.device_pipeline() : augment::BatchPipeline();
  if (pipeline.empty() && on_device.empty())
    core::log::warn("augment.{} of {} is empty: the tiles will all equal the input", options.pipeline,
                    options.config);
  // As the loader feeds the pipeline: resized to data.size, mask with nearest neighbour.
  const int size = config.data.size;
  cv::Mat image, mask;
  const cv::Mat native = read_input_image(options.image);
  cv::resize(native, image, {size, size}, 0, 0, cv::INTER_AREA);
  cv::resize(read_mask(options.mask, native.size()), mask, {size, size}, 0, 0, cv::INTER_NEAREST);

  const uint64_t seed = static_cast<uint64_t>(options.seed.value_or(config.experiment.seed));
  std::vector<cv::Mat> tiles = {tile(image, mask)};
  for (int i = 0; i < options.count; ++i) {
    augment::Target target{image.clone(), mask.clone()};
    core::Rng rng = core::Rng::for_sample(seed, static_cast<uint64_t>(i), 0);
    pipeline.apply(target, rng);
    if (!on_device.empty()) apply_on_device(on_device, target, seed, i);
    cv::Mat t = tile(target.image, target.mask);
    if (t.size() != cv::Size(size, size)) cv::resize(t, t, {size, size}, 0, 0, cv::INTER_AREA);
    tiles.push_back(t);
  }
  const int columns = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(tiles.size()))));
  const int rows = (static_cast<int>(tiles.size()) + columns - 1) / columns;
  const int gap = 4;
  cv::Mat grid(rows * (size + gap) - gap, columns * (size + gap) - gap, CV_8UC3, cv::Scalar(40, 40, 40));
  for (size_t i = 0; i < tiles.size(); ++i) {
    const int r = static_cast<int>(i) / columns, c = static_cast<int>(i) % columns;
    tiles[i].copyTo(grid(cv::Rect(c * (size + gap), r * (size + gap), size, size)));
  }
  data::write_png(options.out, grid);
  core::log::info("wrote {}: the input (top left) and {} augmented versions at {}x{}, seed {}",
                  options.out, options.count, size, size, seed);
}

// Writes a result: 8-bit as is; float as float TIFF, or scaled by 255 for PNG.
void write_result(const fs::path& file, const cv::Mat& image) {
  std::string ext = file.extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (image.depth() == CV_32F && (ext == ".tif" || ext == ".tiff")) {
    std::vector<uint8_t> bytes;
    if (!cv::imencode(".tiff", image, bytes))
      throw core::IoError(fmt::format("{}: cannot encode a float TIFF", file.string()));
    core::write_file_atomic(file, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    return;
  }
  if (image.depth() == CV_32F) {
    cv::Mat scaled;
    image.convertTo(scaled, CV_8U, 255.0);
    core::log::info("{}: the result is float; written as round(value * 255), clipped to 0..255 "
                    "(name a .tiff file to keep the floats)", file.string());
    data::write_png(file, scaled);
    return;
  }
  data::write_png(file, image);
}

void run_apply(const ApplyOptions& options) {
  const augment::Pipeline pipeline = augment::Pipeline::from_file(options.pipeline);
  augment::Target target;
  target.image = read_input_image(options.image);
  target.mask = read_mask(options.mask, target.image.size());
  core::Rng rng(static_cast<uint64_t>(options.seed));
  pipeline.apply(target, rng);
  write_result(options.out, target.image);
  if (!options.out_mask.empty()) data::write_png(options.out_mask, target.mask);
}

}  // namespace

void setup_augment(CLI::App& app) {
  CLI::App* augment_cmd = app.add_subcommand("augment", "Look at and run augmentation pipelines");
  augment_cmd->require_subcommand(1);

  auto preview = std::make_shared<PreviewOptions>();
  CLI::App* preview_cmd = augment_cmd->add_subcommand(
      "preview", "A grid of the input and N augmented versions of one image, mask outlined in red");
  preview_cmd->add_option("config", preview->config, "experiment YAML file")->required();
  preview_cmd->add_option("--set", preview->overrides, "override a value: key.path=value (repeatable)");
  preview_cmd->add_option("--image", preview->image, "a DICOM, PNG or JPEG image")->required();
  preview_cmd->add_option("--mask", preview->mask, "its mask (PNG, non-zero inside), optional");
  preview_cmd->add_option("--out", preview->out, "grid PNG to write")->required();
  preview_cmd->add_option("--count", preview->count, "augmented versions")
      ->capture_default_str()
      ->check(CLI::Range(1, 400));
  preview_cmd->add_option("--pipeline", preview->pipeline,
                          "which pipeline of the config (train includes augment.on_device, run on the CPU)")
      ->capture_default_str()
      ->check(CLI::IsMember({"train", "validation"}));
  preview_cmd->add_option("--seed", preview->seed, "seed (default: experiment.seed)");
  preview_cmd->callback([preview] { run_preview(*preview); });

  auto apply = std::make_shared<ApplyOptions>();
  CLI::App* apply_cmd = augment_cmd->add_subcommand(
      "apply", "One pass of a pipeline file (a YAML list of ops) over one image and its mask");
  apply_cmd->add_option("pipeline", apply->pipeline, "pipeline YAML file")->required();
  apply_cmd->add_option("--image", apply->image, "input image (DICOM, PNG, JPEG)")->required();
  apply_cmd->add_option("--mask", apply->mask, "input mask PNG, optional");
  apply_cmd->add_option("--out", apply->out, "output image (PNG; .tiff keeps float results)")->required();
  apply_cmd->add_option("--out-mask", apply->out_mask, "output mask PNG");
  apply_cmd->add_option("--seed", apply->seed, "seed of the random draws")->capture_default_str();
  apply_cmd->callback([apply] { run_apply(*apply); });
}

}  // namespace pneumo::tools
