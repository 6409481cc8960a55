// `pneumo export --model CKPT_OR_RUN [--model ...] --format torchscript --out model.pt`.
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.h"
#include "model_options.h"
#include "pneumo/infer/export.h"

namespace pneumo::tools {

namespace {

struct ExportCommandOptions {
  ModelOptions model;
  std::string format = "torchscript";
  std::string out;
};

void run_export(const ExportCommandOptions& o) {
  infer::ExportOptions options;
  static_cast<infer::ModelSelection&>(options) = o.model.selection();
  options.out = o.out;
  const infer::ExportSummary s = infer::export_torchscript(options);
  fmt::print("wrote {}: TorchScript, {} member(s), input [N, 1, {}, {}] grey 0..255\n", o.out, s.members, s.input_size,
             s.input_size);
  fmt::print("in Python:\n"
             "  import torch\n"
             "  extra = {{\"pneumo.json\": \"\"}}\n"
             "  model = torch.jit.load(\"{}\", _extra_files=extra)\n"
             "  mask, probability = model(image)  # image: float32 [N, 1, {}, {}], values 0..255\n",
             o.out, s.input_size, s.input_size);
}

}  // namespace

void setup_export(CLI::App& app) {
  auto options = std::make_shared<ExportCommandOptions>();
  CLI::App* cmd = app.add_subcommand("export", "Export a model or ensemble as a self-contained TorchScript file");
  add_model_options(*cmd, options->model);
  cmd->add_option("--format", options->format, "file format")->check(CLI::IsMember({"torchscript"}));
  cmd->add_option("--out", options->out, "file to write (.pt)")->required();
  cmd->callback([options] { run_export(*options); });
}

}  // namespace pneumo::tools
