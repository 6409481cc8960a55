#include "pneumo/infer/serve.h"

#include <sys/socket.h>

#include <csignal>

#include <atomic>
#include <chrono>
#include <cmath>
#include <ctime>
#include <deque>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "pneumo/core/error.h"
#include "pneumo/core/log.h"
#include "pneumo/core/runtime.h"
#include "pneumo/core/stop_signals.h"
#include "pneumo/data/rle.h"
#include "pneumo/infer/dynamic_batcher.h"
#include "pneumo/infer/outputs.h"
#include "pneumo/infer/predictor.h"
#include "upload_decoder.h"
#include "web_assets.h"

namespace pneumo::infer {

namespace {

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;
using Batcher = DynamicBatcher<PreparedInput, Prediction>;

constexpr const char* kJson = "application/json";

void send_error(httplib::Response& res, int status, const std::string& message) {
  res.status = status;
  res.set_content(json{{"error", message}}.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
}

double milliseconds_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

std::string base64(std::string_view bytes) {
  static constexpr char kDigits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint32_t{static_cast<unsigned char>(bytes[i])} << 16) |
                       (uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8) | static_cast<unsigned char>(bytes[i + 2]);
    out += {kDigits[v >> 18], kDigits[(v >> 12) & 63], kDigits[(v >> 6) & 63], kDigits[v & 63]};
  }
  if (i + 1 == bytes.size()) {
    const uint32_t v = uint32_t{static_cast<unsigned char>(bytes[i])} << 16;
    out += {kDigits[v >> 18], kDigits[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    const uint32_t v = (uint32_t{static_cast<unsigned char>(bytes[i])} << 16) |
                       (uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8);
    out += {kDigits[v >> 18], kDigits[(v >> 12) & 63], kDigits[(v >> 6) & 63], '='};
  }
  return out;
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

// What the upload holds: a multipart form's "file" field, else the raw body.
std::optional<std::string> upload_of(const httplib::Request& req) {
  if (req.is_multipart_form_data()) {
    if (!req.has_file("file")) return std::nullopt;
    return req.get_file_value("file").content;
  }
  return req.body;
}

bool wants_overlay(const httplib::Request& req) {
  if (!req.has_param("overlay")) return true;
  const std::string v = req.get_param_value("overlay");
  return !(v == "false" || v == "0" || v == "no");
}

bool wants_explanation(const httplib::Request& req) {
  if (!req.has_param("explain")) return false;
  const std::string v = req.get_param_value("explain");
  return v == "true" || v == "1" || v == "yes";
}

json gate_description(const data::GateSection& g) {
  return json{{"enabled", g.enabled},          {"modalities", g.modalities},
              {"lateral_view", g.lateral_view}, {"body_parts", g.body_parts},
              {"min_age_years", g.min_age_years}, {"too_small", g.too_small},
              {"photometric", g.photometric},  {"bits_stored", g.bits_stored},
              {"blank_std", g.blank_std},      {"saturated_share", g.saturated_share}};
}

json model_description(const Predictor& predictor, const ServeOptions& options) {
  json members = json::array();
  for (const Member& m : predictor.members()) {
    members.push_back(json{{"checkpoint", m.checkpoint.filename().string()},
                           {"model", m.script ? "exported" : m.config.model.name},
                           {"encoder", m.script ? "" : m.config.model.encoder.name},
                           {"task", m.segmenter ? "segmentation" : "classification"},
                           {"input_size", m.config.data.size},
                           {"channels", m.config.data.channels},
                           {"weight", m.weight}});
  }
  const PostprocessSection& p = predictor.postprocess();
  return json{{"members", std::move(members)},
              {"segments", predictor.has_segmenter()},
              {"window", predictor.window()},
              {"hflip", options.ensemble.hflip},
              {"cuda_graphs", options.ensemble.cuda_graphs && predictor.device().is_cuda()},
              {"device", predictor.device().str()},
              {"postprocess",
               {{"threshold", p.threshold},
                {"top_threshold", p.top_threshold},
                {"min_area", p.min_area},
                {"min_component_area", p.min_component_area},
                {"classifier_threshold", p.classifier_threshold}}},
              {"gate", gate_description(predictor.gate())},
              {"calibration", predictor.calibration() ? json::parse(calibration_to_json(*predictor.calibration()))
                                                      : json(nullptr)},
              {"batching",
               {{"max_batch", options.max_batch},
                {"max_wait_ms", options.max_wait_ms},
                {"queue", options.queue},
                {"timeout_s", options.timeout_s}}},
              {"max_upload_mb", options.max_upload_mb},
              {"rle", "SIIM-ACR: 1-based start/length pairs, column-major, relative starts"}};
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

// Stops the server on the first SIGINT/SIGTERM (blocked from the start by core::StopSignals),
// from a thread of its own.
class SignalWatcher {
 public:
  SignalWatcher(core::StopSignals& signals, httplib::Server& server)
      : thread_([this, &signals, &server] {
          while (!done_.load())
            if (signals.wait(0.1) != 0) {
              server.stop();  // finishes the requests in progress
              return;
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

// The running service: the models behind the batcher, the recent results and the decoder
// workers, with one handler per route (kRoutes below).
class Service {
 public:
  explicit Service(const ServeOptions& options)
      : options_(options),
        predictor_(load_predictor(options.ensemble)),
        description_(model_description(predictor_, options)),
        batcher_([this](std::vector<PreparedInput> batch) { return predictor_.predict(std::move(batch)); },
                 batching_of(options)),
        history_(static_cast<size_t>(options.history)),
        decoder_(options.decoders > 0 ? std::make_unique<UploadDecoder>(options.program, options.decoders,
                                                                         predictor_.window(), options.timeout_s)
                                      : nullptr),
        started_(Clock::now()) {}

  const Predictor& predictor() const { return predictor_; }
  int64_t requests() const { return request_count_.load(); }

  void health(const httplib::Request&, httplib::Response& res) {
    const json body{{"status", "ok"},
                    {"uptime_s", std::chrono::duration<double>(Clock::now() - started_).count()},
                    {"requests", request_count_.load()},
                    {"waiting", batcher_.waiting()},
                    {"batches", batcher_.batches()},
                    {"decoder_restarts", decoder_ ? decoder_->restarts() : 0},
                    {"predicted", batcher_.processed()}};
    res.set_content(body.dump(), kJson);
  }

  void model(const httplib::Request&, httplib::Response& res) { res.set_content(description_.dump(), kJson); }

  void results(const httplib::Request&, httplib::Response& res) { res.set_content(history_.list().dump(), kJson); }

  void result_overlay(const httplib::Request& req, httplib::Response& res) {
    const std::optional<std::string> png = history_.overlay(std::stoll(req.matches[1]));
    if (!png) return send_error(res, 404, "no such result (only the most recent are kept)");
    if (png->empty()) return send_error(res, 404, "the input gate refused this image: nothing was drawn");
    res.set_content(*png, "image/png");
  }

  // Upload -> decode -> queue for the model -> the JSON answer (and the results page's entry).
  void predict(const httplib::Request& req, httplib::Response& res) {
    const auto start = Clock::now();
    const int64_t id = ++request_count_;
    size_t upload_size = 0;
    std::optional<InputImage> image = decode_upload(req, res, id, upload_size);
    if (!image) return;
    const double decode_ms = milliseconds_since(start);
    if (const data::GateDecision gate = predictor_.check_gate(*image); !gate.accepted)
      return answer_refusal(res, *image, gate, id, start);
    const std::optional<Prediction> p = wait_for_model(predictor_.prepare(std::move(*image)), res, id);
    if (!p) return;
    const double model_ms = milliseconds_since(start) - decode_ms;
    json summary = summary_of(*p, id);
    json answer = summary;
    answer["rle"] = data::encode_rle(p->mask);
    const auto overlay_start = Clock::now();
    std::string overlay;
    const bool overlay_wanted = wants_overlay(req);
    if (overlay_wanted || options_.history > 0) overlay = overlay_png(*p, options_.overlay_max_side);
    if (overlay_wanted) answer["overlay_png"] = base64(overlay);
    const double overlay_ms = milliseconds_since(overlay_start);
    const auto explain_start = Clock::now();
    if (wants_explanation(req)) {
      try {
        const cv::Mat map = predictor_.explain(p->input, options_.explain);
        answer["explanation_png"] =
            map.empty() ? json(nullptr) : json(base64(explanation_png(*p, map, options_.overlay_max_side)));
        answer["explanation"] = map.empty() ? "none: exported models cannot be explained"
                                            : fmt::format("{} of the encoder's {} stage", options_.explain.method,
                                                          options_.explain.stage == 0
                                                              ? std::string("deepest")
                                                              : fmt::format("{}.", options_.explain.stage));
      } catch (const core::Error& e) {
        answer["explanation_png"] = nullptr;
        answer["explanation"] = fmt::format("none: {}", e.what());
      }
    }
    answer["model"] = description_["members"];
    answer["timing_ms"] = {{"decode", decode_ms},
                           {"model", model_ms},
                           {"overlay", overlay_ms},
                           {"explanation", milliseconds_since(explain_start)},
                           {"total", milliseconds_since(start)}};
    history_.add(std::move(summary), std::move(overlay));
    res.set_content(answer.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
    core::log::info("serve: #{} {} KB {}x{} -> p={:.3f} {} ({:.0f} ms)", id, (upload_size + 1023) / 1024,
                    p->input.pixels.cols, p->input.pixels.rows, p->score(), p->positive ? "positive" : "negative",
                    milliseconds_since(start));
  }

 private:
  static BatcherOptions batching_of(const ServeOptions& o) {
    BatcherOptions b;
    b.capacity = static_cast<size_t>(o.queue);
    b.max_batch = static_cast<size_t>(o.max_batch);
    b.max_wait = std::chrono::microseconds(static_cast<int64_t>(std::llround(o.max_wait_ms * 1000)));
    return b;
  }

  // The input gate's refusal: a 200 answer that names the reason and scores nothing (the page
  // and the results list show it as refused).
  void answer_refusal(httplib::Response& res, const InputImage& image, const data::GateDecision& gate, int64_t id,
                      Clock::time_point start) {
    json summary{{"id", id},
                 {"time", utc_now()},
                 {"gate", gate.str()},
                 {"gate_reason", gate.reason},
                 {"accepted", false},
                 {"probability", nullptr},
                 {"calibrated", false},
                 {"decision", "refused by the input gate"},
                 {"positive", false},
                 {"area_px", 0},
                 {"area_mm2", nullptr},
                 {"width", image.pixels.cols},
                 {"height", image.pixels.rows}};
    json answer = summary;
    answer["timing_ms"] = {{"total", milliseconds_since(start)}};
    history_.add(std::move(summary), "");
    res.set_content(answer.dump(-1, ' ', false, json::error_handler_t::replace), kJson);
    core::log::info("serve: #{} {}", id, gate.str());
  }

  // The upload decoded, or the 400/422 answered.
  std::optional<InputImage> decode_upload(const httplib::Request& req, httplib::Response& res, int64_t id,
                                          size_t& upload_size) {
    std::optional<std::string> bytes = upload_of(req);
    if (!bytes) {
      send_error(res, 400, "the form has no \"file\" field; expected the image as the body or as field \"file\"");
      return std::nullopt;
    }
    if (bytes->empty()) {
      send_error(res, 400, "empty upload; expected DICOM, PNG or JPEG bytes");
      return std::nullopt;
    }
    upload_size = bytes->size();
    try {
      const std::string name = fmt::format("upload #{}", id);
      return decoder_ ? decoder_->decode(std::move(*bytes), name)
                      : decode_input(std::move(*bytes), name, predictor_.window());
    } catch (const core::DataError& e) {
      core::log::info("serve: #{} refused: {}", id, e.what());
      send_error(res, 422, e.what());
      return std::nullopt;
    }
  }

  // The models' answer, or the 503 (queue full, or waited too long) answered.
  std::optional<Prediction> wait_for_model(PreparedInput prepared, httplib::Response& res, int64_t id) {
    std::optional<Batcher::Ticket> ticket = batcher_.submit(std::move(prepared));
    if (!ticket) {
      core::log::warn("serve: #{} refused: {} requests already waiting", id, options_.queue);
      res.set_header("Retry-After", "1");
      send_error(res, 503, fmt::format("busy: {} requests are waiting for the model; retry later", options_.queue));
      return std::nullopt;
    }
    if (ticket->result.wait_for(std::chrono::duration<double>(options_.timeout_s)) != std::future_status::ready) {
      ticket->abandon();
      core::log::warn("serve: #{} timed out after {} s waiting for the model", id, options_.timeout_s);
      res.set_header("Retry-After", "5");
      send_error(res, 503, fmt::format("timed out after {} s waiting for the model; retry later", options_.timeout_s));
      return std::nullopt;
    }
    return ticket->result.get();
  }

  static json summary_of(const Prediction& p, int64_t id) {
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
                {"height", p.input.pixels.rows}};
  }

  const ServeOptions& options_;
  const Predictor predictor_;
  const json description_;
  Batcher batcher_;
  History history_;
  std::unique_ptr<UploadDecoder> decoder_;
  std::atomic<int64_t> request_count_{0};
  const Clock::time_point started_;
};

// The API's routes (the pages in web_assets() come on top).
struct Route {
  const char* method;  // GET | POST
  const char* pattern;  // cpp-httplib's path pattern
  const char* shown;    // how an error message names it
  void (Service::*handle)(const httplib::Request&, httplib::Response&);
};

const Route kRoutes[] = {
    {"GET", "/health", "/health", &Service::health},
    {"GET", "/v1/model", "/v1/model", &Service::model},
    {"POST", "/v1/predict", "/v1/predict", &Service::predict},
    {"GET", "/v1/results", "/v1/results", &Service::results},
    {"GET", R"(/v1/results/(\d{1,15})/overlay\.png)", "/v1/results/ID/overlay.png", &Service::result_overlay},
};

std::string known_routes() {
  std::vector<std::string> names;
  for (const Route& r : kRoutes) names.push_back(fmt::format("{} {}", r.method, r.shown));
  return fmt::format("{}", fmt::join(names, ", "));
}

void add_routes(HttpServer& server, Service& service) {
  for (const WebAsset& asset : web_assets())
    server.Get(asset.route, [&asset](const httplib::Request&, httplib::Response& res) {
      res.set_content(asset.body.data(), asset.body.size(), asset.content_type);
    });
  for (const Route& route : kRoutes) {
    auto handler = [&service, handle = route.handle](const httplib::Request& req, httplib::Response& res) {
      (service.*handle)(req, res);
    };
    if (std::string_view(route.method) == "POST")
      server.Post(route.pattern, handler);
    else
      server.Get(route.pattern, handler);
  }
}

// Threads, limits and timeouts of the HTTP server.
void configure(HttpServer& server, const ServeOptions& options) {
  const int threads = options.http_threads;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  server.set_payload_max_length(static_cast<size_t>(options.max_upload_mb * 1024 * 1024));
  server.set_read_timeout(30);
  server.set_write_timeout(30);
  server.set_default_headers({{"X-Content-Type-Options", "nosniff"}, {"Cache-Control", "no-store"}});
  server.set_logger([](const httplib::Request& req, const httplib::Response& res) {
    if (req.path == "/health") return;
    core::log::debug("serve: {} {} -> {}", req.method, req.path, res.status);
  });
}

// The token guards the API; the pages and /health hold nothing and stay open.
void require_token(HttpServer& server, const ServeOptions& options) {
  server.set_pre_routing_handler([&options](const httplib::Request& req, httplib::Response& res) {
    if (options.token.empty() || req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    const std::string header = req.get_header_value("Authorization");
    const std::string_view prefix = "Bearer ";
    if (header.rfind(prefix, 0) == 0 && same_secret(std::string_view(header).substr(prefix.size()), options.token))
      return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("WWW-Authenticate", "Bearer");
    send_error(res, 401, "missing or wrong bearer token; send the header Authorization: Bearer <token>");
    return httplib::Server::HandlerResponse::Handled;
  });
}

// Every error the server itself produces is JSON too.
void answer_errors_as_json(HttpServer& server, const ServeOptions& options) {
  server.set_error_handler([&options](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413)
      send_error(res, 413, fmt::format("the upload is larger than the {} MB allowed", options.max_upload_mb));
    else if (res.status == 404)
      send_error(res, 404, "no such resource; known: GET / (the page), GET /results, " + known_routes());
    else
      send_error(res, res.status, fmt::format("HTTP {}", res.status));
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
  ::signal(SIGPIPE, SIG_IGN);      // a decoder that died shows as a failed write, not a dead server
  Service service(options);
  HttpServer server;
  configure(server, options);
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
  SignalWatcher watcher(stop_signals, server);
  std::cout << fmt::format("serving on http://{}:{}", options.host, port) << std::endl;
  const Predictor& predictor = service.predictor();
  core::log::info("serve: {} model(s) on {}, batches of up to {} (waiting {} ms), queue {}, {} HTTP threads, {} "
                  "decoder process(es){}",
                  predictor.members().size(), predictor.device().str(), options.max_batch, options.max_wait_ms,
                  options.queue, options.http_threads, options.decoders,
                  options.token.empty() ? "" : ", bearer token required");
  server.listen_after_bind();
  watcher.stop();
  core::log::info("serve: stopped after {} request(s)", service.requests());
}

}  // namespace pneumo::infer
