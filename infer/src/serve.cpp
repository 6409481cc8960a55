#include "pneumo/infer/serve.h"

#include <pthread.h>
#include <sys/socket.h>

#include <csignal>

#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <deque>
#include <map>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <thread>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "pneumo/infer/kserve.h"
#include "model_repository.h"
#include "pneumo/core/build_info.h"
#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/core/runtime.h"
#include "pneumo/core/stop_signals.h"
#include "pneumo/data/rle.h"
#include "pneumo/infer/outputs.h"
#include "pneumo/infer/predictor.h"
#include "serve_metrics.h"
#include "upload_decoder.h"
#include "web_assets.h"

namespace pneumo::infer {

namespace {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

constexpr const char* kJson = "application/json";

void send_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(json{{"error", message}}.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
}

double milliseconds_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Compares in time independent of where the strings differ (the token is a secret).
bool same_secret(std::string_view given, std::string_view secret) {
  if (given.size() != secret.size()) return false;
  unsigned char difference = 0;
  for (size_t i = 0; i < given.size(); ++i) difference |= static_cast<unsigned char>(given[i] ^ secret[i]);
  return difference == 0;
}

std::string utc_now() { return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::time(nullptr))); }

// The overlay the page shows: the X-ray with the heat map and the mask's outline, drawn at
// most `max_side` pixels wide or high (the image, probability and mask scaled down first: the
// PNG encoding dominates the cost), as a quickly compressed PNG.
std::string quick_png(const cv::Mat& image) {
  std::vector<uchar> png;
  cv::imencode(".png", image, png, {cv::IMWRITE_PNG_COMPRESSION, 1});
  return std::string(png.begin(), png.end());
}

std::string overlay_png(const Prediction& p, int max_side) {
  const int side = std::max(p.input.pixels.cols, p.input.pixels.rows);
  if (side <= max_side) return quick_png(draw_overlay(p.input.pixels, p.probability, p.mask));
  const double scale = static_cast<double>(max_side) / side;
  cv::Mat image, probability, mask;
  cv::resize(p.input.pixels, image, cv::Size(), scale, scale, cv::INTER_AREA);
  if (!p.probability.empty()) cv::resize(p.probability, probability, image.size(), 0, 0, cv::INTER_AREA);
  cv::resize(p.mask, mask, image.size(), 0, 0, cv::INTER_NEAREST);
  return quick_png(draw_overlay(image, probability, mask));
}

// The explanation map over the X-ray, drawn at most `max_side` pixels wide or high.
std::string explanation_png(const Prediction& p, const cv::Mat& map, int max_side) {
  const int side = std::max(p.input.pixels.cols, p.input.pixels.rows);
  if (side <= max_side) return quick_png(draw_explanation(p.input.pixels, map));
  const double scale = static_cast<double>(max_side) / side;
  cv::Mat image, small;
  cv::resize(p.input.pixels, image, cv::Size(), scale, scale, cv::INTER_AREA);
  cv::resize(map, small, image.size(), 0, 0, cv::INTER_AREA);
  return quick_png(draw_explanation(image, small));
}

// The last results, for the results page. Holds no patient data: a request number, the time,
// the answer and the overlay.
class History {
 public:
  explicit History(size_t limit) : limit_(limit) {}

  void add(json summary, std::string overlay) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (limit_ == 0) return;
    entries_.push_back({std::move(summary), std::move(overlay)});
    while (entries_.size() > limit_) entries_.pop_front();
  }

  json list() const {
    std::lock_guard<std::mutex> lock(mutex_);
    json items = json::array();
    for (auto e = entries_.rbegin(); e != entries_.rend(); ++e) items.push_back(e->summary);
    return json{{"results", std::move(items)}};
  }

  std::optional<std::string> overlay(int64_t id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Entry& e : entries_)
      if (e.summary["id"].get<int64_t>() == id) return e.overlay;
    return std::nullopt;
  }

 private:
  struct Entry {
    json summary;
    std::string overlay;
  };
  size_t limit_;
  mutable std::mutex mutex_;
  std::deque<Entry> entries_;
};

bool flag_set(const httplib::Request& req, const char* name, bool otherwise) {
  if (!req.has_param(name)) return otherwise;
  const std::string v = req.get_param_value(name);
  return v == "true" || v == "1" || v == "yes";
}

