#include "serve_metrics.h"

#include <algorithm>
#include <cmath>
#include <regex>

#include <fmt/format.h>

namespace pneumo::infer {

namespace {

const std::vector<double> kSecondsBounds{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

// A label value as the format wants it: backslash, double quote and newline escaped.
std::string escaped(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string label_text(const std::vector<std::pair<std::string, std::string>>& labels, const std::string& extra = "") {
  std::string text;
  for (const auto& [name, value] : labels) text += fmt::format("{}{}=\"{}\"", text.empty() ? "" : ",", name, escaped(value));
  if (!extra.empty()) text += (text.empty() ? "" : ",") + extra;
  return text.empty() ? "" : "{" + text + "}";
}

// A number as the format writes it (Go's float formatting: +Inf, NaN, shortest round trip).
std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

}  // namespace

void ServeMetrics::Histogram::observe(double value) {
  if (counts.size() != bounds.size()) counts.assign(bounds.size(), 0);
  const auto bucket = std::lower_bound(bounds.begin(), bounds.end(), value) - bounds.begin();
  if (bucket < static_cast<std::ptrdiff_t>(bounds.size())) ++counts[static_cast<size_t>(bucket)];
  ++count;
  sum += value;
}

void ServeMetrics::count_request(const std::string& route, int status, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{{"route", route}, {"status", std::to_string(status)}}];
  auto [it, added] = request_seconds_.try_emplace({{"route", route}}, Histogram{kSecondsBounds, {}});
  it->second.observe(seconds);
}

void ServeMetrics::observe_stage(const std::string& stage, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto [it, added] = stage_seconds_.try_emplace({{"stage", stage}}, Histogram{kSecondsBounds, {}});
  it->second.observe(seconds);
}

void ServeMetrics::observe_batch(size_t images) {
  std::lock_guard<std::mutex> lock(mutex_);
  batch_sizes_.observe(static_cast<double>(images));
}

void ServeMetrics::count_refusal(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++refusals_[{{"reason", reason}}];
}

void ServeMetrics::set_model(const std::string& model, const std::string& version, double load_seconds, bool ready) {
  std::lock_guard<std::mutex> lock(mutex_);
  models_[{{"model", model}, {"version", version}}] = {load_seconds, ready};
}

void ServeMetrics::forget_model(const std::string& model, const std::string& version) {
  std::lock_guard<std::mutex> lock(mutex_);
  models_.erase({{"model", model}, {"version", version}});
}

std::string ServeMetrics::exposition(int64_t queue_depth, int64_t decoder_restarts, double uptime_seconds) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  const auto histogram = [&](const char* name, const Labels& labels, const Histogram& h) {
    int64_t cumulative = 0;
    for (size_t i = 0; i < h.bounds.size(); ++i) {
      cumulative += i < h.counts.size() ? h.counts[i] : 0;
      out += fmt::format("{}_bucket{} {}\n", name, label_text(labels, fmt::format("le=\"{}\"", number(h.bounds[i]))),
                         cumulative);
    }
    out += fmt::format("{}_bucket{} {}\n", name, label_text(labels, "le=\"+Inf\""), h.count);
    out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, label_text(labels), number(h.sum), name, label_text(labels),
                       h.count);
  };
  header(out, "pneumo_requests_total", "counter", "HTTP requests answered, by route pattern and status code.");
  for (const auto& [labels, n] : requests_) out += fmt::format("pneumo_requests_total{} {}\n", label_text(labels), n);
  header(out, "pneumo_request_seconds", "histogram", "Time from the request's arrival to its answer, by route pattern.");
  for (const auto& [labels, h] : request_seconds_) histogram("pneumo_request_seconds", labels, h);
  header(out, "pneumo_stage_seconds", "histogram",
         "Time per image in each stage: queue (waiting for the model), decode, model (the batch's forward pass), "
         "postprocess.");
  for (const auto& [labels, h] : stage_seconds_) histogram("pneumo_stage_seconds", labels, h);
  header(out, "pneumo_batch_size", "histogram", "Images per batch the model ran.");
  histogram("pneumo_batch_size", {}, batch_sizes_);
  header(out, "pneumo_refused_inputs_total", "counter",
         "Uploads not scored: the input gate's reason, or unreadable (not a DICOM, PNG or JPEG it could decode).");
  for (const auto& [labels, n] : refusals_) out += fmt::format("pneumo_refused_inputs_total{} {}\n", label_text(labels), n);
  header(out, "pneumo_model_load_seconds", "gauge", "Seconds the model version took to load and warm up.");
  for (const auto& [labels, m] : models_)
    out += fmt::format("pneumo_model_load_seconds{} {}\n", label_text(labels), number(m.first));
  header(out, "pneumo_model_ready", "gauge", "1 when the model version is loaded and warmed up.");
  for (const auto& [labels, m] : models_) out += fmt::format("pneumo_model_ready{} {}\n", label_text(labels), m.second ? 1 : 0);
  header(out, "pneumo_queue_depth", "gauge", "Requests waiting for a model now.");
  out += fmt::format("pneumo_queue_depth {}\n", queue_depth);
  header(out, "pneumo_decoder_restarts_total", "counter", "Decoder worker processes replaced after a crash or timeout.");
  out += fmt::format("pneumo_decoder_restarts_total {}\n", decoder_restarts);
  header(out, "pneumo_uptime_seconds", "gauge", "Seconds since the server started.");
  out += fmt::format("pneumo_uptime_seconds {}\n", number(uptime_seconds));
  return out;
}

std::string route_label(const std::string& path) {
  static const std::vector<std::pair<std::regex, std::string>> patterns{
      {std::regex(R"(/v2/models/[^/]+/versions/[^/]+/infer)"), "/v2/models/{name}/versions/{version}/infer"},
      {std::regex(R"(/v2/models/[^/]+/versions/[^/]+/ready)"), "/v2/models/{name}/versions/{version}/ready"},
      {std::regex(R"(/v2/models/[^/]+/versions/[^/]+)"), "/v2/models/{name}/versions/{version}"},
      {std::regex(R"(/v2/models/[^/]+/infer)"), "/v2/models/{name}/infer"},
      {std::regex(R"(/v2/models/[^/]+/ready)"), "/v2/models/{name}/ready"},
      {std::regex(R"(/v2/models/[^/]+)"), "/v2/models/{name}"},
      {std::regex(R"(/v2/repository/models/[^/]+/(load|unload))"), "/v2/repository/models/{name}/{action}"},
      {std::regex(R"(/v1/results/\d+/overlay\.png)"), "/v1/results/{id}/overlay.png"},
  };
  static const std::vector<std::string> exact{"/", "/results", "/app.js", "/style.css", "/health", "/metrics",
                                              "/v1/model", "/v1/predict", "/v1/results", "/v2", "/v2/health/live",
                                              "/v2/health/ready", "/v2/repository/index"};
  if (std::find(exact.begin(), exact.end(), path) != exact.end()) return path;
  for (const auto& [pattern, label] : patterns)
    if (std::regex_match(path, pattern)) return label;
  return "other";
}

}  // namespace pneumo::infer
