// Benchmark: DICOM decode + resize, pneumo against the Python way, in one run.
//
//   build/bin/bench_decode [--size 512] [--seconds 5] [FOLDER_OR_FILES...]
//
// Default data: the real SIIM samples in ../shared/data/siim/dicom. Prints images/s for
// pneumo with 1 and 2 worker threads (libjpeg-turbo path), pneumo with GDCM's own codec on one
// thread, pneumo reading the result back from its preprocessing cache (what later epochs do),
// pneumo decoding in isolated worker processes as its commands do by default (2 threads, 2
// pneumo-decoder processes: dicom_isolation.h; and what one such process costs to start), and pydicom + OpenCV-Python on one process, with the
// ratios.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>

#include <unistd.h>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <opencv2/core/utility.hpp>
#include <opencv2/imgproc.hpp>

#include "bench_summary.h"
#include "pneumo/core/error.h"
#include "pneumo/core/memory.h"
#include "pneumo/data/dicom.h"
#include "pneumo/data/dicom_isolation.h"
#include "pneumo/data/preprocess.h"
#include "pneumo/data/worker_pool.h"

namespace fs = std::filesystem;
using namespace pneumo;

namespace {

// Runs `step` over the files on `threads` threads for `seconds`; returns images/s.
double rate(const std::vector<std::string>& files, double seconds, int threads,
            const std::function<void(const std::string&)>& step) {
  std::atomic<long> done{0};
  std::atomic<bool> stop{false};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (size_t i = t; !stop; i += threads) {
        step(files[i % files.size()]);
        ++done;
      }
    });
  }
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < seconds)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  stop = true;
  for (auto& w : workers) w.join();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return static_cast<double>(done) / elapsed;
}

double pneumo_rate(const std::vector<std::string>& files, int size, double seconds, int threads,
                   bool fast_jpeg) {
  data::DicomReadOptions options;  // as the preprocessing cache's fill (data::Preprocessor) reads
  options.fast_jpeg = fast_jpeg;
  options.resize_to = size;
  options.resize_interpolation = cv::INTER_AREA;
  return rate(files, seconds, threads, [&](const std::string& file) {
    const data::DicomImage image = data::read_dicom(file, options);
    if (image.pixels.rows != size) throw core::Error("the decoded image was not resized");
  });
}

// Epoch 2 onwards of training: the decoded, resized image read back from the on-disk cache.
double cached_rate(const std::vector<std::string>& files, int size, double seconds) {
  data::PreprocessOptions options;
  options.size = size;
  options.cache_dir = fs::temp_directory_path() / fmt::format("pneumo-bench-cache-{}", ::getpid());
  const data::Preprocessor preprocessor(options);
  for (const auto& file : files) preprocessor.prepare(file);  // warm
  const double r = rate(files, seconds, 1, [&](const std::string& file) { preprocessor.prepare(file); });
  fs::remove_all(options.cache_dir);
  return r;
}

// Seconds from starting one decoder process to its first answer (a request it refuses at once):
// what each process of the pool costs once per command, the median of 5.
double decoder_startup_seconds(const std::string& program) {
  std::vector<double> times;
  for (int i = 0; i < 5; ++i) {
    const auto start = std::chrono::steady_clock::now();
    data::WorkerPool pool(program, {}, 1, 60, "the DICOM decoder");
    pool.call("?", "startup");
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

double python_rate(const std::vector<std::string>& files, int size, double seconds) {
  std::string command = fmt::format("{} {}/tools/bench/decode_python.py {} {}",
                                    PNEUMO_PYTHON, PNEUMO_SOURCE_DIR, size, seconds);
  for (const auto& f : files) command += " '" + f + "'";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) throw core::Error("cannot start the Python reference");
  char line[64] = {};
  const bool got = std::fgets(line, sizeof line, pipe) != nullptr;
  const int rc = ::pclose(pipe);
  if (!got || rc != 0) throw core::Error("the Python reference failed: " + command);
  return std::stod(line);
}

}  // namespace

