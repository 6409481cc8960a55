// Benchmark (not a test): `pneumo serve` under load from Debian's wrk on loopback, against the
// Python way of serving the same model (tools/bench/serve_python.py: a threaded HTTP server
// running pydicom + OpenCV + PyTorch eager per request) with the same random weights, in one
// run. Each level of concurrency runs for a fixed time; the table gives throughput, p50/p99
// latency and errors (non-2xx answers, socket errors) for both, and the throughput ratio.
//
//   bench_serve [--size 256] [--native 1024] [--threads 2] [--seconds 10] [--connections 1,4,16,64]
//               [--max-batch 4]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <regex>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "bench_summary.h"
#include "benchmark_model.h"
#include "pneumo/core/file_io.h"
#include "pneumo/data/demo_set.h"

using namespace pneumo;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct Load {
  double requests_per_second = 0, p50_ms = 0, p99_ms = 0;
  long requests = 0, errors = 0;
};

std::string run(const std::string& command) {
  FILE* pipe = ::popen(command.c_str(), "r");
  std::string out;
  for (char buffer[4096]; pipe && std::fgets(buffer, sizeof buffer, pipe);) out += buffer;
  if (pipe) ::pclose(pipe);
  return out;
}

double milliseconds(const std::string& value, const std::string& unit) {
  const double v = std::stod(value);
  return unit == "us" ? v / 1000 : unit == "s" ? v * 1000 : unit == "m" ? v * 60000 : v;
}

// Parses wrk --latency's report.
Load parse_wrk(const std::string& report) {
  Load load;
  std::smatch m;
  if (std::regex_search(report, m, std::regex(R"(Requests/sec:\s+([\d.]+))"))) load.requests_per_second = std::stod(m[1]);
  if (std::regex_search(report, m, std::regex(R"(\n\s+50%\s+([\d.]+)(us|ms|s|m))"))) load.p50_ms = milliseconds(m[1], m[2]);
  if (std::regex_search(report, m, std::regex(R"(\n\s+99%\s+([\d.]+)(us|ms|s|m))"))) load.p99_ms = milliseconds(m[1], m[2]);
  if (std::regex_search(report, m, std::regex(R"((\d+) requests in)"))) load.requests = std::stol(m[1]);
  if (std::regex_search(report, m, std::regex(R"(Non-2xx or 3xx responses:\s+(\d+))"))) load.errors += std::stol(m[1]);
  if (std::regex_search(report, m, std::regex(R"(Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+))")))
    load.errors += std::stol(m[1]) + std::stol(m[2]) + std::stol(m[3]) + std::stol(m[4]);
  return load;
}

// Starts a server process with its output in `log`; waits until GET /health answers.
pid_t start_server(const std::string& command, const fs::path& log, int port) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", fmt::format("exec {} > {} 2>&1", command, log.string()).c_str(), nullptr);
    ::_exit(127);
  }
  httplib::Client client("127.0.0.1", port);
  for (int i = 0; i < 1200; ++i) {
    if (const auto r = client.Get("/health"); r && r->status == 200) return pid;
    if (::waitpid(pid, nullptr, WNOHANG) == pid) break;  // it ended: say why below
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::kill(pid, SIGKILL);
  throw std::runtime_error("server did not start: " + command + "\n" + core::read_text_file(log));
}

