#include "run_records.h"

#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "pneumo/core/file_io.h"
#include "pneumo/core/log.h"
#include "pneumo/train/charts.h"

namespace pneumo::train {

std::string metric_text(double v) { return std::isnan(v) ? "nan" : fmt::format("{:.6g}", v); }

namespace {

std::string json_number(double v) { return std::isnan(v) ? std::string("null") : fmt::format("{:.6g}", v); }

nlohmann::ordered_json finite_or_null(double v) {
  return std::isnan(v) ? nlohmann::ordered_json() : nlohmann::ordered_json(v);
}

void write_charts(const core::RunDirectory& run, const std::vector<EpochResult>& rows) {
  Series train_loss{"train loss", {}, {}}, val_loss{"val loss", {}, {}}, dice{"val Dice", {}, {}},
      iou_values{"val IoU", {}, {}}, auc{"val AUC", {}, {}}, lr{"learning rate", {}, {}};
  for (const EpochResult& m : rows) {
    train_loss.values.push_back(m.train_loss);
    val_loss.values.push_back(m.val_loss);
    dice.values.push_back(m.val_dice);
    iou_values.values.push_back(m.val_iou);
    auc.values.push_back(m.val_auc);
    lr.values.push_back(m.lr);
  }
  write_line_chart(run.file("loss.png"), "loss", {train_loss, val_loss});
  write_line_chart(run.file("metrics.png"), "validation metrics", {dice, iou_values, auc});
  write_line_chart(run.file("lr.png"), "learning rate (at the end of each epoch)", {lr}, true);
}

// The epoch's AUC of class c, NaN when the epoch has none (a resumed run's older epochs).
double class_auc(const EpochResult& m, size_t c) {
  return c < m.val_class_auc.size() ? m.val_class_auc[c] : std::nan("");
}

}  // namespace

void write_metrics(const core::RunDirectory& run, const std::vector<EpochResult>& rows,
                   const std::vector<std::string>& classes) {
  std::string csv = "epoch,lr,train_loss,val_loss,val_dice,val_iou,val_auc,seconds", jsonl;
  for (const std::string& name : classes) csv += ",auc:" + name;
  csv += "\n";
  for (const EpochResult& m : rows) {
    csv += fmt::format("{},{},{},{},{},{},{},{:.1f}", m.epoch, metric_text(m.lr), metric_text(m.train_loss),
                       metric_text(m.val_loss), metric_text(m.val_dice), metric_text(m.val_iou), metric_text(m.val_auc),
                       m.seconds);
    for (size_t c = 0; c < classes.size(); ++c) csv += "," + metric_text(class_auc(m, c));
    csv += "\n";
    std::string per_class;
    for (size_t c = 0; c < classes.size(); ++c)
      per_class += fmt::format("{}{}: {}", c == 0 ? "" : ", ", nlohmann::json(classes[c]).dump(),
                               json_number(class_auc(m, c)));
    jsonl += fmt::format(
        "{{\"epoch\": {}, \"lr\": {}, \"train_loss\": {}, \"val_loss\": {}, \"val_dice\": {}, \"val_iou\": {}, "
        "\"val_auc\": {}, \"seconds\": {:.1f}{}}}\n",
        m.epoch, json_number(m.lr), json_number(m.train_loss), json_number(m.val_loss), json_number(m.val_dice),
        json_number(m.val_iou), json_number(m.val_auc), m.seconds,
        classes.empty() ? "" : fmt::format(", \"val_class_auc\": {{{}}}", per_class));
  }
  core::write_file_atomic(run.file("metrics.csv"), csv);
  core::write_file_atomic(run.file("metrics.jsonl"), jsonl);
  write_charts(run, rows);
}

void write_manifest(const core::RunDirectory& run, const std::vector<Snapshot>& snapshots,
                    const std::optional<EpochResult>& swa) {
  nlohmann::ordered_json manifest;
  manifest["format"] = "pneumo-ensemble";
  manifest["version"] = 1;
  nlohmann::ordered_json members = nlohmann::ordered_json::array();
  for (const Snapshot& s : snapshots)
    members.push_back({{"checkpoint", fmt::format("snapshot-{:03d}.ckpt", s.epoch)}, {"epoch", s.epoch},
                       {"val_loss", finite_or_null(s.val_loss)}, {"val_dice", finite_or_null(s.val_dice)},
                       {"val_auc", finite_or_null(s.val_auc)}});
  manifest["snapshots"] = members;
  if (swa)
    manifest["swa"] = {{"checkpoint", "swa.ckpt"}, {"val_loss", finite_or_null(swa->val_loss)},
                       {"val_dice", finite_or_null(swa->val_dice)}, {"val_auc", finite_or_null(swa->val_auc)}};
  core::write_file_atomic(run.file("ensemble.json"), manifest.dump(2) + "\n");
}

void log_epoch(const EpochResult& m, int epochs, const std::vector<std::string>& classes) {
  core::log::info("epoch {}/{}: train_loss {:.4f}  val_loss {:.4f}  val_dice {}  val_iou {}  val_auc {}{}  lr {:.2e}  {:.0f} s",
                  m.epoch, epochs, m.train_loss, m.val_loss, metric_text(m.val_dice), metric_text(m.val_iou),
                  metric_text(m.val_auc), classes.empty() ? "" : " (mean over classes)", m.lr, m.seconds);
  if (classes.empty()) return;
  std::string line;
  for (size_t c = 0; c < classes.size(); ++c) line += fmt::format("  {} {:.3f}", classes[c], class_auc(m, c));
  core::log::info("  val AUC per class:{}", line);
}

}  // namespace pneumo::train
