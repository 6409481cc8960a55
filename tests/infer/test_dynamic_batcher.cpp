// The dynamic batcher behind pneumo serve, with a stand-in model whose timing the test holds.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "pneumo/infer/dynamic_batcher.h"

using pneumo::infer::BatcherOptions;
using Batcher = pneumo::infer::DynamicBatcher<int, int>;
using namespace std::chrono_literals;

namespace {

// A model that doubles its inputs, records each batch, and holds every batch until opened.
struct HeldModel {
  std::mutex mutex;
  std::condition_variable changed;
  bool open = false;
  int running = 0;  // batches inside process()
  std::vector<std::vector<int>> batches;

  std::vector<int> process(std::vector<int> inputs) {
    std::unique_lock<std::mutex> lock(mutex);
    batches.push_back(inputs);
    ++running;
    changed.notify_all();
    changed.wait(lock, [this] { return open; });
    --running;
    std::vector<int> out;
    for (int x : inputs) out.push_back(2 * x);
    return out;
  }
  void wait_running() {
    std::unique_lock<std::mutex> lock(mutex);
    changed.wait(lock, [this] { return running > 0; });
  }
  void release() {
    std::lock_guard<std::mutex> lock(mutex);
    open = true;
    changed.notify_all();
  }
};

BatcherOptions options(size_t capacity, size_t max_batch, std::chrono::microseconds wait) {
  BatcherOptions o;
  o.capacity = capacity;
  o.max_batch = max_batch;
  o.max_wait = wait;
  return o;
}

}  // namespace

TEST_CASE("the batcher gathers waiting requests into batches and answers each in order") {
  HeldModel model;
  Batcher batcher([&](std::vector<int> x) { return model.process(std::move(x)); }, options(16, 4, 1000us));
  std::vector<Batcher::Ticket> tickets;
  tickets.push_back(*batcher.submit(0));
  model.wait_running();  // the first batch holds request 0 alone; the rest queue behind it
  for (int i = 1; i <= 9; ++i) tickets.push_back(*batcher.submit(i));
  CHECK(batcher.waiting() == 9);
  model.release();
  for (int i = 0; i <= 9; ++i) CHECK(tickets[static_cast<size_t>(i)].result.get() == 2 * i);
  std::lock_guard<std::mutex> lock(model.mutex);
  REQUIRE(model.batches.size() == 4);
  CHECK(model.batches[0] == std::vector<int>{0});
  CHECK(model.batches[1] == std::vector<int>{1, 2, 3, 4});
  CHECK(model.batches[2] == std::vector<int>{5, 6, 7, 8});
  CHECK(model.batches[3] == std::vector<int>{9});
  CHECK(batcher.batches() == 4);
  CHECK(batcher.processed() == 10);
}

TEST_CASE("a full queue refuses at once, and requests given up are dropped before the model") {
  HeldModel model;
  Batcher batcher([&](std::vector<int> x) { return model.process(std::move(x)); }, options(2, 8, 0us));
  Batcher::Ticket first = *batcher.submit(1);
  model.wait_running();
  Batcher::Ticket second = *batcher.submit(2);
  Batcher::Ticket third = *batcher.submit(3);
  CHECK_FALSE(batcher.submit(4).has_value());  // two already wait
  third.abandon();
  model.release();
  CHECK(first.result.get() == 2);
  CHECK(second.result.get() == 4);
  CHECK_THROWS_WITH(third.result.get(), Catch::Contains("abandoned"));
  std::lock_guard<std::mutex> lock(model.mutex);
  REQUIRE(model.batches.size() == 2);
  CHECK(model.batches[1] == std::vector<int>{2});
}

TEST_CASE("a failing batch fails each of its requests with the model's error") {
  std::atomic<int> calls{0};
  Batcher failing(
      [&](std::vector<int> x) -> std::vector<int> {
        if (++calls == 1) throw std::runtime_error("out of memory");
        return std::vector<int>(x.size() + 1, 0);  // one result too many
      },
      options(4, 4, 0us));
  CHECK_THROWS_WITH(failing.submit(1)->result.get(), "out of memory");
  CHECK_THROWS_WITH(failing.submit(1)->result.get(), Catch::Contains("2 results for 1 requests"));
  CHECK_THROWS_AS(Batcher([](std::vector<int> x) { return x; }, options(0, 1, 0us)), std::invalid_argument);
}

TEST_CASE("requests still queued when the batcher stops fail instead of hanging") {
  HeldModel model;
  std::optional<Batcher::Ticket> running, queued;
  std::vector<Batcher::Ticket> late;
  std::thread releaser;
  {
    Batcher batcher([&](std::vector<int> x) { return model.process(std::move(x)); }, options(1000, 1, 0us));
    running = batcher.submit(1);
    model.wait_running();
    queued = batcher.submit(2);
    // Opens the model only once the batcher refuses work, i.e. once its destructor has begun.
    releaser = std::thread([&] {
      while (std::optional<Batcher::Ticket> t = batcher.submit(0)) {
        late.push_back(std::move(*t));
        std::this_thread::sleep_for(1ms);
      }
      model.release();
    });
  }
  releaser.join();
  CHECK(running->result.get() == 2);  // the batch in progress finishes
  REQUIRE(queued.has_value());
  CHECK_THROWS_WITH(queued->result.get(), Catch::Contains("shutting down"));
  for (auto& t : late) CHECK_THROWS_WITH(t.result.get(), Catch::Contains("shutting down"));
}