// A loopback port nobody listens on now.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0)
    throw std::runtime_error("no free port on 127.0.0.1");
  ::close(fd);
  return ntohs(address.sin_port);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("pneumo serve under load (wrk) against a Python server of the same model");
  int size = 256, native = 1024, threads = 2, seconds = 10, max_batch = 4;
  std::vector<int> connections{1, 4, 16, 64};
  app.add_option("--size", size, "model input size")->check(CLI::Range(64, 2048));
  app.add_option("--native", native, "DICOM rows and columns")->check(CLI::Range(64, 2048));
  app.add_option("--threads", threads, "CPU threads for the models on both sides")->check(CLI::Range(1, 256));
  app.add_option("--seconds", seconds, "duration of each load level")->check(CLI::Range(1, 600));
  app.add_option("--connections", connections, "concurrent connections per level")->delimiter(',');
  app.add_option("--max-batch", max_batch, "pneumo serve --max-batch")->check(CLI::Range(1, 64));
  bool keep = false;
  std::string summary_path;
  app.add_option("--summary", summary_path, "append the figures as JSON lines to this file (tools/bench.sh)");
  app.add_flag("--keep", keep, "keep the temporary folder (model, DICOM, server logs) and print its path");
  CLI11_PARSE(app, argc, argv);
  if (run("command -v wrk").empty()) {
    fmt::print(stderr, "bench_serve needs Debian's wrk (tools/setup.sh --tests installs it)\n");
    return 1;
  }

  const fs::path dir = fs::temp_directory_path() / fmt::format("pneumo-bench-serve-{}", ::getpid());
  data::DemoSetOptions demo;
  demo.count = 1;
  demo.size = native;
  data::write_demo_set(dir / "set", demo);
  const fs::path dicom = fs::directory_iterator(dir / "set/dicom")->path();

  bench::write_benchmark_unet(dir, size);
  core::write_file_atomic(dir / "post.lua", fmt::format("wrk.method = \"POST\"\n"
                                                        "wrk.headers[\"Content-Type\"] = \"application/dicom\"\n"
                                                        "local f = assert(io.open(\"{}\", \"rb\"))\n"
                                                        "wrk.body = f:read(\"*all\")\nf:close()\n",
                                                        dicom.string()));

  const int our_port = free_port();  // the next is taken once this one is held
  const pid_t ours = start_server(
      fmt::format("env OMP_NUM_THREADS={} {}/bin/pneumo -q serve --model {} --port {} --classifier-threshold 0 "
                  "--max-batch {} --queue 256",
                  threads, PNEUMO_BINARY_DIR, (dir / "model.ckpt").string(), our_port, max_batch),
      dir / "pneumo.log", our_port);
  const int their_port = free_port();
  const pid_t theirs = start_server(fmt::format("{} {}/tools/bench/serve_python.py {} {} {} {}",
                                                PNEUMO_PYTHON, PNEUMO_SOURCE_DIR, (dir / "model.pth").string(), size, threads, their_port),
                                    dir / "python.log", their_port);

  // Both answer the same mask for the same image.
  const std::string body = core::read_text_file(dicom);
  httplib::Client our_client("127.0.0.1", our_port), their_client("127.0.0.1", their_port);
  our_client.set_read_timeout(120);
  their_client.set_read_timeout(120);
  const json a = json::parse(our_client.Post("/v1/predict", body, "application/dicom")->body);
  const json b = json::parse(their_client.Post("/v1/predict", body, "application/dicom")->body);
  const bool same_mask = a["rle"] == b["rle"];

  fmt::print("pneumo serve vs Python (threaded http.server + pydicom + PyTorch eager), U-Net/ResNet34 at {} px,\n"
             "one {}x{} JPEG DICOM per request, answers with RLE and overlay PNG, {} model thread(s), {} s per level,\n"
             "pneumo batches up to {}; same mask from both: {}\n\n",
             size, native, native, threads, seconds, max_batch, same_mask ? "yes" : "NO");
  fmt::print("{:>11} | {:>8} {:>9} {:>9} {:>6} | {:>8} {:>9} {:>9} {:>6} | {:>6}\n", "connections", "pneumo/s", "p50 ms",
             "p99 ms", "errors", "Python/s", "p50 ms", "p99 ms", "errors", "ratio");
  bool clean = same_mask;
  const bench::Summary summary(summary_path);
  for (int c : connections) {
    Load load[2];
    for (int side = 0; side < 2; ++side) {
      const int port = side == 0 ? our_port : their_port;
      const std::string report =
          run(fmt::format("wrk -t{} -c{} -d{}s --timeout 120s --latency -s {} http://127.0.0.1:{}/v1/predict 2>&1",
                          std::min(c, 2), c, seconds, (dir / "post.lua").string(), port));
      load[side] = parse_wrk(report);
      if (load[side].requests == 0 || load[side].errors > 0)
        fmt::print(stderr, "{} at {} connections, wrk said:\n{}\n", side == 0 ? "pneumo" : "Python", c, report);
    }
    clean = clean && load[0].errors == 0;
    const auto side = [](const Load& l) {
      if (l.requests == 0) return fmt::format("{:>8} {:>9} {:>9} {:>6}", "none", "-", "-", l.errors);
      return fmt::format("{:>8.2f} {:>9.0f} {:>9.0f} {:>6}", l.requests_per_second, l.p50_ms, l.p99_ms, l.errors);
    };
    const std::string ratio = load[1].requests == 0 ? "-" : fmt::format("{:.2f}x", load[0].requests_per_second / load[1].requests_per_second);
    fmt::print("{:>11} | {} | {} | {:>6}\n", c, side(load[0]), side(load[1]), ratio);
    if (load[0].requests > 0 && load[1].requests > 0)
      summary.add("serving", fmt::format("pneumo serve, 1024² DICOM -> RLE + overlay, {} connection(s)", c), "requests/s",
                  load[1].requests_per_second, load[0].requests_per_second, true);
  }
  fmt::print("\n\"none\": no request finished within the level's {} s.\n", seconds);
  ::kill(ours, SIGTERM);
  ::kill(theirs, SIGTERM);
  std::error_code ec;
  if (keep)
    fmt::print("kept {}\n", dir.string());
  else
    fs::remove_all(dir, ec);
  return clean ? 0 : 1;
}
