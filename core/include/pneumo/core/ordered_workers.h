// Builds items 0..count-1 on worker threads, ahead of a consumer that takes them in order.
//
// At most `prefetch` items are built or being built ahead of the one the consumer waits for.
// An item whose build threw is rethrown by next() at its turn, and nothing after it is
// delivered. With no workers, next() builds each item on the calling thread. The data loader
// and inference both read their inputs this way.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

namespace pneumo::core {

template <class T>
class OrderedWorkers {
 public:
  using Build = std::function<T(int64_t)>;

  // `build` must be thread-safe when workers > 0.
  OrderedWorkers(int64_t count, int workers, int prefetch, Build build)
      : count_(count), prefetch_(prefetch < 1 ? 1 : prefetch), build_(std::move(build)) {
    const int64_t threads = std::min<int64_t>(workers, count_);
    for (int64_t t = 0; t < threads; ++t) threads_.emplace_back([this] { work(); });
  }

  ~OrderedWorkers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

  OrderedWorkers(const OrderedWorkers&) = delete;
  OrderedWorkers& operator=(const OrderedWorkers&) = delete;

  int64_t count() const { return count_; }

  // The next item in order, or nullopt after the last (or after an error was rethrown).
  std::optional<T> next() {
    if (threads_.empty()) {
      if (next_to_deliver_ >= count_) return std::nullopt;
      try {
        return build_(next_to_deliver_++);
      } catch (...) {
        next_to_deliver_ = count_;  // ends at the first error, as with workers
        throw;
      }
    }
    std::unique_lock<std::mutex> lock(mutex_);
    if (next_to_deliver_ >= count_) return std::nullopt;
    const int64_t item = next_to_deliver_;
    changed_.wait(lock, [&] { return ready_.count(item) != 0 || failed_.count(item) != 0; });
    if (auto failed = failed_.find(item); failed != failed_.end()) {
      const std::exception_ptr error = failed->second;
      next_to_deliver_ = count_;  // workers stop claiming
      stopping_ = true;
      lock.unlock();
      changed_.notify_all();
      std::rethrow_exception(error);
    }
    auto ready = ready_.find(item);
    T out = std::move(ready->second);
    ready_.erase(ready);
    ++next_to_deliver_;
    lock.unlock();
    changed_.notify_all();
    return out;
  }

 private:
  void work() {
    for (;;) {
      int64_t item = 0;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [this] {
          return stopping_ || next_to_claim_ >= count_ || next_to_claim_ < next_to_deliver_ + prefetch_;
        });
        if (stopping_ || next_to_claim_ >= count_) return;
        item = next_to_claim_++;
      }
      std::optional<T> built;
      std::exception_ptr error;
      try {
        built = build_(item);
      } catch (...) {
        error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (error)
          failed_.emplace(item, error);
        else
          ready_.emplace(item, std::move(*built));
      }
      changed_.notify_all();
    }
  }

  int64_t count_;
  int64_t prefetch_;
  Build build_;
  std::mutex mutex_;
  std::condition_variable changed_;
  int64_t next_to_claim_ = 0;
  int64_t next_to_deliver_ = 0;
  bool stopping_ = false;
  std::map<int64_t, T> ready_;
  std::map<int64_t, std::exception_ptr> failed_;
  std::vector<std::thread> threads_;  // last: started after everything above exists
};

}  // namespace pneumo::core
