// The checkpoint format (see checkpoint.h for what each key holds and which version added it).
#include "pneumo/train/checkpoint.h"

#include <cstring>

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

// --- the outer layer ----------------------------------------------------------------------

PickleRef outer_layer(const Checkpoint& c) {
  std::vector<std::pair<std::string, PickleRef>> model, metrics;
  for (const auto& [name, tensor] : c.model) model.emplace_back(name, models::pickle_tensor(tensor));
  for (const auto& [name, value] : c.metrics) metrics.emplace_back(name, models::pickle_float(value));
  return models::pickle_dict({
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
}

// --- the trainer state's pieces -------------------------------------------------------------

// Reads the trainer state's keys, naming the file and key in every error.
class StateReader {
 public:
  StateReader(PickleRef state, std::string file) : state_(std::move(state)), file_(std::move(file)) {}

  PickleRef optional(const char* key) const { return models::pickle_get(state_, key); }

  PickleRef required(const char* key) const {
    PickleRef v = optional(key);
    if (!v) fail(fmt::format("lacks '{}'", key));
    return v;
  }

  double number(const char* key) const {
    const PickleRef v = required(key);
    if (v->kind == PickleValue::Kind::kInt) return static_cast<double>(v->integer);
    if (v->kind != PickleValue::Kind::kFloat) fail(fmt::format("'{}' is not a number", key));
    return v->number;
  }

  int64_t integer(const char* key) const {
    const PickleRef v = required(key);
    if (v->kind != PickleValue::Kind::kInt) fail(fmt::format("'{}' is not an integer", key));
    return v->integer;
  }

  // The rows of a list of lists, each of `width` entries (an absent key: no rows).
  std::vector<std::vector<PickleRef>> rows(const char* key, size_t width) const {
    std::vector<std::vector<PickleRef>> out;
    const PickleRef list = optional(key);
    if (!list) return out;
    for (const PickleRef& item : list->items) {
      if (item->items.size() != width) fail(fmt::format("malformed '{}' list", key));
      out.push_back(item->items);
    }
    return out;
  }

  std::vector<torch::Tensor> tensors(const char* key) const {
    std::vector<torch::Tensor> out;
    if (const PickleRef list = optional(key))
      for (const PickleRef& item : list->items) {
        if (item->kind != PickleValue::Kind::kTensor) fail(fmt::format("'{}' holds something other than tensors", key));
        out.push_back(item->tensor);
      }
    return out;
  }

  [[noreturn]] void fail(const std::string& why) const {
    throw core::CheckpointError(fmt::format("{}: the trainer state {}", file_, why));
  }

 private:
  PickleRef state_;
  std::string file_;
};

double as_number(const PickleRef& v) {
  return v->kind == PickleValue::Kind::kInt ? static_cast<double>(v->integer) : v->number;
}

PickleRef tensor_list(const std::vector<torch::Tensor>& tensors) {
  std::vector<PickleRef> items;
  for (const auto& t : tensors) items.push_back(models::pickle_tensor(t));
  return models::pickle_list(std::move(items));
}

torch::Tensor bytes_tensor(const std::string& bytes) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  if (!bytes.empty()) std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

std::string tensor_bytes(const torch::Tensor& tensor) {
  const torch::Tensor t = tensor.to(torch::kCPU, torch::kUInt8).contiguous();
  return std::string(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()));
}

PickleRef history_list(const std::vector<EpochResult>& rows) {
  std::vector<PickleRef> items;
  for (const EpochResult& m : rows)
    items.push_back(models::pickle_list({models::pickle_int(m.epoch), models::pickle_float(m.lr),
                                         models::pickle_float(m.train_loss), models::pickle_float(m.val_loss),
                                         models::pickle_float(m.val_dice), models::pickle_float(m.val_iou),
                                         models::pickle_float(m.val_auc), models::pickle_float(m.seconds)}));
  return models::pickle_list(std::move(items));
}

PickleRef class_auc_list(const std::vector<EpochResult>& rows) {
  std::vector<PickleRef> items;
  for (const EpochResult& m : rows) {
    std::vector<PickleRef> aucs;
    for (double auc : m.val_class_auc) aucs.push_back(models::pickle_float(auc));
    items.push_back(models::pickle_list(std::move(aucs)));
  }
  return models::pickle_list(std::move(items));
}

PickleRef snapshot_list(const std::vector<Snapshot>& snapshots) {
  std::vector<PickleRef> items;
  for (const Snapshot& s : snapshots)
    items.push_back(models::pickle_list({models::pickle_int(s.epoch), models::pickle_float(s.val_loss),
                                         models::pickle_float(s.val_dice), models::pickle_float(s.val_auc)}));
  return models::pickle_list(std::move(items));
}

PickleRef top_list(const std::vector<TopEntry>& top) {
  std::vector<PickleRef> items;
  for (const TopEntry& t : top) items.push_back(models::pickle_list({models::pickle_float(t.value), models::pickle_int(t.epoch)}));
  return models::pickle_list(std::move(items));
}

}  // namespace

// --- files ----------------------------------------------------------------------------------

