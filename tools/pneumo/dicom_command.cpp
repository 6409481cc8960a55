// `pneumo dicom info FILE...` and `pneumo dicom convert FILE --out x.png`.
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.h"
#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/data/dicom.h"
#include "pneumo/data/image_io.h"

namespace pneumo::tools {

namespace {

struct InfoOptions {
  std::vector<std::string> files;
};

struct ConvertOptions {
  std::string file;
  std::string out;
  std::string window = "none";
  std::vector<double> explicit_window;
};

std::string optional_mm(const std::optional<double>& v) {
  return v ? fmt::format("{:g}", *v) : "?";
}

void print_info(const std::string& file) {
  const data::DicomImage image = data::read_dicom(file);  // decodes: a full check
  const data::DicomMetadata& m = image.meta;
  fmt::print("{}\n", file);
  fmt::print("  sop_instance_uid: {}\n", m.sop_instance_uid);
  fmt::print("  transfer_syntax: {} ({})\n", m.transfer_syntax_name, m.transfer_syntax_uid);
  fmt::print("  size: {} x {} (columns x rows), {} frame(s), {} sample(s) per pixel\n", m.columns,
             m.rows, m.frames, m.samples_per_pixel);
  fmt::print("  bits: {} allocated, {} stored, {}\n", m.bits_allocated, m.bits_stored,
             m.is_signed ? "signed" : "unsigned");
  fmt::print("  photometric: {}\n", m.photometric);
  fmt::print("  rescale: slope {:g}, intercept {:g}\n", m.rescale_slope, m.rescale_intercept);
  if (m.window_center && m.window_width)
    fmt::print("  window: center {:g}, width {:g}\n", *m.window_center, *m.window_width);
  fmt::print("  pixel_spacing_mm: {} x {}\n", optional_mm(m.pixel_spacing_row_mm),
             optional_mm(m.pixel_spacing_col_mm));
  fmt::print("  modality: {}, view: {}, sex: {}, age: {}\n", m.modality, m.view_position,
             m.patient_sex, m.patient_age);
  fmt::print("  decode: ok\n");
}

void run_info(const InfoOptions& options) {
  int failed = 0;
  for (const auto& file : options.files) {
    try {
      print_info(file);
    } catch (const core::DataError& e) {
      core::log::error("{}", e.what());
      ++failed;
    }
  }
  if (failed > 0)
    throw core::DataError(fmt::format("{} of {} file(s) could not be read", failed,
                                      options.files.size()));
}

void run_convert(const ConvertOptions& options) {
  data::DicomReadOptions read;
  if (options.window == "file") read.window = data::DicomReadOptions::Window::kFromFile;
  if (!options.explicit_window.empty()) {
    read.window = data::DicomReadOptions::Window::kExplicit;
    read.window_center = options.explicit_window[0];
    read.window_width = options.explicit_window[1];
  }
  const data::DicomImage image = data::read_dicom(options.file, read);
  data::write_png(options.out, image.pixels);
  core::log::info("wrote {} ({} x {})", options.out, image.pixels.cols, image.pixels.rows);
}

}  // namespace

void setup_dicom(CLI::App& app) {
  CLI::App* dicom = app.add_subcommand("dicom", "Inspect and convert DICOM files");
  dicom->require_subcommand(1);

  auto info = std::make_shared<InfoOptions>();
  CLI::App* info_cmd = dicom->add_subcommand(
      "info", "Print metadata of DICOM files and check that their pixels decode");
  info_cmd->add_option("files", info->files, "DICOM files")->required()->check(CLI::ExistingFile);
  info_cmd->callback([info] { run_info(*info); });

  auto convert = std::make_shared<ConvertOptions>();
  CLI::App* convert_cmd = dicom->add_subcommand(
      "convert", "Write the decoded image (native size, MONOCHROME2 sense) as an 8-bit PNG");
  convert_cmd->add_option("file", convert->file, "DICOM file")->required();
  convert_cmd->add_option("--out", convert->out, "PNG to write")->required();
  auto* window = convert_cmd->add_option(
      "--window", convert->window,
      "none: the image's own range; file: the file's VOI window when it has one");
  window->check(CLI::IsMember({"none", "file"}));
  convert_cmd
      ->add_option("--window-center-width", convert->explicit_window,
                   "an explicit VOI window: CENTER WIDTH (modality units)")
      ->expected(2)
      ->excludes(window);
  convert_cmd->callback([convert] { run_convert(*convert); });
}

}  // namespace pneumo::tools
