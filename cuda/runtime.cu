// CUDA runtime glue: device discovery, memory, copies, convkit's stream, scratch memory and the
// device-side error flag. cudart is linked statically, so a machine without a driver still imports
// convkit; every call here reports the driver's reason instead of failing at load time.
//
// Memory: DeviceArray storage comes from a caching allocator. cudaMalloc is slow and cudaFree waits
// for the whole device, so a freed block goes to a free list keyed by its rounded size and the next
// allocation of that size reuses it. That is safe because every convkit kernel and copy runs in
// order on one stream: work queued after the reuse runs after the work that used the block before.
// A block freed while another stream was current is only reused after that stream has finished.
// When cudaMalloc fails, the cache is released and the allocation retried once.
#include <atomic>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common.cuh"
#include "convkit/runtime.h"
#include "device_array.h"

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

void cuda_require(const char* op) {
  static const std::string reason = [] {
    std::string r;
    int n = cuda_device_count(&r);
    return n > 0 ? std::string() : (r.empty() ? std::string("no CUDA device found") : r);
  }();
  if (!reason.empty())
    throw std::runtime_error(str_cat(op, ": no usable CUDA device (", reason,
                                     "); keep the arrays on the CPU (numpy) or run where a GPU is available"));
}

int cuda_sm_count() {
  static const int n = [] {
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return (cudaGetLastError(), 1);
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, dev) != cudaSuccess) return (cudaGetLastError(), 1);
    sms = prop.multiProcessorCount;
    return sms > 0 ? sms : 1;
  }();
  return n;
}

// ---- streams --------------------------------------------------------------------------------------------

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

void cuda_stream_wait(void* consumer) {
  cudaStream_t ours = stream();
  cudaStream_t theirs = static_cast<cudaStream_t>(consumer);
  if (theirs == ours) return;
  cudaEvent_t ev;
  CONVKIT_CUDA_CALL("stream_wait", cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  cudaError_t e1 = cudaEventRecord(ev, ours);
  cudaError_t e2 = e1 == cudaSuccess ? cudaStreamWaitEvent(theirs, ev, 0) : e1;
  cudaEventDestroy(ev);  // released once the wait has happened
  CONVKIT_CUDA_CALL("stream_wait", e2);
}

// ---- the caching allocator ------------------------------------------------------------------------------

namespace {
struct FreeBlock {
  void* ptr;
  void* stream;  // the stream that was current when it was freed
};
struct Cache {
  std::mutex mu;
  std::unordered_map<std::size_t, std::vector<FreeBlock>> free_lists;
  std::unordered_map<void*, std::size_t> sizes;  // every live or cached block
  std::size_t cached_bytes = 0;
};
Cache& cache() {
  static Cache* c = new Cache();  // never destroyed: cudart may be gone at exit
  return *c;
}
std::size_t round_size(std::size_t bytes) {
  if (bytes == 0) bytes = 1;
  const std::size_t small = 1 << 20, gran_small = 512, gran_large = 2 << 20;
  return bytes <= small ? (bytes + gran_small - 1) / gran_small * gran_small
                        : (bytes + gran_large - 1) / gran_large * gran_large;
}
void release_cache_locked(Cache& c) {
  cudaDeviceSynchronize();
  for (auto& kv : c.free_lists)
    for (FreeBlock& b : kv.second) {
      cudaFree(b.ptr);
      c.sizes.erase(b.ptr);
    }
  c.free_lists.clear();
  c.cached_bytes = 0;
  cudaGetLastError();
}
}  // namespace

void* cuda_malloc(std::size_t bytes) {
  const std::size_t rounded = round_size(bytes);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.free_lists.find(rounded);
  if (it != c.free_lists.end() && !it->second.empty()) {
    FreeBlock b = it->second.back();
    it->second.pop_back();
    c.cached_bytes -= rounded;
    if (b.stream != cuda_current_stream())
      CONVKIT_CUDA_CALL("cuda_malloc", cudaStreamSynchronize(static_cast<cudaStream_t>(b.stream)));
    return b.ptr;
  }
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, rounded);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    release_cache_locked(c);
    err = cudaMalloc(&p, rounded);
  }
  CONVKIT_CUDA_CALL("cuda_malloc", err);  // out of memory -> std::bad_alloc -> MemoryError
  c.sizes[p] = rounded;
  return p;
}

void cuda_free(void* p) noexcept {
  if (!p) return;
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.sizes.find(p);
  if (it == c.sizes.end()) return;  // not ours: nothing to do
  try {
    c.free_lists[it->second].push_back(FreeBlock{p, cuda_current_stream()});
    c.cached_bytes += it->second;
  } catch (...) {
    cudaFree(p);  // no room to cache it (host out of memory): give it back
    c.sizes.erase(p);
  }
}

void cuda_empty_cache() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  release_cache_locked(c);
}