void check_options(const ServeOptions& o) {
  const auto need = [](bool ok, const std::string& what) {
    if (!ok) throw core::UsageError(what);
  };
  need(o.port >= 0 && o.port <= 65535, fmt::format("--port {}: expected 0..65535", o.port));
  need(o.max_upload_mb > 0, fmt::format("--max-upload-mb {}: expected > 0", o.max_upload_mb));
  need(o.http_threads >= 1, fmt::format("--http-threads {}: expected >= 1", o.http_threads));
  need(o.queue >= 1, fmt::format("--queue {}: expected >= 1", o.queue));
  need(o.max_batch >= 1, fmt::format("--max-batch {}: expected >= 1", o.max_batch));
  need(o.max_wait_ms >= 0, fmt::format("--max-wait-ms {}: expected >= 0", o.max_wait_ms));
  need(o.timeout_s > 0, fmt::format("--timeout {}: expected > 0 seconds", o.timeout_s));
  need(o.history >= 0, fmt::format("--history {}: expected >= 0", o.history));
  need(o.decoders >= 0 && o.decoders <= 256, fmt::format("--decoders {}: expected 0..256", o.decoders));
  need(o.overlay_max_side >= 16, fmt::format("--overlay-max-side {}: expected >= 16", o.overlay_max_side));
  need(o.model_repository.empty() != o.ensemble.models.empty(),
       "give the models as --model (one ensemble) or as --model-repository DIR, not both and not neither");
  need(std::regex_match(o.model_name, std::regex("[A-Za-z0-9_.-]{1,64}")),
       fmt::format("--model-name '{}': expected 1-64 letters, digits, '_', '.' or '-'", o.model_name));
  check_explain_options(o.explain);
  for (char c : o.token)
    need(c > 0x20 && c < 0x7f, "--token: expected printable ASCII without spaces");
}

// cpp-httplib 0.11 listens with a backlog of 5 (compiled into Debian's library): a burst of
// clients connecting at once overflows it and some see their connection reset. Listening again
// on the bound socket raises it (Linux updates the backlog of a listening socket).
class HttpServer : public httplib::Server {
 public:
  void widen_backlog() { ::listen(svr_sock_, SOMAXCONN); }
};

// SIGHUP taken synchronously, as core::StopSignals takes SIGINT/SIGTERM: blocked from the start
// (threads started later inherit the mask) and looked for by the watcher.
class HangupSignal {
 public:
  HangupSignal() {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals_, &previous_);
  }
  ~HangupSignal() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }
  HangupSignal(const HangupSignal&) = delete;
  HangupSignal& operator=(const HangupSignal&) = delete;
  bool take() {
    const timespec now{0, 0};
    return sigtimedwait(&signals_, nullptr, &now) == SIGHUP;
  }

 private:
  sigset_t signals_{}, previous_{};
};

