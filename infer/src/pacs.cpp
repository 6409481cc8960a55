#include "pneumo/infer/pacs.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "dicomweb.h"
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

const char* const kCredentialsHint = "give --credentials user:password (or set PNEUMO_ORTHANC_CREDENTIALS)";

class Orthanc {
 public:
  Orthanc(const PacsOptions& o) : http_(o.orthanc, o.credentials, o.timeout_s), mark_(std::to_string(o.mark)) {}

  json get_json(const std::string& path) {
    const HttpResponse r = http_.checked("GET", path, http_.get(path), kCredentialsHint);
    try {
      return json::parse(r.body);
    } catch (const json::exception&) {
      throw core::IoError(fmt::format("{}{}: the answer is not JSON; is this an Orthanc server?", http_.base(), path));
    }
  }
  std::string get_bytes(const std::string& path) { return http_.checked("GET", path, http_.get(path), kCredentialsHint).body; }

  // The mark left on an instance by an earlier run, or empty.
  std::string mark_of(const std::string& instance) {
    const std::string path = fmt::format("/instances/{}/metadata/{}", instance, mark_);
    const HttpResponse r = http_.get(path);
    if (r.status == 404) return "";
    return http_.checked("GET", path, r, kCredentialsHint).body;
  }
  void set_mark(const std::string& instance, const json& value) {
    const std::string path = fmt::format("/instances/{}/metadata/{}", instance, mark_);
    http_.checked("PUT", path, http_.put(path, value.dump(), "text/plain"), kCredentialsHint);
  }
  void store(const std::string& dicom) {
    const HttpResponse r =
        http_.checked("POST", "/instances", http_.post("/instances", dicom, "application/dicom"), kCredentialsHint);
    const json answer = json::parse(r.body, nullptr, false);
    if (!answer.is_object() || !answer.contains("Status") ||
        (answer["Status"] != "Success" && answer["Status"] != "AlreadyStored"))
      throw core::IoError(fmt::format("{}/instances refused a result: {}", http_.base(), r.body));
  }

