#include "cuda_graphs.h"

#include <map>
#include <mutex>
#include <tuple>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/torch.h>

#include "pneumo/core/error.h"

#ifdef PNEUMO_WITH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace pneumo::infer {

#ifdef PNEUMO_WITH_CUDA

namespace {

// What a captured graph is specific to: the static input's shape, type, device and layout.
struct GraphKey {
  std::vector<int64_t> sizes;
  at::ScalarType dtype;
  c10::DeviceIndex device;
  bool channels_last;

  bool operator<(const GraphKey& o) const {
    return std::tie(sizes, dtype, device, channels_last) < std::tie(o.sizes, o.dtype, o.device, o.channels_last);
  }
};

struct CapturedGraph {
  at::cuda::CUDAGraph graph;
  at::Tensor input;                  // the graph reads this tensor's memory
  std::vector<at::Tensor> outputs;   // and writes these
};

// Warm-up passes before a capture (as torch.cuda.make_graphed_callables): cuDNN's algorithm
// choice and lazy initialisations must not happen inside the capture.
constexpr int kWarmupPasses = 3;

// Warms `forward` up on a side stream, then captures it on `input` into `pool`.
std::unique_ptr<CapturedGraph> capture(const CudaGraphCache::Forward& forward, const at::Tensor& input,
                                       c10::cuda::MempoolId_t pool) {
  auto captured = std::make_unique<CapturedGraph>();
  captured->input = at::empty_like(input);
  captured->input.copy_(input);
  // Captures run on a stream of their own, after everything queued on the current one.
  c10::cuda::getCurrentCUDAStream(input.device().index()).synchronize();
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, input.device().index());
  const c10::cuda::CUDAStreamGuard on_side(side);
  for (int i = 0; i < kWarmupPasses; ++i) forward(captured->input);
  side.synchronize();
  captured->graph.capture_begin(pool);
  try {
    captured->outputs = forward(captured->input);
  } catch (...) {
    try {
      captured->graph.capture_end();
    } catch (...) {  // the capture is invalid either way; the first error says why
    }
    throw;
  }
  captured->graph.capture_end();
  side.synchronize();
  return captured;
}

}  // namespace

struct CudaGraphCache::State {
  Forward forward;
  std::mutex mutex;
  std::map<GraphKey, std::unique_ptr<CapturedGraph>> graphs;
  // One memory pool for all of this cache's graphs: they replay one at a time (the mutex), and
  // every output is copied out before the next replay, so their intermediates may share memory.
  c10::cuda::MempoolId_t pool = at::cuda::graph_pool_handle();
};

CudaGraphCache::CudaGraphCache(Forward forward) : state_(std::make_unique<State>()) {
  state_->forward = std::move(forward);
}

CudaGraphCache::~CudaGraphCache() = default;

std::vector<at::Tensor> CudaGraphCache::operator()(const at::Tensor& input) {
  if (!input.is_cuda()) throw core::DeviceError("a CUDA graph replays on CUDA tensors, not on " + input.device().str());
  const c10::cuda::CUDAGuard on_device(input.device());
  const GraphKey key{input.sizes().vec(), input.scalar_type(), input.device().index(),
                     input.suggest_memory_format() == at::MemoryFormat::ChannelsLast};
  std::lock_guard<std::mutex> lock(state_->mutex);
  auto found = state_->graphs.find(key);
  if (found == state_->graphs.end()) {
    try {
      found = state_->graphs.emplace(key, capture(state_->forward, input, state_->pool)).first;
    } catch (const core::Error&) {
      throw;
    } catch (const std::exception& e) {
      throw core::DeviceError(fmt::format("capturing a CUDA graph for input [{}] failed (run without CUDA graphs): {}",
                                          fmt::join(key.sizes, ", "), e.what()));
    }
  }
  CapturedGraph& g = *found->second;
  g.input.copy_(input);
  g.graph.replay();
  std::vector<at::Tensor> outputs;
  outputs.reserve(g.outputs.size());
  for (const at::Tensor& t : g.outputs) outputs.push_back(t.defined() ? t.clone() : t);
  return outputs;
}

#else  // a LibTorch without CUDA

struct CudaGraphCache::State {};

CudaGraphCache::CudaGraphCache(Forward) {
  throw core::DeviceError("CUDA graphs need a CUDA build of LibTorch; this one has no CUDA");
}

CudaGraphCache::~CudaGraphCache() = default;

std::vector<at::Tensor> CudaGraphCache::operator()(const at::Tensor&) {  // never constructed here
  throw core::DeviceError("CUDA graphs need a CUDA build of LibTorch; this one has no CUDA");
}

#endif

}  // namespace pneumo::infer