// From a thread of its own: stops the server on the first SIGINT/SIGTERM (it finishes the
// requests in progress), and loads the models again on SIGHUP.
class SignalWatcher {
 public:
  SignalWatcher(core::StopSignals& stop, HangupSignal& hangup, httplib::Server& server, ModelRepository& models)
      : thread_([this, &stop, &hangup, &server, &models] {
          while (!done_.load()) {
            if (stop.wait(0.1) != 0) {
              server.stop();
              return;
            }
            if (hangup.take()) {
              core::log::info("serve: SIGHUP: loading the models again");
              models.reload_all();
            }
          }
        }) {}
  ~SignalWatcher() { stop(); }
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;
  void stop() {
    done_.store(true);
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// An upload as the two APIs receive it: the raw body whatever its Content-Type, or a multipart
// form's "file" field.
struct Upload {
  std::string bytes;
  bool form_without_file = false;
};

// Reads the request body through cpp-httplib's content reader, so that no Content-Type (a
// form-encoded body included) meets another limit than --max-upload-mb. False after answering
// the error (413 over the limit, 400 a body that did not arrive).
bool read_upload(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader,
                 const ServeOptions& options, Upload& upload) {
  bool ok = false;
  if (req.is_multipart_form_data()) {
    std::string field;
    bool found = false;
    ok = reader(
        [&](const httplib::MultipartFormData& item) {
          field = item.name;
          found = found || field == "file";
          return true;
        },
        [&](const char* data, size_t length) {
          if (field == "file") upload.bytes.append(data, length);
          return true;
        });
    upload.form_without_file = !found;
  } else {
    ok = reader([&](const char* data, size_t length) {
      upload.bytes.append(data, length);
      return true;
    });
  }
  if (ok) return true;
  if (res.status == 413)
    send_error(res, 413, fmt::format("the upload is larger than the {} MB allowed (--max-upload-mb)", options.max_upload_mb));
  else
    send_error(res, 400, "the request body did not arrive whole (the connection closed or the length was wrong)");
  return false;
}

// What one image came to: refused by the input gate, or the models' prediction.
struct ImageAnswer {
  std::shared_ptr<ServedModel> model;
  std::optional<InputImage> refused;  // the image the gate refused
  data::GateDecision gate;
  std::optional<Prediction> prediction;
  double decode_ms = 0, model_ms = 0;
};

// The running service: the models (repository), the recent results, the decoder workers and
// the metrics, with one handler per route (kRoutes below).
class Service {
 public:
  explicit Service(const ServeOptions& options)
      : options_(options),
        repository_(options, metrics_),
        history_(static_cast<size_t>(options.history)),
        decoder_(options.decoders > 0 ? std::make_unique<UploadDecoder>(options.program, options.decoders,
                                                                         options.timeout_s)
                                      : nullptr),
        started_(Clock::now()) {}

  ModelRepository& repository() { return repository_; }
  ServeMetrics& metrics() { return metrics_; }
  int64_t requests() const { return request_count_.load(); }

  void health(const httplib::Request&, httplib::Response& res) {
    const auto model = repository_.first();
    const json body{{"status", "ok"},
                    {"ready", repository_.ready()},
                    {"uptime_s", std::chrono::duration<double>(Clock::now() - started_).count()},
                    {"requests", request_count_.load()},
                    {"waiting", repository_.queue_depth()},
                    {"batches", model ? model->batcher->batches() : 0},
                    {"decoder_restarts", decoder_ ? decoder_->restarts() : 0},
                    {"predicted", model ? model->batcher->processed() : 0}};
    res.set_content(body.dump(), kJson);
  }

  void metrics_page(const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.exposition(repository_.queue_depth(), decoder_ ? decoder_->restarts() : 0,
                                        std::chrono::duration<double>(Clock::now() - started_).count()),
                    "text/plain; version=0.0.4; charset=utf-8");
  }

  // ---- /v1: pneumo's own API ----

  void model(const httplib::Request&, httplib::Response& res) {
    const auto model = repository_.first();
    if (!model) return send_error(res, 503, "no model is loaded; see GET /v2/repository/index");
    res.set_content(model->description.dump(), kJson);
  }

  void results(const httplib::Request&, httplib::Response& res) { res.set_content(history_.list().dump(), kJson); }

  void result_overlay(const httplib::Request& req, httplib::Response& res) {
    const std::optional<std::string> png = history_.overlay(std::stoll(req.matches[1]));
    if (!png) return send_error(res, 404, "no such result (only the most recent are kept)");
    if (png->empty()) return send_error(res, 404, "the input gate refused this image: nothing was drawn");
    res.set_content(*png, "image/png");
  }

  // Upload -> decode -> the input gate -> queue for the model -> the JSON answer (and the results
  // page's entry).
  void predict(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
    const auto start = Clock::now();
    const int64_t id = ++request_count_;
    Upload upload;
    if (!read_upload(req, res, reader, options_, upload)) return;
    if (upload.form_without_file)
      return send_error(res, 400, "the form has no \"file\" field; expected the image as the body or as field \"file\"");
    const size_t upload_size = upload.bytes.size();
    ImageAnswer a;
    if (!answer_image(repository_.first(), std::move(upload.bytes), id, res, a)) return;
    if (a.refused) return answer_refusal(res, a, id, start);
    const Prediction& p = *a.prediction;
    json summary = summary_of(p, id, *a.model);
    json answer = summary;
    answer["rle"] = data::encode_rle(p.mask);
    const auto overlay_start = Clock::now();
    std::string overlay;
    const bool overlay_wanted = flag_set(req, "overlay", true);
    if (overlay_wanted || options_.history > 0) overlay = overlay_png(p, options_.overlay_max_side);
    if (overlay_wanted) answer["overlay_png"] = encode_base64(overlay);
    const double overlay_ms = milliseconds_since(overlay_start);
    const auto explain_start = Clock::now();
    if (flag_set(req, "explain", false)) {
      const auto [png, said] = explanation_of(*a.model, p);
      answer["explanation_png"] = png.empty() ? json(nullptr) : json(encode_base64(png));
      answer["explanation"] = said;
    }
    answer["model"] = a.model->description["members"];
    answer["timing_ms"] = {{"decode", a.decode_ms},
                           {"model", a.model_ms},
                           {"overlay", overlay_ms},
                           {"explanation", milliseconds_since(explain_start)},
                           {"total", milliseconds_since(start)}};
    history_.add(std::move(summary), std::move(overlay));
    res.set_content(answer.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
    core::log::info("serve: #{} {} KB {}x{} -> p={:.3f} {} ({} v{}, {:.0f} ms)", id, (upload_size + 1023) / 1024,
                    p.input.pixels.cols, p.input.pixels.rows, p.reported_probability(),
                    p.positive ? "positive" : "negative", a.model->name, a.model->version, milliseconds_since(start));
  }

  // ---- /v2: the KServe v2 / Triton protocol (kserve.h) ----

  void server_metadata(const httplib::Request&, httplib::Response& res) {
    res.set_content(json{{"name", "pneumo"},
                         {"version", PNEUMO_VERSION},
                         {"extensions", {"binary_tensor_data", "model_repository"}}}
                        .dump(),
                    kJson);
  }

  void live(const httplib::Request&, httplib::Response& res) { res.set_content(json{{"live", true}}.dump(), kJson); }

  void ready(const httplib::Request&, httplib::Response& res) {
    if (repository_.ready()) return res.set_content(json{{"ready", true}}.dump(), kJson);
    res.status = 503;
    res.set_content(json{{"ready", false}, {"error", "not every model is loaded and warmed up; see GET /v2/repository/index"}}
                        .dump(),
                    kJson);
  }

  void model_metadata(const httplib::Request& req, httplib::Response& res) {
    const auto model = model_of(req, res);
    if (!model) return;
    json inputs = json::array({{{"name", "image"}, {"datatype", "BYTES"}, {"shape", {1}}}});
    json outputs = json::array();
    const std::map<std::string, std::string> types{{"probability", "FP64"}, {"score", "FP64"},   {"positive", "BOOL"},
                                                   {"area_px", "INT64"},    {"area_mm2", "FP64"}, {"rle", "BYTES"},
                                                   {"gate", "BYTES"},       {"explanation_png", "BYTES"}};
    for (const std::string& name : infer_output_names())
      outputs.push_back({{"name", name}, {"datatype", types.at(name)}, {"shape", {1}}});
    res.set_content(json{{"name", model->name},
                         {"versions", {model->version}},
                         {"platform", "pneumo_libtorch"},
                         {"inputs", inputs},
                         {"outputs", outputs},
                         {"parameters", model->description}}
                        .dump(),
                    kJson);
  }

  void model_ready(const httplib::Request& req, httplib::Response& res) {
    const auto model = model_of(req, res);
    if (!model) return;
    res.set_content(json{{"name", model->name}, {"version", model->version}, {"ready", true}}.dump(), kJson);
  }

  void infer(const httplib::Request& req, httplib::Response& res, const httplib::ContentReader& reader) {
    const auto start = Clock::now();
    const int64_t id = ++request_count_;
    const auto model = model_of(req, res);
    if (!model) return;
    Upload upload;
    if (!read_upload(req, res, reader, options_, upload)) return;
    std::optional<size_t> header_length;
    if (req.has_header("Inference-Header-Content-Length")) {
      const std::string text = req.get_header_value("Inference-Header-Content-Length");
      char* end = nullptr;
      const unsigned long long n = std::strtoull(text.c_str(), &end, 10);
      if (text.empty() || end != text.c_str() + text.size())
        return send_error(res, 400, fmt::format("Inference-Header-Content-Length '{}': expected a number of bytes", text));
      header_length = static_cast<size_t>(n);
    }
    InferRequest request;
    try {
      request = parse_infer_request(upload.bytes, header_length);
    } catch (const core::DataError& e) {
      return send_error(res, 400, e.what());
    }
    ImageAnswer a;
    if (!answer_image(model, std::move(request.image), id, res, a)) return;
    json outputs = json::array();
    const auto wanted = [&](const char* name) {
      return request.outputs.empty() ? std::string(name) != "explanation_png" || request.explain
                                     : std::find(request.outputs.begin(), request.outputs.end(), name) != request.outputs.end();
    };
    if (a.refused) {
      outputs.push_back(output_tensor("gate", "BYTES", a.gate.str()));
      json summary{{"id", id}, {"time", utc_now()}, {"gate", a.gate.str()}, {"accepted", false}, {"probability", nullptr},
                   {"decision", "refused by the input gate"}, {"positive", false}, {"area_px", 0}};
      history_.add(std::move(summary), "");
    } else {
      const Prediction& p = *a.prediction;
      const std::optional<double> mm2 = p.area_mm2();
      if (wanted("probability")) outputs.push_back(output_tensor("probability", "FP64", p.reported_probability()));
      if (wanted("score")) outputs.push_back(output_tensor("score", "FP64", p.score()));
      if (wanted("positive")) outputs.push_back(output_tensor("positive", "BOOL", p.positive));
      if (wanted("area_px")) outputs.push_back(output_tensor("area_px", "INT64", p.area_pixels()));
      if (wanted("area_mm2")) outputs.push_back(output_tensor("area_mm2", "FP64", mm2 ? *mm2 : -1.0));
      if (wanted("rle")) outputs.push_back(output_tensor("rle", "BYTES", data::encode_rle(p.mask)));
      if (wanted("gate")) outputs.push_back(output_tensor("gate", "BYTES", p.gate.str()));
      if (request.explain && wanted("explanation_png")) {
        const auto [png, said] = explanation_of(*a.model, p);
        outputs.push_back(output_tensor("explanation_png", "BYTES", png.empty() ? said : encode_base64(png)));
      }
      history_.add(summary_of(p, id, *a.model), options_.history > 0 ? overlay_png(p, options_.overlay_max_side) : "");
    }
    json answer{{"model_name", a.model->name}, {"model_version", a.model->version}};
    if (!request.id.empty()) answer["id"] = request.id;
    answer["outputs"] = std::move(outputs);
    answer["parameters"] = {{"accepted", !a.refused.has_value()},
                            {"calibrated", a.prediction && a.prediction->calibrated.has_value()},
                            {"timing_ms", {{"decode", a.decode_ms}, {"model", a.model_ms}, {"total", milliseconds_since(start)}}}};
    res.set_content(answer.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
    core::log::info("serve: #{} v2 {} v{} -> {}", id, a.model->name, a.model->version,
                    a.refused ? a.gate.str() : fmt::format("p={:.3f}", a.prediction->reported_probability()));
  }

  void repository_index(const httplib::Request&, httplib::Response& res) {
    json models = json::array();
    for (const RepositoryEntry& e : repository_.index()) {
      json entry{{"name", e.name}, {"version", e.version}, {"state", e.state}};
      if (!e.reason.empty()) entry["reason"] = e.reason;
      models.push_back(std::move(entry));
    }
    res.set_content(models.dump(), kJson);
  }

  void repository_load(const httplib::Request& req, httplib::Response& res) {
    if (!repository_.has_repository())
      return send_error(res, 400, "this server serves --model; loading by name needs --model-repository DIR");
    try {
      const auto model = repository_.load(req.matches[1]);
      res.set_content(json{{"name", model->name}, {"version", model->version}, {"state", "READY"},
                           {"load_seconds", model->load_seconds}}
                          .dump(),
                      kJson);
    } catch (const core::UsageError& e) {
      send_error(res, 404, e.what());
    } catch (const core::Error& e) {
      send_error(res, 422, fmt::format("model {} could not be loaded (the loaded version, if any, stays): {}",
                                       std::string(req.matches[1]), e.what()));
    }
  }

  void repository_unload(const httplib::Request& req, httplib::Response& res) {
    if (!repository_.unload(req.matches[1]))
      return send_error(res, 404, fmt::format("model {} is not loaded", std::string(req.matches[1])));
    res.set_content(json{{"name", std::string(req.matches[1])}, {"state", "UNAVAILABLE"}}.dump(), kJson);
  }

 private:
  // The model a /v2/models/<name>[/versions/<v>] path names, or null after answering 404.
  std::shared_ptr<ServedModel> model_of(const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    const std::string version = req.matches.size() > 2 ? std::string(req.matches[2]) : "";
    if (auto model = repository_.find(name, version)) return model;
    const auto loaded = repository_.find(name);
    send_error(res, 404,
               loaded ? fmt::format("model {} has version {} loaded, not {}", name, loaded->version, version)
                      : fmt::format("model {} is not loaded; see GET /v2/repository/index", name));
    return nullptr;
  }

  // Decodes, gates and predicts one image with `model`. False after answering the error: 503
  // without a model, 422 an unreadable image, 503 with Retry-After when the queue is full or
  // the model did not answer in time.
  bool answer_image(std::shared_ptr<ServedModel> model, std::string bytes, int64_t id, httplib::Response& res,
                    ImageAnswer& a) {
    if (!model) {
      send_error(res, 503, "no model is loaded; see GET /v2/repository/index");
      return false;
    }
    if (bytes.empty()) {
      send_error(res, 400, "empty upload; expected DICOM, PNG or JPEG bytes");
      return false;
    }
    a.model = std::move(model);
    const Predictor& predictor = *a.model->predictor;
    const auto start = Clock::now();
    std::optional<InputImage> image;
    try {
      const std::string name = fmt::format("upload #{}", id);
      image = decoder_ ? decoder_->decode(std::move(bytes), name, predictor.window())
                       : decode_input(std::move(bytes), name, predictor.window());
    } catch (const core::DataError& e) {
      core::log::info("serve: #{} refused: {}", id, e.what());
      metrics_.count_refusal("unreadable");
      send_error(res, 422, e.what());
      return false;
    }
    a.decode_ms = milliseconds_since(start);
    metrics_.observe_stage("decode", a.decode_ms / 1000);
    a.gate = predictor.check_gate(*image);
    if (!a.gate.accepted) {
      metrics_.count_refusal(a.gate.reason);
      a.refused = std::move(image);
      return true;
    }
    const auto queued = Clock::now();
    std::optional<ServeBatcher::Ticket> ticket = a.model->batcher->submit({predictor.prepare(std::move(*image)), queued});
    if (!ticket) {
      core::log::warn("serve: #{} refused: {} requests already waiting", id, options_.queue);
      res.set_header("Retry-After", "1");
      send_error(res, 503, fmt::format("busy: {} requests are waiting for the model; retry later", options_.queue));
      return false;
    }
    if (ticket->result.wait_for(std::chrono::duration<double>(options_.timeout_s)) != std::future_status::ready) {
      ticket->abandon();
      core::log::warn("serve: #{} timed out after {} s waiting for the model", id, options_.timeout_s);
      res.set_header("Retry-After", "5");
      send_error(res, 503, fmt::format("timed out after {} s waiting for the model; retry later", options_.timeout_s));
      return false;
    }
    a.prediction = ticket->result.get();
    a.model_ms = milliseconds_since(queued);
    metrics_.observe_stage("model", a.prediction->timing.model_s);
    metrics_.observe_stage("postprocess", a.prediction->timing.postprocess_s);
    return true;
  }

  // The input gate's refusal on /v1: a 200 answer that names the reason and scores nothing (the
  // page and the results list show it as refused).
  void answer_refusal(httplib::Response& res, const ImageAnswer& a, int64_t id, Clock::time_point start) {
    json summary{{"id", id},
                 {"time", utc_now()},
                 {"gate", a.gate.str()},
                 {"gate_reason", a.gate.reason},
                 {"accepted", false},
                 {"probability", nullptr},
                 {"calibrated", false},
                 {"decision", "refused by the input gate"},
                 {"positive", false},
                 {"area_px", 0},
                 {"area_mm2", nullptr},
                 {"width", a.refused->pixels.cols},
                 {"height", a.refused->pixels.rows},
                 {"model_name", a.model->name},
                 {"model_version", a.model->version}};
    json answer = summary;
    answer["timing_ms"] = {{"decode", a.decode_ms}, {"total", milliseconds_since(start)}};
    history_.add(std::move(summary), "");
    res.set_content(answer.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
    core::log::info("serve: #{} {}", id, a.gate.str());
  }

  // The explanation as a PNG (empty when none) and what it is.
  std::pair<std::string, std::string> explanation_of(const ServedModel& model, const Prediction& p) const {
    try {
      const cv::Mat map = model.predictor->explain(p.input, options_.explain);
      if (map.empty()) return {"", "none: exported models cannot be explained"};
      return {explanation_png(p, map, options_.overlay_max_side),
              fmt::format("{} of the encoder's {} stage", options_.explain.method,
                          options_.explain.stage == 0 ? std::string("deepest") : fmt::format("{}.", options_.explain.stage))};
    } catch (const core::Error& e) {
      return {"", fmt::format("none: {}", e.what())};
    }
  }

  static json summary_of(const Prediction& p, int64_t id, const ServedModel& model) {
    const std::optional<double> mm2 = p.area_mm2();
    return json{{"id", id},
                {"time", utc_now()},
                {"gate", p.gate.str()},
                {"accepted", true},
                {"probability", p.reported_probability()},
                {"calibrated", p.calibrated.has_value()},
                {"score", p.score()},
                {"image_probability", p.image_probability ? json(*p.image_probability) : json(nullptr)},
                {"decision", p.positive ? "pneumothorax" : "no pneumothorax"},
                {"positive", p.positive},
                {"area_px", p.area_pixels()},
                {"area_mm2", mm2 ? json(*mm2) : json(nullptr)},
                {"width", p.input.pixels.cols},
                {"height", p.input.pixels.rows},
                {"model_name", model.name},
                {"model_version", model.version}};
  }

  const ServeOptions& options_;
  ServeMetrics metrics_;  // before the repository: its batchers report here until they stop
  ModelRepository repository_;
  History history_;
  std::unique_ptr<UploadDecoder> decoder_;
  std::atomic<int64_t> request_count_{0};
  const Clock::time_point started_;
};

// The routes (the pages in web_assets() come on top). Uploads are read through a content
// reader (see read_upload).
struct Route {
  const char* method;   // GET | POST
  const char* pattern;  // cpp-httplib's path pattern
  const char* shown;    // how an error message names it
  void (Service::*handle)(const httplib::Request&, httplib::Response&) = nullptr;
  void (Service::*upload)(const httplib::Request&, httplib::Response&, const httplib::ContentReader&) = nullptr;
};

const Route kRoutes[] = {
    {"GET", "/health", "/health", &Service::health},
    {"GET", "/metrics", "/metrics", &Service::metrics_page},
    {"GET", "/v1/model", "/v1/model", &Service::model},
    {"POST", "/v1/predict", "/v1/predict", nullptr, &Service::predict},
    {"GET", "/v1/results", "/v1/results", &Service::results},
    {"GET", R"(/v1/results/(\d{1,15})/overlay\.png)", "/v1/results/ID/overlay.png", &Service::result_overlay},
    {"GET", "/v2", "/v2", &Service::server_metadata},
    {"GET", "/v2/health/live", "/v2/health/live", &Service::live},
    {"GET", "/v2/health/ready", "/v2/health/ready", &Service::ready},
    {"GET", R"(/v2/models/([^/]+))", "/v2/models/NAME", &Service::model_metadata},
    {"GET", R"(/v2/models/([^/]+)/versions/([^/]+))", "/v2/models/NAME/versions/V", &Service::model_metadata},
    {"GET", R"(/v2/models/([^/]+)/ready)", "/v2/models/NAME/ready", &Service::model_ready},
    {"GET", R"(/v2/models/([^/]+)/versions/([^/]+)/ready)", "/v2/models/NAME/versions/V/ready", &Service::model_ready},
    {"POST", R"(/v2/models/([^/]+)/infer)", "/v2/models/NAME/infer", nullptr, &Service::infer},
    {"POST", R"(/v2/models/([^/]+)/versions/([^/]+)/infer)", "/v2/models/NAME/versions/V/infer", nullptr, &Service::infer},
    {"POST", "/v2/repository/index", "/v2/repository/index", &Service::repository_index},
    {"POST", R"(/v2/repository/models/([^/]+)/load)", "/v2/repository/models/NAME/load", &Service::repository_load},
    {"POST", R"(/v2/repository/models/([^/]+)/unload)", "/v2/repository/models/NAME/unload", &Service::repository_unload},
};

std::string known_routes() {
  std::vector<std::string> names;
  for (const Route& r : kRoutes) names.push_back(fmt::format("{} {}", r.method, r.shown));
  return fmt::format("{}", fmt::join(names, ", "));
}

// The methods a path is served with (for a 405 that says which), none when no route has it.
std::vector<std::string> methods_of(const std::string& path) {
  std::vector<std::string> methods;
  for (const Route& r : kRoutes)
    if (std::regex_match(path, std::regex(r.pattern)) &&
        std::find(methods.begin(), methods.end(), r.method) == methods.end())
      methods.push_back(r.method);
  for (const WebAsset& asset : web_assets())
    if (path == asset.route && std::find(methods.begin(), methods.end(), "GET") == methods.end()) methods.push_back("GET");
  return methods;
}

void add_routes(HttpServer& server, Service& service) {
  for (const WebAsset& asset : web_assets())
    server.Get(asset.route, [&asset](const httplib::Request&, httplib::Response& res) {
      res.set_content(asset.body.data(), asset.body.size(), asset.content_type);
    });
  for (const Route& route : kRoutes) {
    if (route.upload) {
      server.Post(route.pattern, [&service, upload = route.upload](const httplib::Request& req, httplib::Response& res,
                                                                   const httplib::ContentReader& reader) {
        (service.*upload)(req, res, reader);
      });
      continue;
    }
    auto handler = [&service, handle = route.handle](const httplib::Request& req, httplib::Response& res) {
      (service.*handle)(req, res);
    };
    if (std::string_view(route.method) == "POST")
      server.Post(route.pattern, handler);
    else
      server.Get(route.pattern, handler);
  }
}

// When the request being handled on this thread arrived (cpp-httplib handles a request on one
// thread from routing to logging), for the metrics.
thread_local Clock::time_point request_arrived;

// Threads, limits and timeouts of the HTTP server; every answer counted in the metrics.
void configure(HttpServer& server, const ServeOptions& options, ServeMetrics& metrics) {
  const int threads = options.http_threads;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  server.set_payload_max_length(static_cast<size_t>(options.max_upload_mb * 1024 * 1024));
  server.set_read_timeout(30);
  server.set_write_timeout(30);
  server.set_default_headers({{"X-Content-Type-Options", "nosniff"}, {"Cache-Control", "no-store"}});
  server.set_logger([&metrics](const httplib::Request& req, const httplib::Response& res) {
    metrics.count_request(route_label(req.path), res.status,
                          std::chrono::duration<double>(Clock::now() - request_arrived).count());
    if (req.path == "/health" || req.path == "/metrics" || req.path.rfind("/v2/health/", 0) == 0) return;
    core::log::debug("serve: {} {} -> {}", req.method, req.path, res.status);
  });
}

// The token guards the API (/v1/ and /v2/ but its health probes); the pages, /health and
// /metrics hold no patient data and stay open.
void require_token(HttpServer& server, const ServeOptions& options) {
  server.set_pre_routing_handler([&options](const httplib::Request& req, httplib::Response& res) {
    request_arrived = Clock::now();
    const bool guarded = (req.path.rfind("/v1/", 0) == 0 || req.path.rfind("/v2", 0) == 0) &&
                         req.path.rfind("/v2/health/", 0) != 0;
    if (options.token.empty() || !guarded) return httplib::Server::HandlerResponse::Unhandled;
    const std::string header = req.get_header_value("Authorization");
    const std::string_view prefix = "Bearer ";
    if (header.rfind(prefix, 0) == 0 && same_secret(std::string_view(header).substr(prefix.size()), options.token))
      return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("WWW-Authenticate", "Bearer");
    send_error(res, 401, "missing or wrong bearer token; send the header Authorization: Bearer <token>");
    return httplib::Server::HandlerResponse::Handled;
  });
}

// Every error the server itself produces is JSON too, and says its cause.
void answer_errors_as_json(HttpServer& server, const ServeOptions& options) {
  server.set_error_handler([&options](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413) {
      send_error(res, 413, fmt::format("the request is larger than the {} MB allowed (--max-upload-mb)",
                                       options.max_upload_mb));
    } else if (res.status == 404) {
      if (const std::vector<std::string> methods = methods_of(req.path); !methods.empty()) {
        res.set_header("Allow", fmt::format("{}", fmt::join(methods, ", ")));
        send_error(res, 405, fmt::format("{} is served with {}, not {}", req.path, fmt::join(methods, " or "), req.method));
      } else {
        send_error(res, 404, "no such resource; known: GET / (the page), GET /results, " + known_routes());
      }
    } else {
      send_error(res, res.status, fmt::format("HTTP {}", res.status));
    }
  });
  server.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr error) {
    std::string message = "unknown error";
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      message = e.what();
    } catch (...) {
    }
    core::log::error("serve: {} {} failed: {}", req.method, req.path, message);
    send_error(res, 500, "internal error: " + message);
  });
}

}  // namespace