int main(int argc, char** argv) {
  pneumo::core::keep_freed_memory();  // as the pneumo program runs
  CLI::App app{"DICOM decode + resize: pneumo against pydicom + OpenCV-Python"};
  int size = 512;
  double seconds = 5;
  std::vector<std::string> inputs{PNEUMO_SOURCE_DIR "/../shared/data/siim/dicom"};
  app.add_option("--size", size, "resize to SIZE x SIZE")->capture_default_str();
  app.add_option("--seconds", seconds, "measuring time per configuration")->capture_default_str();
  app.add_option("inputs", inputs, "DICOM files or folders");
  std::string summary_path;
  app.add_option("--summary", summary_path, "append the figures as JSON lines to this file (tools/bench.sh)");
  std::string program = data::decoder_program();
  app.add_option("--decoder", program, "the decoder program (pneumo-decoder) the isolated row starts")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  cv::setNumThreads(1);  // each worker is one core; OpenCV must not add threads of its own

  std::vector<std::string> files;
  for (const auto& input : inputs) {
    if (fs::is_directory(input)) {
      for (const auto& e : fs::recursive_directory_iterator(input))
        if (e.path().extension() == ".dcm") files.push_back(e.path().string());
    } else if (fs::exists(input)) {
      files.push_back(input);
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    fmt::print(stderr, "no DICOM files found in {}\n", fmt::join(inputs, ", "));
    return 1;
  }
  try {
    fmt::print("decode + resize to {0}x{0}, {1} files, {2} s per row, {3} hardware threads\n", size,
               files.size(), seconds, std::thread::hardware_concurrency());
    const double python = python_rate(files, size, seconds);
    const double gdcm = pneumo_rate(files, size, seconds, 1, false);
    const double one = pneumo_rate(files, size, seconds, 1, true);
    const double two = pneumo_rate(files, size, seconds, 2, true);
    const double cached = cached_rate(files, size, seconds);
    data::DicomIsolation isolation;
    isolation.program = program;
    isolation.workers = 2;
    data::set_dicom_isolation(isolation);
    // Timed as a command gets it: the processes start on the first file, inside the row.
    const double isolated = pneumo_rate(files, size, seconds, 2, true);
    data::set_dicom_isolation({});
    const double startup = decoder_startup_seconds(program);
    fmt::print("{:<44} {:>10} {:>10}\n", "", "images/s", "vs Python");
    fmt::print("{:<44} {:>10.1f} {:>9.2f}x\n", "pydicom + OpenCV-Python (1 process)", python, 1.0);
    fmt::print("{:<44} {:>10.1f} {:>9.2f}x\n", "pneumo, GDCM codec, 1 thread", gdcm, gdcm / python);
    fmt::print("{:<44} {:>10.1f} {:>9.2f}x\n", "pneumo, libjpeg-turbo, 1 thread", one, one / python);
    fmt::print("{:<44} {:>10.1f} {:>9.2f}x\n", "pneumo, libjpeg-turbo, 2 threads", two, two / python);
    fmt::print("{:<44} {:>10.1f} {:>9.2f}x\n", "pneumo, preprocessing cache hit, 1 thread", cached,
               cached / python);
    fmt::print("{:<44} {:>10.1f} {:>9.2f}x\n", "pneumo, 2 isolated decoder processes", isolated, isolated / python);
    fmt::print("thread scaling 1 -> 2: {:.2f}x; isolation costs {:.1f}% against 2 threads in process\n", two / one,
               100.0 * (1.0 - isolated / two));
    fmt::print("a decoder process starts and answers its first request in {:.0f} ms (median of 5; once per command)\n",
               1000 * startup);
    const bench::Summary summary(summary_path);
    const std::string what = fmt::format("DICOM decode + resize to {}, {} file(s)", size, files.size());
    summary.add("data", what + ", 1 thread", "images/s", python, one, true);
    summary.add("data", what + ", 2 threads", "images/s", python, two, true);
    summary.add("data", what + ", preprocessing cache hit", "images/s", python, cached, true);
    summary.add("data", what + ", 2 isolated decoder processes", "images/s", python, isolated, true);
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