void write_checkpoint(const fs::path& file, const Checkpoint& c) {
  PickleRef root = outer_layer(c);
  // CRC-32 of everything above: a bit flipped on disk is found on reading.
  root->entries.emplace_back(models::pickle_string(kChecksumKey), models::pickle_int(models::pickle_checksum(root)));
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

std::map<std::string, double> checkpoint_metrics(const EpochResult& m) {
  return {{"train_loss", m.train_loss}, {"val_loss", m.val_loss}, {"val_dice", m.val_dice},
          {"val_iou", m.val_iou},       {"val_auc", m.val_auc},   {"lr", m.lr}};
}

// --- the trainer state ----------------------------------------------------------------------

void TrainingState::to_checkpoint(Checkpoint& c) const {
  c.epoch = epoch;
  c.step = step;
  c.state = models::pickle_dict({
      {"version", models::pickle_int(kVersion)},
      {"optimizer", models::pickle_tensor(bytes_tensor(optimizer))},
      {"rng_cpu", models::pickle_tensor(rng_cpu)},
      {"rng_cuda", tensor_list(rng_cuda)},
      {"scaler_scale", models::pickle_float(scaler_scale)},
      {"scaler_growth_tracker", models::pickle_int(scaler_growth_tracker)},
      {"plateau_factor", models::pickle_float(plateau_factor)},
      {"plateau_best", models::pickle_float(plateau_best)},
      {"plateau_bad_epochs", models::pickle_int(plateau_bad_epochs)},
      {"best_value", models::pickle_float(best_value)},
      {"best_epoch", models::pickle_int(best_epoch)},
      {"stale_epochs", models::pickle_int(stale_epochs)},
      {"metrics", history_list(history)},
      {"class_auc", class_auc_list(history)},
      {"snapshots", snapshot_list(snapshots)},
      {"swa_count", models::pickle_int(swa_count)},
      {"swa", tensor_list(swa)},
      {"ema", tensor_list(ema)},
      {"top", top_list(top)},
  });
}

TrainingState TrainingState::from_checkpoint(const Checkpoint& c, const std::string& file) {
  if (!c.state) throw core::CheckpointError(fmt::format("{}: holds no trainer state to resume from", file));
  const StateReader in(c.state, file);
  // States written before the state had its own version are version 1 (see checkpoint.h).
  const int64_t version = in.optional("version") ? in.integer("version") : 1;
  if (version > kVersion)
    in.fail(fmt::format("is version {}, newer than this pneumo reads ({}); update pneumo", version, kVersion));
  TrainingState s;
  s.epoch = c.epoch;
  s.step = c.step;
  const PickleRef optimizer = in.required("optimizer");
  if (optimizer->kind != PickleValue::Kind::kTensor) in.fail("'optimizer' is not a byte tensor");
  s.optimizer = tensor_bytes(optimizer->tensor);
  const PickleRef rng = in.required("rng_cpu");
  if (rng->kind != PickleValue::Kind::kTensor) in.fail("'rng_cpu' is not a tensor");
  s.rng_cpu = rng->tensor;
  s.rng_cuda = in.tensors("rng_cuda");
  s.has_scaler = in.optional("scaler_scale") != nullptr;
  if (s.has_scaler) {
    s.scaler_scale = in.number("scaler_scale");
    s.scaler_growth_tracker = in.integer("scaler_growth_tracker");
  }
  s.plateau_factor = in.number("plateau_factor");
  s.plateau_best = in.number("plateau_best");
  s.plateau_bad_epochs = static_cast<int>(in.number("plateau_bad_epochs"));
  s.best_value = in.number("best_value");
  s.best_epoch = static_cast<int>(in.number("best_epoch"));
  s.stale_epochs = static_cast<int>(in.number("stale_epochs"));
  for (const auto& row : in.rows("metrics", 8)) {
    EpochResult m;
    m.epoch = static_cast<int>(row[0]->integer);
    double* fields[] = {&m.lr, &m.train_loss, &m.val_loss, &m.val_dice, &m.val_iou, &m.val_auc, &m.seconds};
    for (size_t k = 0; k < 7; ++k) *fields[k] = as_number(row[k + 1]);
    s.history.push_back(m);
  }
  if (const PickleRef class_auc = in.optional("class_auc")) {  // version 2 on
    if (class_auc->items.size() != s.history.size()) in.fail("'class_auc' does not have one row per epoch");
    for (size_t e = 0; e < s.history.size(); ++e)
      for (const PickleRef& auc : class_auc->items[e]->items) s.history[e].val_class_auc.push_back(as_number(auc));
  }
  for (const auto& row : in.rows("snapshots", 4))
    s.snapshots.push_back({static_cast<int>(row[0]->integer), as_number(row[1]), as_number(row[2]), as_number(row[3])});
  s.swa_count = static_cast<int64_t>(in.number("swa_count"));
  s.swa = in.tensors("swa");
  s.ema = in.tensors("ema");
  for (const auto& row : in.rows("top", 2)) s.top.push_back({as_number(row[0]), static_cast<int>(row[1]->integer)});
  if (s.swa_count > 0 && s.swa.empty()) in.fail("counts SWA epochs but holds no SWA average");
  return s;
}

}  // namespace pneumo::train