std::size_t cuda_cached_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.cached_bytes;
}

// ---- scratch memory ---------------------------------------------------------------------------------------

namespace {
struct Workspace {
  void* ptr = nullptr;
  std::size_t bytes = 0;
};
constexpr int kWorkspaceSlots = 4;
}  // namespace

void* cuda_workspace(std::size_t bytes, int slot) {
  CONVKIT_CHECK(slot >= 0 && slot < kWorkspaceSlots, "cuda_workspace: bad slot ", slot);
  static std::mutex mu;
  static Workspace ws[kWorkspaceSlots];
  std::lock_guard<std::mutex> lock(mu);
  Workspace& w = ws[slot];
  if (w.bytes < bytes) {
    if (w.ptr) cuda_free(w.ptr);  // back to the cache; stream order keeps earlier users safe
    w.ptr = nullptr;
    w.bytes = 0;
    w.ptr = cuda_malloc(bytes);
    w.bytes = bytes;
  }
  return w.ptr;
}

// ---- the device-side error flag -----------------------------------------------------------------------------

namespace {
std::atomic<bool> g_flags_armed{false};
struct Flags {
  unsigned* device = nullptr;
  unsigned* host = nullptr;  // pinned, so the copy back is cheap
};
Flags& flags() {
  static Flags f = [] {
    Flags r;
    CONVKIT_CUDA_CALL("error_flags", cudaMalloc(&r.device, sizeof(unsigned)));
    CONVKIT_CUDA_CALL("error_flags", cudaMemsetAsync(r.device, 0, sizeof(unsigned), stream()));
    void* h = nullptr;
    CONVKIT_CUDA_CALL("error_flags", cudaMallocHost(&h, sizeof(unsigned)));
    r.host = static_cast<unsigned*>(h);
    *r.host = 0;
    return r;
  }();
  return f;
}

// After the stream has been synchronized: raise for any bit a kernel set, then clear the flag.
void raise_flags_after_sync() {
  Flags& f = flags();
  unsigned bits = *f.host;
  if (!bits) return;
  *f.host = 0;
  CONVKIT_CUDA_CALL("error_flags", cudaMemsetAsync(f.device, 0, sizeof(unsigned), stream()));
  g_flags_armed.store(false);
  std::string what;
  if (bits & kErrLabelsForward) what += "softmax_cross_entropy_forward: a label on the device lies outside [0, K)";
  if (bits & kErrLabelsBackward)
    what += std::string(what.empty() ? "" : "; ") +
            "softmax_cross_entropy_backward: a label on the device lies outside [0, K)";
  throw std::invalid_argument(str_cat(what, "; the affected rows were set to NaN (the error was detected on the "
                                            "device and is reported when results are read)"));
}

// Queue the flag's copy to the host; the caller synchronizes the stream, then calls raise_flags_after_sync.
bool queue_flag_read() {
  if (!g_flags_armed.load()) return false;
  Flags& f = flags();
  CONVKIT_CUDA_CALL("error_flags", cudaMemcpyAsync(f.host, f.device, sizeof(unsigned), cudaMemcpyDeviceToHost,
                                                   stream()));
  return true;
}
}  // namespace

unsigned* cuda_error_flags() {
  g_flags_armed.store(true);  // a kernel that may set a bit is about to be queued
  return flags().device;
}

void cuda_raise_pending_errors() {
  if (!queue_flag_read()) return;
  CONVKIT_CUDA_CALL("synchronize", cudaStreamSynchronize(stream()));
  raise_flags_after_sync();
}

// ---- copies ---------------------------------------------------------------------------------------------------
// Ordered on convkit's stream; host-to-device and device-to-host wait for the stream (the host memory
// is pageable and the results are about to be read). Device-to-host also checks the error flag.

void cuda_memcpy_h2d(void* dst, const void* src, std::size_t bytes) {
  CONVKIT_CUDA_CALL("to_device", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
  CONVKIT_CUDA_CALL("to_device", cudaStreamSynchronize(stream()));
}
void cuda_memcpy_d2h(void* dst, const void* src, std::size_t bytes) {
  CONVKIT_CUDA_CALL("to_numpy", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  bool check = queue_flag_read();
  CONVKIT_CUDA_CALL("to_numpy", cudaStreamSynchronize(stream()));
  if (check) raise_flags_after_sync();
}
void cuda_memcpy_d2d(void* dst, const void* src, std::size_t bytes) {
  CONVKIT_CUDA_CALL("copy", cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
}
void cuda_memset_zero(void* p, std::size_t bytes) {
  CONVKIT_CUDA_CALL("zeros", cudaMemsetAsync(p, 0, bytes, stream()));
}
void cuda_synchronize() {
  bool check = queue_flag_read();
  CONVKIT_CUDA_CALL("synchronize", cudaStreamSynchronize(stream()));
  if (check) raise_flags_after_sync();
}

}  // namespace convkit