 private:
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

bool is_our_result(const std::string& manufacturer, const std::string& modality) {
  return manufacturer == "pneumo" || modality == "SEG" || modality == "SR";
}

// What the models make of one source instance: the input gate's refusal, or the prediction and
// the results to store (SEG, SR, and with `secondary_capture` the SC), with UIDs derived from
// the source and the models, so that storing them again changes nothing.
struct InstanceOutcome {
  data::GateDecision gate;
  std::optional<Prediction> prediction;
  std::vector<DicomResult> results;
  json mark;  // what was done, as Orthanc's mark says it
};

InstanceOutcome process_instance(const Predictor& predictor, const std::string& algorithm, const std::string& bytes,
                                 const std::string& name, const std::string& source_uid, bool secondary_capture) {
  InstanceOutcome out;
  InputImage image = decode_input(bytes, name, predictor.window());
  out.gate = predictor.check_gate(image);
  if (!out.gate.accepted) {  // not an image the model was made for: nothing is stored
    out.mark = {{"status", "refused"}, {"by", algorithm}, {"gate", out.gate.str()}, {"reason", out.gate.reason}};
    return out;
  }
  std::vector<PreparedInput> batch;
  batch.push_back(predictor.prepare(std::move(image)));
  out.prediction = std::move(predictor.predict(std::move(batch)).front());
  const Prediction& p = *out.prediction;
  const DicomResult seg = make_segmentation(bytes, name, p.mask, algorithm, derived_uid(source_uid, algorithm + " SEG"));
  const DicomResult sr = make_structured_report(bytes, name, findings_of(p, algorithm, predictor.calibration()), seg.bytes,
                                                derived_uid(source_uid, algorithm + " SR"));
  out.mark = {{"status", "done"},         {"by", algorithm},        {"probability", p.reported_probability()},
              {"calibrated", p.calibrated.has_value()}, {"positive", p.positive}, {"area_px", p.area_pixels()},
              {"gate", p.gate.str()},     {"seg", seg.sop_instance_uid}, {"sr", sr.sop_instance_uid}};
  out.results = {seg, sr};
  if (secondary_capture) {
    out.results.push_back(make_secondary_capture(bytes, name, draw_overlay(p.input.pixels, p.probability, p.mask), algorithm,
                                                 derived_uid(source_uid, algorithm + " SC")));
    out.mark["sc"] = out.results.back().sop_instance_uid;
  }
  return out;
}

void count(const InstanceOutcome& o, const std::string& instance, PacsSummary& summary) {
  if (!o.prediction) {
    ++summary.refused;
    core::log::info("pacs: {} -> {}", instance, o.gate.str());
    return;
  }
  ++summary.processed;
  if (o.prediction->positive) ++summary.positives;
  core::log::info("pacs: {} -> p={:.3f} {}, segmentation and report stored", instance,
                  o.prediction->reported_probability(), o.prediction->positive ? "positive" : "negative");
}

// Orthanc's REST API: its change log says what is new, user metadata marks what was done.
class OrthancWorker {
 public:
  OrthancWorker(const PacsOptions& options, const Predictor& predictor)
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
    } catch (const ResourceNotFound&) {
      core::log::debug("pacs: {} was deleted before it could be read", instance);
    }
  }

  void handle_existing(const std::string& instance, PacsSummary& summary) {
    if (instance.empty() || !orthanc_.mark_of(instance).empty()) return;  // done by an earlier run
    const json tags = orthanc_.get_json(fmt::format("/instances/{}/simplified-tags", instance));
    const auto tag = [&](const char* key) { return tags.contains(key) && tags[key].is_string() ? tags[key].get<std::string>() : ""; };
    if (is_our_result(tag("Manufacturer"), tag("Modality"))) return;
    if (!tags.contains("Rows")) {
      orthanc_.set_mark(instance, {{"status", "skipped"}, {"reason", "not an image"}});
      return;
    }
    const std::string bytes = orthanc_.get_bytes(fmt::format("/instances/{}/file", instance));
    const std::string source_uid = tag("SOPInstanceUID").empty() ? instance : tag("SOPInstanceUID");
    try {
      const InstanceOutcome outcome = process_instance(predictor_, algorithm_, bytes, "Orthanc instance " + instance,
                                                       source_uid, options_.secondary_capture);
      for (const DicomResult& r : outcome.results) orthanc_.store(r.bytes);
      orthanc_.set_mark(instance, outcome.mark);
      count(outcome, instance, summary);
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

// DICOMweb (QIDO-RS, WADO-RS, STOW-RS): there is no change log nor marks, so each pass lists the
// instances; an instance is done when the server holds its SEG (whose UID derives from the
// source and the models), which makes the results stored once across restarts. Instances
// refused or unreadable are remembered for the process's life (a later run looks at them again).
class DicomWebWorker {
 public:
  DicomWebWorker(const PacsOptions& options, const Predictor& predictor)
      : options_(options),
        predictor_(predictor),
        algorithm_(algorithm_name(predictor)),
        server_(options.dicomweb, options.credentials, options.timeout_s) {}

  void pass(PacsSummary& summary, Signals& signals) {
    constexpr size_t kPage = 100;
    for (size_t offset = 0;; offset += kPage) {
      const std::vector<DicomWebInstance> page = server_.search_instances(offset, kPage);
      for (const DicomWebInstance& instance : page) {
        if (signals.stopped()) return;
        handle(instance, summary);
      }
      if (page.size() < kPage) return;
    }
  }

 private:
  void handle(const DicomWebInstance& instance, PacsSummary& summary) {
    const std::string& uid = instance.sop_instance;
    if (settled_.count(uid) > 0 || is_our_result(instance.manufacturer, instance.modality) || instance.rows == 0) return;
    if (server_.has_instance(derived_uid(uid, algorithm_ + " SEG"))) {  // done by an earlier run
      settled_.insert(uid);
      return;
    }
    std::string bytes;
    try {
      bytes = server_.retrieve(instance);
    } catch (const ResourceNotFound&) {
      core::log::debug("pacs: {} was deleted before it could be read", uid);
      return;
    }
    try {
      const InstanceOutcome outcome = process_instance(predictor_, algorithm_, bytes, "DICOMweb instance " + uid, uid,
                                                       options_.secondary_capture);
      std::vector<std::string> files;
      for (const DicomResult& r : outcome.results) files.push_back(r.bytes);
      if (!files.empty()) server_.store(files);
      count(outcome, uid, summary);
    } catch (const core::DataError& e) {
      ++summary.failed;
      core::log::warn("pacs: {}", e.what());
    }
    settled_.insert(uid);
  }

  const PacsOptions& options_;
  const Predictor& predictor_;
  std::string algorithm_;
  DicomWeb server_;
  std::set<std::string> settled_;  // SOP Instance UIDs done, refused or unreadable
};

bool is_http_url(const std::string& url) { return url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0; }

void check_options(const PacsOptions& o) {
  if (o.orthanc.empty() == o.dicomweb.empty())
    throw core::UsageError("give the PACS as --orthanc URL (Orthanc's REST API) or --dicomweb URL (a DICOMweb root), "
                           "one of them");
  if (!o.orthanc.empty() && !is_http_url(o.orthanc))
    throw core::UsageError(fmt::format("--orthanc {}: expected a URL such as http://127.0.0.1:8042", o.orthanc));
  if (!o.dicomweb.empty() && !is_http_url(o.dicomweb))
    throw core::UsageError(fmt::format("--dicomweb {}: expected a URL such as http://127.0.0.1:8042/dicom-web", o.dicomweb));
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
  PacsSummary summary;
  std::function<void()> pass;
  int64_t since = 0;
  std::unique_ptr<OrthancWorker> orthanc;
  std::unique_ptr<DicomWebWorker> dicomweb;
  if (!options.orthanc.empty()) {
    orthanc = std::make_unique<OrthancWorker>(options, predictor);
    pass = [&] { since = orthanc->pass(since, summary, signals); };
  } else {
    dicomweb = std::make_unique<DicomWebWorker>(options, predictor);
    pass = [&] { dicomweb->pass(summary, signals); };
  }
  if (!options.watch) {
    pass();
    return summary;
  }
  const std::string& url = options.orthanc.empty() ? options.dicomweb : options.orthanc;
  core::log::info("pacs: watching {} (every {} s; SIGINT or SIGTERM stops)", url, options.poll_s);
  double backoff = 1;
  while (!signals.stopped()) {
    try {
      pass();
      backoff = 1;
      signals.wait(options.poll_s);
    } catch (const ServerUnavailable& e) {
      core::log::warn("pacs: {} unavailable ({}); retrying in {:.0f} s", options.orthanc.empty() ? "the DICOMweb server" : "Orthanc",
                      e.what(), backoff);
      signals.wait(backoff);
      backoff = std::min(backoff * 2, 30.0);
    }
  }
  return summary;
}

}  // namespace pneumo::infer
