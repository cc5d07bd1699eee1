// CUDA runtime glue: device discovery, memory, copies and convkit's stream. cudart is linked
// statically, so a machine without a driver still imports convkit; every call here reports the
// driver's reason instead of failing at load time.
#include <atomic>
#include <mutex>
#include <string>

#include "convkit/cuda_check.h"
#include "convkit/runtime.h"

namespace convkit {

bool cuda_compiled() { return true; }

int cuda_device_count(std::string* reason) {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    if (reason) *reason = str_cat(cudaGetErrorName(err), ": ", cudaGetErrorString(err));
    return 0;
  }
  if (n == 0 && reason) *reason = "no CUDA device found";
  return n;
}

std::string cuda_device_name(int device) {
  cudaDeviceProp prop;
  CONVKIT_CUDA_CALL("cuda_device_name", cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

void* cuda_malloc(std::size_t bytes) {
  void* p = nullptr;
  if (bytes == 0) bytes = 1;
  CONVKIT_CUDA_CALL("cuda_malloc", cudaMalloc(&p, bytes));
  return p;
}

void cuda_free(void* p) noexcept {
  if (p) cudaFree(p);
}

// Copies are ordered on convkit's stream; device-to-host waits for the stream (results are read).
void cuda_memcpy_h2d(void* dst, const void* src, std::size_t bytes) {
  CONVKIT_CUDA_CALL("to_device", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
  CONVKIT_CUDA_CALL("to_device", cudaStreamSynchronize(stream()));  // src is pageable host memory
}
void cuda_memcpy_d2h(void* dst, const void* src, std::size_t bytes) {
  CONVKIT_CUDA_CALL("to_numpy", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  CONVKIT_CUDA_CALL("to_numpy", cudaStreamSynchronize(stream()));
}
void cuda_memcpy_d2d(void* dst, const void* src, std::size_t bytes) {
  CONVKIT_CUDA_CALL("copy", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
}
void cuda_memset_zero(void* p, std::size_t bytes) {
  CONVKIT_CUDA_CALL("zeros", cudaMemsetAsync(p, 0, bytes, stream()));
}
void cuda_synchronize() { CONVKIT_CUDA_CALL("synchronize", cudaStreamSynchronize(stream())); }

namespace {
std::atomic<void*> g_user_stream{nullptr};
cudaStream_t own_stream() {
  static cudaStream_t s = [] {
    cudaStream_t st = nullptr;
    CONVKIT_CUDA_CALL("stream", cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    return st;
  }();
  return s;
}
}  // namespace

void* cuda_current_stream() {
  void* s = g_user_stream.load();
  return s ? s : static_cast<void*>(own_stream());
}
void set_cuda_stream(void* s) { g_user_stream.store(s); }

}  // namespace convkit
