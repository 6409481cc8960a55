// Data-parallel pieces in one process: the epoch split across processes, the torchrun
// environment, and the c10d process group with its gradient averaging (two ranks on threads,
// Gloo over loopback).
#include <catch2/catch.hpp>

#include <cstdlib>
#include <future>
#include <numeric>
#include <optional>
#include <thread>


#include <torch/torch.h>

#include "pneumo/core/error.h"
#include "pneumo/train/distributed.h"
#include "test_support.h"

using namespace pneumo;
using Catch::Matchers::Contains;

namespace {

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 100);
  return v;
}

// Sets environment variables for one scope, restoring the previous values.
class Environment {
 public:
  explicit Environment(const std::vector<std::pair<std::string, std::string>>& values) {
    for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) {
      const char* old = std::getenv(name);
      saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
      ::unsetenv(name);
    }
    for (const auto& [name, value] : values) ::setenv(name.c_str(), value.c_str(), 1);
  }
  ~Environment() {
    for (const auto& [name, value] : saved_) {
      if (value)
        ::setenv(name.c_str(), value->c_str(), 1);
      else
        ::unsetenv(name.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

}  // namespace

TEST_CASE("an epoch splits into per-process shares that together are the single-process batches") {
  const std::vector<int64_t> order = iota(18);
  for (int world : {1, 2, 3}) {
    std::vector<train::EpochShard> shards;
    for (int r = 0; r < world; ++r) shards.push_back(train::shard_epoch(order, 6, true, r, world));
    std::vector<int64_t> seen;
    std::vector<size_t> offset(static_cast<size_t>(world), 0);
    for (size_t step = 0; step < 3; ++step)
      for (int r = 0; r < world; ++r) {
        const train::EpochShard& s = shards[static_cast<size_t>(r)];
        REQUIRE(s.batch_sizes.size() == 3);
        CHECK(s.batch_sizes[step] == 6 / world);
        CHECK(s.loss_weights[step] == 1.0);
        for (int64_t k = 0; k < s.batch_sizes[step]; ++k) seen.push_back(s.order[offset[static_cast<size_t>(r)]++]);
      }
    CHECK(seen == order);  // step by step, rank by rank: the single-process order
  }
  // A last batch of 2 for 2 processes: one each, weighted as in a batch of 2.
  const train::EpochShard a = train::shard_epoch(iota(18), 8, false, 0, 2), b = train::shard_epoch(iota(18), 8, false, 1, 2);
  CHECK(a.order == std::vector<int64_t>{100, 101, 102, 103, 108, 109, 110, 111, 116});
  CHECK(b.order == std::vector<int64_t>{104, 105, 106, 107, 112, 113, 114, 115, 117});
  CHECK(a.loss_weights == std::vector<double>{1, 1, 1});
  // A last batch of 1: rank 1 takes it with weight 2, rank 0 repeats it with weight 0.
  const train::EpochShard c = train::shard_epoch(iota(17), 8, false, 0, 2), d = train::shard_epoch(iota(17), 8, false, 1, 2);
  CHECK(c.order.back() == 116);
  CHECK(c.real_samples.back() == 0);
  CHECK(c.loss_weights.back() == 0.0);
  CHECK(d.order.back() == 116);
  CHECK(d.real_samples.back() == 1);
  CHECK(d.loss_weights.back() == 2.0);
  CHECK(c.batch_sizes.size() == d.batch_sizes.size());  // every process takes the same number of steps
  CHECK(train::shard_epoch(iota(17), 8, true, 1, 2).batch_sizes.size() == 2);
  CHECK_THROWS_AS(train::shard_epoch(iota(4), 2, false, 2, 2), core::UsageError);
  CHECK(train::shard_evenly(iota(5), 0, 2) == std::vector<int64_t>{100, 101});
  CHECK(train::shard_evenly(iota(5), 1, 2) == std::vector<int64_t>{102, 103, 104});
  CHECK(train::shard_evenly(iota(1), 0, 2).empty());
}

TEST_CASE("the torchrun environment gives the process's place and refuses malformed values") {
  {
    Environment none({});
    const train::ProcessPlacement p = train::placement_from_environment();
    CHECK(p.world_size == 1);
    CHECK_FALSE(p.distributed());
  }
  {
    Environment env({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                     {"MASTER_ADDR", "10.0.0.5"}, {"MASTER_PORT", "29511"}});
    const train::ProcessPlacement p = train::placement_from_environment();
    CHECK(p.rank == 3);
    CHECK(p.world_size == 4);
    CHECK(p.local_rank == 1);
    CHECK(p.local_world_size == 2);
    CHECK(p.master_addr == "10.0.0.5");
    CHECK(p.master_port == 29511);
  }
  const auto refused = [](const std::vector<std::pair<std::string, std::string>>& values, const std::string& text) {
    Environment env(values);
    CHECK_THROWS_WITH(train::placement_from_environment(), Contains(text));
  };
  refused({{"RANK", "0"}}, "WORLD_SIZE");
  refused({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}}, "RANK=2");
  refused({{"RANK", "0"}, {"WORLD_SIZE", "two"}}, "WORLD_SIZE=two");
  refused({{"RANK", "0"}, {"WORLD_SIZE", "2"}}, "MASTER_ADDR");
  refused({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "70000"}},
          "MASTER_PORT=70000");
  refused({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"LOCAL_RANK", "1"}}, "LOCAL_RANK=1");
}

