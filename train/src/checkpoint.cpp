#include "pneumo/train/checkpoint.h"

#include <fmt/format.h>

#include "pneumo/core/build_info.h"
#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"

namespace pneumo::train {

namespace fs = std::filesystem;
using models::PickleRef;
using models::PickleValue;

namespace {
constexpr const char* kChecksumKey = "checksum";
}  // namespace

void write_checkpoint(const fs::path& file, const Checkpoint& c) {
  std::vector<std::pair<std::string, PickleRef>> model, metrics;
  for (const auto& [name, tensor] : c.model) model.emplace_back(name, models::pickle_tensor(tensor));
  for (const auto& [name, value] : c.metrics) metrics.emplace_back(name, models::pickle_float(value));
  PickleRef root = models::pickle_dict({
      {"format", models::pickle_string("pneumo-checkpoint")},
      {"version", models::pickle_int(kCheckpointVersion)},
      {"pneumo", models::pickle_string(PNEUMO_VERSION)},
      {"config", models::pickle_string(c.config_yaml)},
      {"epoch", models::pickle_int(c.epoch)},
      {"step", models::pickle_int(c.step)},
      {"model", models::pickle_dict(std::move(model))},
      {"metrics", models::pickle_dict(std::move(metrics))},
      {"state", c.state ? c.state : models::pickle_none()},
  });
  // CRC-32 of everything above: a bit flipped on disk is found on reading.
  root->entries.emplace_back(models::pickle_string(kChecksumKey),
                             models::pickle_int(models::pickle_checksum(root)));
  core::write_file_atomic(file, models::torch_save_bytes(root));
}

Checkpoint read_checkpoint(const fs::path& file) {
  const PickleRef root = models::read_torch_save(file);
  const auto fail = [&](const std::string& why) -> void {
    throw core::CheckpointError(fmt::format("{}: {}", file.string(), why));
  };
  const PickleRef format = models::pickle_get(root, "format");
  if (!format || format->text != "pneumo-checkpoint")
    fail("not a pneumo checkpoint (a plain weights file? use it as model.weights or model.encoder.weights)");
  const PickleRef version = models::pickle_get(root, "version");
  if (!version || version->kind != PickleValue::Kind::kInt) fail("checkpoint without a format version");
  if (version->integer > kCheckpointVersion)
    fail(fmt::format("checkpoint format {} is newer than this pneumo reads ({}); update pneumo", version->integer,
                     kCheckpointVersion));
  if (const PickleRef checksum = models::pickle_get(root, kChecksumKey)) {  // older checkpoints have none
    const uint32_t computed = models::pickle_checksum(root, kChecksumKey);
    if (checksum->kind != PickleValue::Kind::kInt || static_cast<uint32_t>(checksum->integer) != computed)
      fail(fmt::format("damaged: its contents do not match the checksum written with them (stored {:08x}, "
                       "computed {:08x})", static_cast<uint32_t>(checksum->integer), computed));
  }
  Checkpoint c;
  const auto integer = [&](const char* key) {
    const PickleRef v = models::pickle_get(root, key);
    if (!v || v->kind != PickleValue::Kind::kInt) fail(fmt::format("checkpoint without '{}'", key));
    return v->integer;
  };
  c.epoch = integer("epoch");
  c.step = integer("step");
  if (const PickleRef config = models::pickle_get(root, "config"); config && config->kind == PickleValue::Kind::kString)
    c.config_yaml = config->text;
  const PickleRef model = models::pickle_get(root, "model");
  if (!model || model->kind != PickleValue::Kind::kDict) fail("checkpoint without model weights");
  for (const auto& [key, value] : model->entries)
    if (value->kind == PickleValue::Kind::kTensor) c.model.emplace_back(key->text, value->tensor.contiguous());
  if (const PickleRef metrics = models::pickle_get(root, "metrics"); metrics && metrics->kind == PickleValue::Kind::kDict)
    for (const auto& [key, value] : metrics->entries)
      if (value->kind == PickleValue::Kind::kFloat) c.metrics[key->text] = value->number;
  const PickleRef state = models::pickle_get(root, "state");
  if (state && state->kind != PickleValue::Kind::kNone) c.state = state;
  return c;
}

}  // namespace pneumo::train
