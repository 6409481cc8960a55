// `pneumo make-demo --out DIR [--count N --size S --seed K]`: the synthetic demo set.
#include <memory>

#include <CLI/CLI.hpp>

#include "commands.h"
#include "pneumo/core/log.h"
#include "pneumo/data/demo_set.h"

namespace pneumo::tools {

namespace {

struct MakeDemoOptions {
  std::string out;
  data::DemoSetOptions demo;
};

void run_make_demo(const MakeDemoOptions& options) {
  const data::DemoSetSummary summary = data::write_demo_set(options.out, options.demo);
  core::log::info("wrote {} synthetic radiographs ({} with a pneumothorax) to {}", summary.images,
                  summary.positives, summary.dicom_dir.string());
  core::log::info("labels: {}; image-level classes: {}", summary.labels_csv.string(), summary.classes_csv.string());
  if (options.demo.png)
    core::log::info("PNG layout: images in {}, masks in {}", summary.png_dir.string(), summary.masks_dir.string());
}

}  // namespace

void setup_make_demo(CLI::App& app) {
  auto options = std::make_shared<MakeDemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "make-demo",
      "Write a deterministic synthetic chest X-ray set: JPEG DICOMs, a SIIM train-rle.csv and an image-level "
      "classes.csv");
  cmd->add_option("--out", options->out, "output folder")->required();
  cmd->add_option("--count", options->demo.count, "number of images")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--size", options->demo.size, "image rows and columns")
      ->capture_default_str()
      ->check(CLI::Range(64, 2048));
  cmd->add_option("--seed", options->demo.seed, "random seed")->capture_default_str();
  cmd->add_option("--positive-fraction", options->demo.positive_fraction,
                  "share of images with a pneumothorax")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--images-per-patient", options->demo.images_per_patient,
                  "consecutive images sharing one PatientID (for patient-grouped folds)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  cmd->add_flag("--png", options->demo.png,
                "also write the PNG layout: png/<ImageId>.png (the DICOMs' pixels) and masks/<ImageId>.png");
  cmd->callback([options] { run_make_demo(*options); });
}

}  // namespace pneumo::tools
