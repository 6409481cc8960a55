#include "pneumo/infer/pacs.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "http_client.h"
#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/core/runtime.h"
#include "pneumo/core/stop_signals.h"
#include "pneumo/infer/dicom_results.h"
#include "pneumo/infer/outputs.h"
#include "pneumo/infer/predictor.h"

namespace pneumo::infer {

namespace {

using json = nlohmann::json;

// Orthanc answers nothing or a server error: worth retrying later (unlike a 4xx).
struct OrthancUnavailable : core::IoError {
  using core::IoError::IoError;
};
// The resource is gone (an instance deleted between the change log and our request).
struct OrthancNotFound : core::IoError {
  using core::IoError::IoError;
};

class Orthanc {
 public:
  Orthanc(const PacsOptions& o) : http_(o.orthanc, o.credentials, o.timeout_s), mark_(std::to_string(o.mark)) {}

  json get_json(const std::string& path) {
    const HttpResponse r = checked("GET", path, http_.get(path));
    try {
      return json::parse(r.body);
    } catch (const json::exception&) {
      throw core::IoError(fmt::format("{}{}: the answer is not JSON; is this an Orthanc server?", http_.base(), path));
    }
  }
  std::string get_bytes(const std::string& path) { return checked("GET", path, http_.get(path)).body; }

  // The mark left on an instance by an earlier run, or empty.
  std::string mark_of(const std::string& instance) {
    const std::string path = fmt::format("/instances/{}/metadata/{}", instance, mark_);
    const HttpResponse r = http_.get(path);
    if (r.status == 404) return "";
    return checked("GET", path, r).body;
  }
  void set_mark(const std::string& instance, const json& value) {
    const std::string path = fmt::format("/instances/{}/metadata/{}", instance, mark_);
    checked("PUT", path, http_.put(path, value.dump(), "text/plain"));
  }
  void store(const std::string& dicom) {
    const HttpResponse r = checked("POST", "/instances", http_.post("/instances", dicom, "application/dicom"));
    const json answer = json::parse(r.body, nullptr, false);
    if (!answer.is_object() || !answer.contains("Status") ||
        (answer["Status"] != "Success" && answer["Status"] != "AlreadyStored"))
      throw core::IoError(fmt::format("{}/instances refused a result: {}", http_.base(), r.body));
  }

 private:
  HttpResponse checked(const char* method, const std::string& path, HttpResponse r) {
    if (r.status == 0 || r.status >= 500)
      throw OrthancUnavailable(fmt::format("{} {}{}: {}", method, http_.base(), path,
                                           r.status == 0 ? r.error : fmt::format("HTTP {}", r.status)));
    if (r.status == 401 || r.status == 403)
      throw core::UsageError(fmt::format("{} {}{}: HTTP {}; give --credentials user:password (or set "
                                         "PNEUMO_ORTHANC_CREDENTIALS)", method, http_.base(), path, r.status));
    if (r.status == 404) throw OrthancNotFound(fmt::format("{} {}{}: not found", method, http_.base(), path));
    if (!r.ok())
      throw core::IoError(fmt::format("{} {}{}: HTTP {}: {}", method, http_.base(), path, r.status, r.body.substr(0, 300)));
    return r;
  }

  HttpClient http_;
  std::string mark_;
};

// SIGINT/SIGTERM, blocked from the start and waited for between polls; remembered once seen.
class Signals {
 public:
  // Waits up to `seconds`; true when a stop signal came (now or earlier).
  bool wait(double seconds) {
    if (!stopped_) stopped_ = signals_.wait(seconds) != 0;
    return stopped_;
  }
  bool stopped() { return wait(0); }

 private:
  core::StopSignals signals_;
  bool stopped_ = false;
};

bool is_our_result(const json& tags) {
  const auto value = [&](const char* key) { return tags.contains(key) && tags[key].is_string() ? tags[key].get<std::string>() : ""; };
  return value("Manufacturer") == "pneumo" || value("Modality") == "SEG";
}

class Worker {
 public:
  Worker(const PacsOptions& options, const Predictor& predictor)
      : options_(options), predictor_(predictor), algorithm_(algorithm_name(predictor)), orthanc_(options) {}

  // Handles every change after `since`; returns the last sequence number seen.
  int64_t pass(int64_t since, PacsSummary& summary, Signals& signals) {
    for (;;) {
      const json changes = orthanc_.get_json(fmt::format("/changes?since={}&limit=100", since));
      const int64_t last = changes.value("Last", since);
      if (last < since) {
        core::log::warn("pacs: Orthanc's change log restarted (last {} < {}); reading it from the start", last, since);
        since = 0;
        continue;
      }
      for (const json& change : changes.value("Changes", json::array())) {
        if (signals.stopped()) return since;
        if (change.value("ChangeType", "") == "NewInstance" && change.value("ResourceType", "") == "Instance")
          handle(change.value("ID", ""), summary);
        since = std::max(since, change.value("Seq", since));
      }
      since = std::max(since, last);
      if (changes.value("Done", true)) return since;
    }
  }

