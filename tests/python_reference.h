// Reference values computed by a Python script with Debian's python3-torch: the script writes a
// torch.save dict of tensors, read once per test process.
#pragma once

#include <map>
#include <string>

#include <catch2/catch.hpp>
#include <torch/types.h>

#include "pneumo/models/weights.h"
#include "pneumo_test_paths.h"
#include "test_support.h"

namespace pneumo::testing {

// Runs `<source>/<script> OUT_FILE` and returns the tensors it saved.
inline std::map<std::string, torch::Tensor> python_reference(const std::string& script) {
  TempDir dir;
  const auto r = run_command({PNEUMO_REFERENCE_PYTHON, std::string(PNEUMO_SOURCE_DIR) + "/" + script,
                              (dir / "reference.pth").string()});
  if (r.exit_code != 0) FAIL(script << " failed: " << r.err);
  std::map<std::string, torch::Tensor> out;
  for (auto& [k, v] : models::read_weights(dir / "reference.pth")) out[k] = v;
  return out;
}

}  // namespace pneumo::testing
