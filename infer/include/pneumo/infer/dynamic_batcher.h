// Requests from many clients gathered into batches for one model: a bounded queue and one
// thread that takes up to `max_batch` waiting requests, and once the first has arrived waits
// at most `max_wait` for more. A full queue refuses new requests at once (the server answers
// 503), and a request whose client gave up is dropped before it reaches the model.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace pneumo::infer {

struct BatcherOptions {
  size_t capacity = 64;  // requests waiting for the model, at most
  size_t max_batch = 4;
  std::chrono::microseconds max_wait{2000};
};

template <class Request, class Result>
class DynamicBatcher {
 public:
  // Runs one batch; must return one result per request, in order. An exception fails every
  // request of the batch with it.
  using Process = std::function<std::vector<Result>(std::vector<Request>)>;

  // A submitted request: its result to come, and a way to say nobody waits for it any more.
  struct Ticket {
    std::future<Result> result;
    std::shared_ptr<std::atomic<bool>> abandoned;
    void abandon() const { abandoned->store(true); }
  };

  DynamicBatcher(Process process, BatcherOptions options)
      : process_(std::move(process)), options_(options) {
    if (options_.capacity == 0 || options_.max_batch == 0)
      throw std::invalid_argument("DynamicBatcher: capacity and max_batch must be at least 1");
    worker_ = std::thread([this] { run(); });
  }

  // Stops after the batch in progress; requests still queued fail with "shutting down".
  ~DynamicBatcher() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    worker_.join();
    for (Job& job : queue_)
      job.promise.set_exception(std::make_exception_ptr(std::runtime_error("the server is shutting down")));
  }

  DynamicBatcher(const DynamicBatcher&) = delete;
  DynamicBatcher& operator=(const DynamicBatcher&) = delete;

  // nullopt when `capacity` requests are already waiting.
  std::optional<Ticket> submit(Request request) {
    Job job{std::move(request), {}, std::make_shared<std::atomic<bool>>(false)};
    Ticket ticket{job.promise.get_future(), job.abandoned};
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_ || queue_.size() >= options_.capacity) return std::nullopt;
      queue_.push_back(std::move(job));
    }
    wake_.notify_all();
    return ticket;
  }

  size_t waiting() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return queue_.size();
  }
  // Batches run so far and the requests they held (for /health and the tests).
  size_t batches() const { return batches_.load(); }
  size_t processed() const { return processed_.load(); }
  const BatcherOptions& options() const { return options_; }

 private:
  struct Job {
    Request request;
    std::promise<Result> promise;
    std::shared_ptr<std::atomic<bool>> abandoned;
  };

  void run() {
    for (;;) {
      std::vector<Job> batch;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        const auto deadline = std::chrono::steady_clock::now() + options_.max_wait;
        while (queue_.size() < options_.max_batch && !stopping_)
          if (wake_.wait_until(lock, deadline) == std::cv_status::timeout) break;
        if (stopping_) return;
        while (!queue_.empty() && batch.size() < options_.max_batch) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      std::vector<Job> live;
      for (Job& job : batch) {
        if (job.abandoned->load())
          job.promise.set_exception(std::make_exception_ptr(std::runtime_error("abandoned by its client")));
        else
          live.push_back(std::move(job));
      }
      if (live.empty()) continue;
      std::vector<Request> requests;
      requests.reserve(live.size());
      for (Job& job : live) requests.push_back(std::move(job.request));
      std::vector<Result> results;
      std::exception_ptr error;
      try {
        results = process_(std::move(requests));
        if (results.size() != live.size())
          throw std::logic_error("DynamicBatcher: the model returned " + std::to_string(results.size()) +
                                 " results for " + std::to_string(live.size()) + " requests");
      } catch (...) {
        error = std::current_exception();
      }
      // Counted before the answers go out, so that a client holding its answer sees its batch.
      batches_.fetch_add(1);
      processed_.fetch_add(live.size());
      for (size_t i = 0; i < live.size(); ++i) {
        if (error)
          live[i].promise.set_exception(error);
        else
          live[i].promise.set_value(std::move(results[i]));
      }
    }
  }

  Process process_;
  BatcherOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::atomic<size_t> batches_{0}, processed_{0};
  std::thread worker_;
};

}  // namespace pneumo::infer