TEST_CASE("two ranks over Gloo sum, broadcast, gather and average gradients in buckets") {
  const int port = pneumo::testing::free_tcp_port();
  // Each rank: a small network on its own data; the averaged gradients must equal the
  // gradients of the mean loss over both ranks' data.
  const auto data = [](int rank) { return torch::arange(12, torch::kFloat32).reshape({3, 4}) * (rank + 1) / 10.0; };
  const auto network = [] {  // the same initial weights each time (built on this thread: one generator)
    torch::manual_seed(5);
    return torch::nn::Sequential(torch::nn::Linear(4, 8), torch::nn::Tanh(), torch::nn::Linear(8, 1));
  };
  std::vector<torch::nn::Sequential> nets{network(), network()};
  auto rank_main = [&](int rank) {
    train::ProcessPlacement place;
    place.rank = rank;
    place.world_size = 2;
    place.local_rank = rank;
    place.local_world_size = 2;
    place.master_port = port;
    auto group = train::ProcessGroup::connect(place, torch::kCPU, std::chrono::seconds(30));
    std::map<std::string, std::vector<double>> out;
    at::Tensor x = torch::full({3}, static_cast<double>(rank + 1));
    group->sum(x, "test sum");
    out["sum"] = std::vector<double>(x.data_ptr<float>(), x.data_ptr<float>() + 3);
    const std::string text = group->broadcast(rank == 0 ? std::string("runs/a b") : std::string(), "test broadcast");
    out["broadcast"] = {text == "runs/a b" ? 1.0 : 0.0};
    const at::Tensor gathered = group->gather(torch::ones({rank + 1}, torch::kFloat64) * rank, "test gather");
    out["gather"] = std::vector<double>(gathered.data_ptr<double>(), gathered.data_ptr<double>() + gathered.numel());
    out["ordered"] = group->sum_in_rank_order({0.1 * (rank + 1), 1.0}, "test ordered sum");
    // Nothing on any rank (a class table's validation has no binary scores): an empty result,
    // where Gloo itself would divide by zero.
    out["empty"] = {static_cast<double>(group->gather(torch::empty({0}, torch::kFloat32), "test empty gather").numel())};

    torch::nn::Sequential net = nets[static_cast<size_t>(rank)];
    std::vector<at::Tensor> params = net->parameters();
    train::GradientAverager averager(*group, params, /*bucket_bytes=*/64);  // several buckets
    out["buckets"] = {static_cast<double>(averager.buckets())};
    // Two accumulated passes, the second one synchronised.
    net->forward(data(rank)).sum().backward();
    averager.arm();
    net->forward(data(rank) * 2).sum().backward();
    averager.finish();
    for (const auto& p : params) {
      const at::Tensor g = p.grad().reshape({-1}).to(torch::kFloat64);
      out["grad"].insert(out["grad"].end(), g.data_ptr<double>(), g.data_ptr<double>() + g.numel());
    }
    group->barrier("test end");
    return out;
  };
  auto first = std::async(std::launch::async, rank_main, 0);
  auto second = std::async(std::launch::async, rank_main, 1);
  const auto a = first.get(), b = second.get();
  CHECK(a.at("sum") == std::vector<double>{3, 3, 3});
  CHECK(b.at("broadcast") == std::vector<double>{1});
  CHECK(a.at("gather") == std::vector<double>{0, 1, 1});
  CHECK(b.at("gather") == a.at("gather"));
  CHECK(a.at("empty") == std::vector<double>{0});
  CHECK(a.at("ordered") == b.at("ordered"));
  CHECK(a.at("ordered")[1] == 2.0);
  CHECK(a.at("buckets")[0] > 1);
  CHECK(a.at("grad") == b.at("grad"));  // the same on both ranks

  torch::nn::Sequential net = network();
  for (int rank : {0, 1}) {
    net->forward(data(rank)).sum().backward();
    net->forward(data(rank) * 2).sum().backward();
  }
  std::vector<double> expected;
  for (const auto& p : net->parameters()) {
    const at::Tensor g = (p.grad() / 2).reshape({-1}).to(torch::kFloat64);
    expected.insert(expected.end(), g.data_ptr<double>(), g.data_ptr<double>() + g.numel());
  }
  REQUIRE(expected.size() == a.at("grad").size());
  for (size_t i = 0; i < expected.size(); ++i) CHECK(a.at("grad")[i] == Approx(expected[i]).epsilon(1e-6).margin(1e-7));
}

TEST_CASE("a process group refuses CUDA without NCCL and says when the others never arrive") {
  train::ProcessPlacement place;
  place.rank = 0;
  place.world_size = 2;
  place.master_port = pneumo::testing::free_tcp_port();
  if (!torch::cuda::is_available())  // CUDA tensors need NCCL, and a GPU
    CHECK_THROWS_AS(train::ProcessGroup::connect(place, c10::Device(c10::kCUDA, 0), std::chrono::milliseconds(1500)),
                    core::Error);
  // Nobody else arrives: the meeting times out with a message naming the address.
  CHECK_THROWS_WITH(train::ProcessGroup::connect(place, torch::kCPU, std::chrono::milliseconds(1500)),
                    Contains("rank 0 of 2") && Contains("did not answer within 1.5 s"));
}
