// CUDA graphs for ddpm-lab's training step: libtorch's at::cuda::CUDAGraph and
// the stream calls it needs, which tch does not expose.
//
// Built with DDPM_CUDA_GRAPHS when PyTorch's CUDA library and the CUDA runtime
// headers were found at build time; otherwise every call fails with a message
// saying so. Every function catches all C++ exceptions and keeps the message for
// ddpm_graph_last_error().
#include <exception>
#include <string>

static thread_local std::string last_error;

extern "C" const char* ddpm_graph_last_error() { return last_error.c_str(); }

#ifdef DDPM_CUDA_GRAPHS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

// Run `f`, keeping the message of any exception. 0, or -1 if it threw.
template <typename F>
static int guarded(F f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
  } catch (...) {
    last_error = "unknown C++ exception";
  }
  return -1;
}

extern "C" {

int ddpm_graph_supported() { return 1; }

// Make `device` current and give this thread a fresh side stream on it (graphs
// cannot be captured on the default stream; warm-up, capture and replay then
// all run on it). Waits for the device first, so nothing queued on the default
// stream races ahead. 0 or -1.
int ddpm_cuda_use_side_stream(int device) {
  return guarded([&] {
    auto d = static_cast<c10::DeviceIndex>(device);
    c10::cuda::set_device(d);
    c10::cuda::device_synchronize();
    c10::cuda::setCurrentCUDAStream(c10::cuda::getStreamFromPool(false, d));
  });
}

// Wait for the device, then make the default stream current again. 0 or -1.
int ddpm_cuda_use_default_stream(int device) {
  return guarded([&] {
    c10::cuda::device_synchronize();
    c10::cuda::setCurrentCUDAStream(
        c10::cuda::getDefaultCUDAStream(static_cast<c10::DeviceIndex>(device)));
  });
}

// Start capturing this thread's current stream into a new graph, as PyTorch's
// torch.cuda.graph does: wait for the device, return cached blocks, then
// capture_begin with a private memory pool. The capture mode is thread-local:
// calls that cannot be captured fail on this thread, while other threads (the
// data loader's, which pins host memory) go on. The graph, or null.
void* ddpm_graph_begin() {
  at::cuda::CUDAGraph* g = nullptr;
  int rc = guarded([&] {
    c10::cuda::device_synchronize();
    c10::cuda::CUDACachingAllocator::emptyCache();
    g = new at::cuda::CUDAGraph();
    g->capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
  });
  if (rc != 0) {
    delete g;
    return nullptr;
  }
  return g;
}

// End the capture (instantiates the graph). 0 or -1.
int ddpm_graph_end(void* graph) {
  return guarded([&] { static_cast<at::cuda::CUDAGraph*>(graph)->capture_end(); });
}

// End a capture whose body failed. capture_end stops the stream's capture even
// when it then throws (an invalidated capture); in that case allocations still
// go to the graph's pool, so send them back to the usual one.
void ddpm_graph_abort(void* graph) {
  auto* g = static_cast<at::cuda::CUDAGraph*>(graph);
  std::string kept = last_error;
  if (guarded([&] { g->capture_end(); }) != 0) {
    guarded([&] {
      c10::cuda::CUDACachingAllocator::endAllocateToPool(c10::cuda::current_device(), g->pool());
    });
  }
  last_error = kept;
}

// Launch the graph on this thread's current stream. 0 or -1.
int ddpm_graph_replay(void* graph) {
  return guarded([&] { static_cast<at::cuda::CUDAGraph*>(graph)->replay(); });
}

void ddpm_graph_free(void* graph) {
  guarded([&] { delete static_cast<at::cuda::CUDAGraph*>(graph); });
}
}

#else

static const char* no_graphs =
    "this build of ddpm-lab has no CUDA graph support (PyTorch's CUDA library or the CUDA "
    "runtime headers were not found when it was built)";

extern "C" {
int ddpm_graph_supported() { return 0; }
int ddpm_cuda_use_side_stream(int) {
  last_error = no_graphs;
  return -1;
}
int ddpm_cuda_use_default_stream(int) { return 0; }
void* ddpm_graph_begin() {
  last_error = no_graphs;
  return nullptr;
}
int ddpm_graph_end(void*) {
  last_error = no_graphs;
  return -1;
}
void ddpm_graph_abort(void*) {}
int ddpm_graph_replay(void*) {
  last_error = no_graphs;
  return -1;
}
void ddpm_graph_free(void*) {}
}

#endif
