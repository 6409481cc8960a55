// `pneumo export`: a model or ensemble as one self-contained TorchScript file.
//
// The file's forward takes grey X-rays already resized to the model's input size,
// float32 [N, 1, S, S] with pixel values 0..255, and returns a tuple
//   (mask [N, 1, S, S] pixel probabilities  (a classifier-only export: [N, 1, 0, 0]),
//    probability [N] image-level probability: classifiers', else auxiliary heads', else the
//                most confident pixel),
// the members' normalisation and weighted average included. The file also carries
// `pneumo.json` (read with torch.jit.load(f, _extra_files={"pneumo.json": ""})): input size,
// interpolation, DICOM grey mapping, class names, post-processing thresholds and members.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "pneumo/infer/ensemble.h"
#include "pneumo/infer/predict.h"

namespace pneumo::infer {

struct ExportOptions : ModelSelection {
  std::filesystem::path out;
};

struct ExportSummary {
  int members = 0;
  int input_size = 0;
  std::string metadata;  // the pneumo.json stored in the file
};

// Traces the ensemble on the CPU and writes the file atomically. Throws UsageError when the
// members' input sizes or interpolations differ.
ExportSummary export_torchscript(const ExportOptions& options);

}  // namespace pneumo::infer
