// What `pneumo serve` exposes at GET /metrics, in Prometheus' text exposition format (0.0.4).
// Written by hand: Debian 12 has no C++ Prometheus client (prometheus-cpp is not packaged), and
// the format is a few lines of text. Thread-safe; every series is created on first use.
//
//   pneumo_requests_total{route, status}          counter
//   pneumo_stage_seconds{stage}                   histogram: queue, decode, model, postprocess
//   pneumo_request_seconds{route}                 histogram: the whole request
//   pneumo_batch_size                             histogram: images per model batch
//   pneumo_refused_inputs_total{reason}           counter: the input gate's reasons, "unreadable"
//   pneumo_model_load_seconds{model, version}     gauge
//   pneumo_model_ready{model, version}            gauge (1 ready)
//   pneumo_queue_depth, pneumo_decoder_restarts_total, pneumo_uptime_seconds
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace pneumo::infer {

class ServeMetrics {
 public:
  void count_request(const std::string& route, int status, double seconds);
  void observe_stage(const std::string& stage, double seconds);
  void observe_batch(size_t images);
  void count_refusal(const std::string& reason);
  void set_model(const std::string& model, const std::string& version, double load_seconds, bool ready);
  void forget_model(const std::string& model, const std::string& version);

  // The exposition, with the gauges read at scrape time.
  std::string exposition(int64_t queue_depth, int64_t decoder_restarts, double uptime_seconds) const;

 private:
  struct Histogram {
    std::vector<double> bounds;
    std::vector<int64_t> counts;  // per bound, not cumulative
    int64_t count = 0;
    double sum = 0;
    void observe(double value);
  };
  using Labels = std::vector<std::pair<std::string, std::string>>;

  mutable std::mutex mutex_;
  std::map<Labels, int64_t> requests_;
  std::map<Labels, Histogram> request_seconds_, stage_seconds_;
  Histogram batch_sizes_{{1, 2, 4, 8, 16, 32, 64}, {}};
  std::map<Labels, int64_t> refusals_;
  std::map<Labels, std::pair<double, bool>> models_;
};

// The route label of a request path: its pattern ("/v2/models/{name}/infer"), so that names
// and ids do not multiply the series; "other" for what matches no route.
std::string route_label(const std::string& path);

}  // namespace pneumo::infer
