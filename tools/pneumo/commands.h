// Each subcommand of `pneumo`: setup_<name>(app) declares its options and wires its run
// function. Run functions throw pneumo::core::Error on failure; main maps it to an exit code.
#pragma once

namespace CLI {
class App;
}

namespace pneumo::tools {

// Thrown by a command that ends with an exit code it has already explained (main returns it).
struct ExitCode {
  int code;
};

void setup_augment(CLI::App& app);
void setup_version(CLI::App& app);
void setup_config(CLI::App& app);
void setup_data(CLI::App& app);
void setup_dicom(CLI::App& app);
void setup_make_demo(CLI::App& app);
void setup_models(CLI::App& app);
void setup_export(CLI::App& app);
void setup_evaluate(CLI::App& app);  // and tune, calibrate
void setup_average(CLI::App& app);
void setup_predict(CLI::App& app);
void setup_rle(CLI::App& app);
void setup_train(CLI::App& app);
void setup_cv(CLI::App& app);
void setup_plan(CLI::App& app);
void setup_launch(CLI::App& app);
void setup_serve(CLI::App& app);
void setup_pacs(CLI::App& app);

}  // namespace pneumo::tools
