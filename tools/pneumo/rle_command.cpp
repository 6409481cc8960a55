// `pneumo rle decode --csv LABELS --id IMAGEID --out mask.png` and `pneumo rle encode MASK.png`.
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.h"
#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/data/image_io.h"
#include "pneumo/data/labels.h"
#include "pneumo/data/rle.h"

#include <opencv2/core.hpp>

namespace pneumo::tools {

namespace {

struct DecodeOptions {
  std::string csv;
  std::string id;
  std::string out;
  int height = 1024;
  int width = 1024;
};

struct EncodeOptions {
  std::string mask;
};

void run_decode(const DecodeOptions& options) {
  const data::LabelTable labels = data::LabelTable::read_csv(options.csv);
  if (!labels.contains(options.id))
    throw core::DataError(fmt::format("{}: no rows for ImageId '{}'", options.csv, options.id));
  const cv::Mat mask = labels.mask(options.id, options.height, options.width);
  data::write_png(options.out, mask);
  core::log::info("wrote {} ({} row(s), {} mask pixels)", options.out,
                  labels.rows(options.id).size(), cv::countNonZero(mask));
}

void run_encode(const EncodeOptions& options) {
  fmt::print("{}\n", data::encode_rle(data::read_grey_image(options.mask)));
}

}  // namespace

void setup_rle(CLI::App& app) {
  CLI::App* rle = app.add_subcommand("rle", "Decode and encode SIIM run-length-encoded masks");
  rle->require_subcommand(1);

  auto decode = std::make_shared<DecodeOptions>();
  CLI::App* decode_cmd = rle->add_subcommand(
      "decode", "Write the union of an image's label rows as a 0/255 PNG mask");
  decode_cmd->add_option("--csv", decode->csv, "label CSV (ImageId,EncodedPixels)")->required();
  decode_cmd->add_option("--id", decode->id, "ImageId")->required();
  decode_cmd->add_option("--out", decode->out, "PNG to write")->required();
  decode_cmd->add_option("--height", decode->height, "mask rows (SIIM: 1024)")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  decode_cmd->add_option("--width", decode->width, "mask columns (SIIM: 1024)")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  decode_cmd->callback([decode] { run_decode(*decode); });

  auto encode = std::make_shared<EncodeOptions>();
  CLI::App* encode_cmd = rle->add_subcommand(
      "encode", "Print the SIIM encoding of a mask image (non-zero = inside; -1 if empty)");
  encode_cmd->add_option("mask", encode->mask, "mask PNG")->required();
  encode_cmd->callback([encode] { run_encode(*encode); });
}

}  // namespace pneumo::tools