void serve(const ServeOptions& options) {
  check_options(options);
  core::StopSignals stop_signals;  // before any thread starts
  HangupSignal hangup;
  ::signal(SIGPIPE, SIG_IGN);      // a decoder that died shows as a failed write, not a dead server
  Service service(options);
  HttpServer server;
  configure(server, options, service.metrics());
  require_token(server, options);
  answer_errors_as_json(server, options);
  add_routes(server, service);

  int port = options.port;
  const bool bound = port == 0 ? (port = server.bind_to_any_port(options.host)) > 0
                               : server.bind_to_port(options.host, port);
  if (!bound)
    throw core::UsageError(fmt::format("cannot listen on {}:{} (in use, or not an address of this machine)",
                                       options.host, options.port));
  server.widen_backlog();
  SignalWatcher watcher(stop_signals, hangup, server, service.repository());
  std::cout << fmt::format("serving on http://{}:{}", options.host, port) << std::endl;
  std::vector<std::string> models;
  for (const RepositoryEntry& e : service.repository().index())
    models.push_back(fmt::format("{} v{} ({})", e.name, e.version, e.state));
  const auto first = service.repository().first();
  core::log::info("serve: models {} on {}, batches of up to {} (waiting {} ms), queue {}, {} HTTP threads, {} "
                  "decoder process(es){}",
                  fmt::join(models, ", "), first ? first->predictor->device().str() : options.ensemble.device,
                  options.max_batch, options.max_wait_ms, options.queue, options.http_threads, options.decoders,
                  options.token.empty() ? "" : ", bearer token required");
  server.listen_after_bind();
  watcher.stop();
  core::log::info("serve: stopped after {} request(s)", service.requests());
}

}  // namespace pneumo::infer
