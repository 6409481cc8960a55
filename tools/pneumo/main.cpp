// The `pneumo` program: wires the subcommands, catches errors at the top, prints them and
// exits with 0 (ok), 2 (usage or configuration error) or 1 (any other failure).
#include <exception>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.h"
#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/core/memory.h"
#include "pneumo/core/runtime.h"
#include "pneumo/data/dicom_isolation.h"

int main(int argc, char** argv) {
  using namespace pneumo;
  core::keep_freed_memory();  // before LibTorch allocates anything
  CLI::App app{
      "pneumo: pneumothorax classification and segmentation on chest X-rays (DICOM in, "
      "masks, reports and TorchScript out)",
      "pneumo"};
  app.require_subcommand(1);
  app.failure_message(CLI::FailureMessage::help);
  bool verbose = false;
  bool quiet = false;
  int decoders = -1;
  double decode_timeout = 60;
  app.add_flag("-v,--verbose", verbose, "log debug messages");
  app.add_flag("-q,--quiet", quiet, "log warnings and errors only");
  app.add_option("--decoders", decoders,
                 "worker processes that decode DICOM files, so that a file which crashes or hangs the decoder fails "
                 "alone (default: one per core; 0: decode in this process, for data you trust)")
      ->check(CLI::Range(0, 256));
  app.add_option("--decode-timeout", decode_timeout, "seconds a decoder may spend on one file before it is stopped")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  // The global flags also after the subcommand (`pneumo predict ... -q`): what a subcommand does
  // not know falls through to here.
  app.fallthrough();
  app.parse_complete_callback([&] {
    if (verbose) core::set_log_level(core::LogLevel::kDebug);
    if (quiet) core::set_log_level(core::LogLevel::kWarn);
    data::DicomIsolation isolation;
    isolation.workers = decoders >= 0 ? decoders : core::hardware_threads();
    isolation.timeout_s = decode_timeout;
    data::set_dicom_isolation(isolation);  // the workers start with the first DICOM read
  });

  tools::setup_version(app);
  tools::setup_config(app);
  tools::setup_augment(app);
  tools::setup_data(app);
  tools::setup_dicom(app);
  tools::setup_make_demo(app);
  tools::setup_models(app);
  tools::setup_export(app);
  tools::setup_evaluate(app);
  tools::setup_average(app);
  tools::setup_predict(app);
  tools::setup_rle(app);
  tools::setup_train(app);
  tools::setup_cv(app);
  tools::setup_plan(app);
  tools::setup_launch(app);
  tools::setup_serve(app);
  tools::setup_pacs(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints help or the parse error
    return code == 0 ? core::kExitOk : core::kExitUsageOrConfig;
  } catch (const tools::ExitCode& e) {
    return e.code;
  } catch (const core::Error& e) {
    core::log::error("{}", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    core::log::error("unexpected failure: {}", e.what());
    return core::kExitFailure;
  }
  return core::kExitOk;
}