 private:
  void handle(const std::string& instance, PacsSummary& summary) {
    try {
      handle_existing(instance, summary);
    } catch (const OrthancNotFound&) {
      core::log::debug("pacs: {} was deleted before it could be read", instance);
    }
  }

  void handle_existing(const std::string& instance, PacsSummary& summary) {
    if (instance.empty() || !orthanc_.mark_of(instance).empty()) return;  // done by an earlier run
    const json tags = orthanc_.get_json(fmt::format("/instances/{}/simplified-tags", instance));
    if (is_our_result(tags)) return;
    if (!tags.contains("Rows")) {
      orthanc_.set_mark(instance, {{"status", "skipped"}, {"reason", "not an image"}});
      return;
    }
    const std::string bytes = orthanc_.get_bytes(fmt::format("/instances/{}/file", instance));
    const std::string name = "Orthanc instance " + instance;
    try {
      InputImage image = decode_input(bytes, name, predictor_.window());
      const data::GateDecision decision = predictor_.check_gate(image);
      if (!decision.accepted) {  // not an image the model was made for: say so on it, store nothing
        orthanc_.set_mark(instance, {{"status", "refused"}, {"by", algorithm_}, {"gate", decision.str()},
                                     {"reason", decision.reason}});
        ++summary.refused;
        core::log::info("pacs: {} -> {}", instance, decision.str());
        return;
      }
      std::vector<PreparedInput> batch;
      batch.push_back(predictor_.prepare(std::move(image)));
      const Prediction p = std::move(predictor_.predict(std::move(batch)).front());
      const std::string source_uid = tags.value("SOPInstanceUID", instance);
      const DicomResult seg = make_segmentation(bytes, name, p.mask, algorithm_, derived_uid(source_uid, algorithm_ + " SEG"));
      orthanc_.store(seg.bytes);
      const DicomResult sr = make_structured_report(bytes, name, findings_of(p, algorithm_, predictor_.calibration()), seg.bytes,
                                                    derived_uid(source_uid, algorithm_ + " SR"));
      orthanc_.store(sr.bytes);
      json mark{{"status", "done"}, {"by", algorithm_}, {"probability", p.reported_probability()},
                {"calibrated", p.calibrated.has_value()}, {"positive", p.positive},
                {"area_px", p.area_pixels()}, {"gate", p.gate.str()}, {"seg", seg.sop_instance_uid},
                {"sr", sr.sop_instance_uid}};
      if (options_.secondary_capture) {
        const DicomResult sc = make_secondary_capture(bytes, name, draw_overlay(p.input.pixels, p.probability, p.mask),
                                                      algorithm_, derived_uid(source_uid, algorithm_ + " SC"));
        orthanc_.store(sc.bytes);
        mark["sc"] = sc.sop_instance_uid;
      }
      orthanc_.set_mark(instance, mark);
      ++summary.processed;
      if (p.positive) ++summary.positives;
      core::log::info("pacs: {} -> p={:.3f} {}, segmentation and report stored", instance, p.reported_probability(),
                      p.positive ? "positive" : "negative");
    } catch (const core::DataError& e) {
      // The instance itself is the problem: say so on it, and do not try again.
      orthanc_.set_mark(instance, {{"status", "failed"}, {"by", algorithm_}, {"error", e.what()}});
      ++summary.failed;
      core::log::warn("pacs: {}", e.what());
    }
  }

  const PacsOptions& options_;
  const Predictor& predictor_;
  std::string algorithm_;
  Orthanc orthanc_;
};

void check_options(const PacsOptions& o) {
  if (o.orthanc.rfind("http://", 0) != 0 && o.orthanc.rfind("https://", 0) != 0)
    throw core::UsageError(fmt::format("--orthanc {}: expected a URL such as http://127.0.0.1:8042", o.orthanc));
  if (o.mark < 1024 || o.mark > 65535)
    throw core::UsageError(fmt::format("--mark {}: Orthanc user metadata indices are 1024..65535", o.mark));
  if (!(o.poll_s > 0)) throw core::UsageError(fmt::format("--poll {}: expected > 0 seconds", o.poll_s));
  if (!(o.timeout_s > 0)) throw core::UsageError(fmt::format("--timeout {}: expected > 0 seconds", o.timeout_s));
}

}  // namespace

PacsSummary run_pacs(const PacsOptions& options) {
  check_options(options);
  Signals signals;
  const Predictor predictor = load_predictor(options.ensemble);
  Worker worker(options, predictor);

  PacsSummary summary;
  int64_t since = 0;
  if (!options.watch) {
    worker.pass(since, summary, signals);
    return summary;
  }
  core::log::info("pacs: watching {} (every {} s; SIGINT or SIGTERM stops)", options.orthanc, options.poll_s);
  double backoff = 1;
  while (!signals.stopped()) {
    try {
      since = worker.pass(since, summary, signals);
      backoff = 1;
      signals.wait(options.poll_s);
    } catch (const OrthancUnavailable& e) {
      core::log::warn("pacs: Orthanc unavailable ({}); retrying in {:.0f} s", e.what(), backoff);
      signals.wait(backoff);
      backoff = std::min(backoff * 2, 30.0);
    }
  }
  return summary;
}

}  // namespace pneumo::infer
