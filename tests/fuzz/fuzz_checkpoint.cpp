// Weight files from other people: torch.save (zip and legacy pickles), safetensors and pneumo
// checkpoints, read as `weights inspect`, model.weights and --resume read them.
#include <cstdint>

#include "fuzz_input.h"
#include "pneumo/core/error.h"
#include "pneumo/models/weights.h"
#include "pneumo/train/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const bool safetensors = size > 0 && data[0] == '{';  // let both readers see inputs
  const auto file = pneumo::fuzz::input_file(data, size, safetensors ? ".safetensors" : ".pth");
  try {
    pneumo::models::read_weights(file);
  } catch (const pneumo::core::Error&) {
  }
  try {
    pneumo::train::read_checkpoint(file);
  } catch (const pneumo::core::Error&) {
  }
  return 0;
}
