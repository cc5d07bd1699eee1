// cuda/emu/cuda_runtime.h: a CPU emulation of the part of CUDA that convkit's kernels use, so the
// kernels' indexing, tiling, bounds and barriers are tested on machines without a GPU.
//
// Test-only. Built with -DCONVKIT_CUDA=EMULATE (CMakeLists.txt): every cuda/*.cu file is compiled as
// C++ with this directory first on the include path, so `#include <cuda_runtime.h>` lands here.
//
// How a launch runs: blocks run one after another on the calling host thread; inside a block every
// CUDA thread is a fiber (ucontext) with its own stack. A fiber runs until it reaches __syncthreads()
// (or a warp-level operation: shuffle, ballot, __syncwarp) and then yields; a barrier is released when
// every live thread of the block (of the warp) waits at it. __syncthreads() in divergent code, or a
// warp operation some live lanes never reach, is reported as a deadlock (cudaErrorLaunchFailure).
// Shared memory is a function-local `static` (one copy, reused block after block). Device memory is
// host memory, so AddressSanitizer sees out-of-bounds accesses and UBSan sees misaligned vector loads.
//
// What this cannot find: races that need real concurrency (fibers switch only at barriers),
// performance problems, and behaviour of the hardware memory model. compute-sanitizer on a GPU
// (benchmarks/gpu_check.sh) covers the first.
#pragma once

#include <ucontext.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define CONVKIT_EMU_ASAN 1
#endif

#define CONVKIT_CUDA_EMULATE 1

// ---- language keywords ------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __shared__ static
#define __constant__ static const
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __CUDA_ARCH__emulated 1

// ---- vector types (alignment as on the device, so misuse shows under UBSan) ------------------------
struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) double2 { double x, y; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }

// ---- runtime types ------------------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
};
using cudaError = cudaError_t;
struct CUstream_st;
using cudaStream_t = CUstream_st*;
struct CUevent_st;
using cudaEvent_t = CUevent_st*;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
constexpr unsigned cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDisableTiming = 2;
constexpr unsigned cudaHostAllocDefault = 0;
#define cudaStreamLegacy ((cudaStream_t)0x1)
#define cudaStreamPerThread ((cudaStream_t)0x2)

struct cudaDeviceProp {
  char name[256];
  int multiProcessorCount;
  std::size_t sharedMemPerBlock;
  std::size_t sharedMemPerBlockOptin;
  int maxThreadsPerBlock;
  int major, minor;
  int l2CacheSize;
};

namespace emu {

struct State {
  cudaError_t last_error = cudaSuccess;
  std::string last_message;
};
inline thread_local State g_state;

inline cudaError_t set_error(cudaError_t e, const std::string& msg = "") {
  g_state.last_error = e;
  g_state.last_message = msg;
  return e;
}

// ---- the fiber scheduler ------------------------------------------------------------------------------
enum FiberState : int { kRunnable = 0, kBlockBarrier = 1, kWarpBarrier = 2, kDone = 3 };

struct Fiber {
  ucontext_t ctx;
  int state = kRunnable;
  unsigned tx = 0, ty = 0, tz = 0;
  int linear = 0;
};

struct Scheduler {
  ucontext_t main_ctx;
  std::vector<Fiber> fibers;
  std::vector<char*> stacks;
  Fiber* cur = nullptr;
  const std::function<void()>* body = nullptr;
  // per-warp exchange buffers for shuffles and votes: 32 lanes x 16 bytes
  std::vector<unsigned char> exchange;
#ifdef CONVKIT_EMU_ASAN
  void* fake_stack = nullptr;
  const void* main_stack_bottom = nullptr;
  std::size_t main_stack_size = 0;
#endif
  static constexpr std::size_t kStack = 256 * 1024;

  ~Scheduler() {
    for (char* s : stacks) std::free(s);
  }
};
inline thread_local Scheduler* g_sched = nullptr;

inline Scheduler& sched() {
  if (!g_sched) g_sched = new Scheduler();  // one per host thread, kept for the process lifetime
  return *g_sched;
}

}  // namespace emu

// The built-in variables: per host thread; the scheduler sets them before it resumes a fiber.
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
constexpr int warpSize = 32;

namespace emu {

inline void switch_to_main(Fiber* f) {
  Scheduler& s = sched();
#ifdef CONVKIT_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, s.main_stack_bottom, s.main_stack_size);
  swapcontext(&f->ctx, &s.main_ctx);
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
  swapcontext(&f->ctx, &s.main_ctx);
#endif
}

inline void fiber_entry() {
  Scheduler& s = sched();
#ifdef CONVKIT_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &s.main_stack_bottom, &s.main_stack_size);
#endif
  (*s.body)();
  s.cur->state = kDone;
  switch_to_main(s.cur);  // never resumed
}

inline void yield(int state) {
  Scheduler& s = sched();
  Fiber* f = s.cur;
  f->state = state;
  switch_to_main(f);
}

inline int lane_id() { return sched().cur->linear % 32; }
inline unsigned char* warp_slots() {
  Scheduler& s = sched();
  return s.exchange.data() + (s.cur->linear / 32) * 32 * 16;
}

// Runs body() once per thread of every block. Returns an error instead of throwing.
inline cudaError_t launch(dim3 grid, dim3 block, std::size_t dyn_smem, const std::function<void()>& body) {
  const long long nthreads = 1LL * block.x * block.y * block.z;
  if (nthreads < 1 || nthreads > 1024 || block.z > 64 || grid.x < 1 || grid.y < 1 || grid.z < 1 ||
      grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535 || dyn_smem > 227 * 1024)
    return set_error(cudaErrorInvalidConfiguration,
                     "grid (" + std::to_string(grid.x) + ", " + std::to_string(grid.y) + ", " + std::to_string(grid.z) +
                         ") block (" + std::to_string(block.x) + ", " + std::to_string(block.y) + ", " +
                         std::to_string(block.z) + ")");
  Scheduler& s = sched();
  const int n = static_cast<int>(nthreads);
  if (static_cast<int>(s.fibers.size()) < n) s.fibers.resize(n);
  while (static_cast<int>(s.stacks.size()) < n) {
    char* st = static_cast<char*>(std::malloc(Scheduler::kStack));
    if (!st) return set_error(cudaErrorMemoryAllocation, "fiber stack");
    s.stacks.push_back(st);
  }
  s.exchange.assign(((n + 31) / 32) * 32 * 16, 0);
  s.body = &body;
  gridDim = grid;
  blockDim = block;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = uint3{bx, by, bz};
        for (int i = 0; i < n; ++i) {
          Fiber& f = s.fibers[i];
          f.state = kRunnable;
          f.linear = i;
          f.tx = i % block.x;
          f.ty = (i / block.x) % block.y;
          f.tz = i / (block.x * block.y);
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = s.stacks[i];
          f.ctx.uc_stack.ss_size = Scheduler::kStack;
          f.ctx.uc_link = nullptr;
          makecontext(&f.ctx, fiber_entry, 0);
        }
        for (;;) {
          for (int i = 0; i < n; ++i) {
            Fiber& f = s.fibers[i];
            if (f.state != kRunnable) continue;
            s.cur = &f;
            threadIdx = uint3{f.tx, f.ty, f.tz};
#ifdef CONVKIT_EMU_ASAN
            void* fake = nullptr;
            __sanitizer_start_switch_fiber(&fake, s.stacks[i], Scheduler::kStack);
            swapcontext(&s.main_ctx, &f.ctx);
            __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
            swapcontext(&s.main_ctx, &f.ctx);
#endif
          }
          // Every fiber is now done or waiting. Release warp barriers first, then the block barrier.
          bool released = false, all_done = true;
          for (int w = 0; w * 32 < n; ++w) {
            int lo = w * 32, hi = lo + 32 < n ? lo + 32 : n;
            bool any = false, all = true;
            for (int i = lo; i < hi; ++i) {
              int st = s.fibers[i].state;
              if (st == kDone) continue;
              all_done = false;
              if (st == kWarpBarrier) any = true;
              else all = false;
            }
            if (any && all) {
              for (int i = lo; i < hi; ++i)
                if (s.fibers[i].state == kWarpBarrier) s.fibers[i].state = kRunnable;
              released = true;
            }
          }
          if (all_done) break;
          if (released) continue;
          bool all_block = true;
          for (int i = 0; i < n; ++i) {
            int st = s.fibers[i].state;
            if (st != kDone && st != kBlockBarrier) all_block = false;
          }
          if (all_block) {
            for (int i = 0; i < n; ++i)
              if (s.fibers[i].state == kBlockBarrier) s.fibers[i].state = kRunnable;
            continue;
          }
          return set_error(cudaErrorLaunchFailure,
                           "emulator: deadlock (a barrier or warp operation not reached by every live thread) in block (" +
                               std::to_string(bx) + ", " + std::to_string(by) + ", " + std::to_string(bz) + ")");
        }
      }
  return cudaSuccess;
}

template <class T>
T exchange(T v, int src_lane, bool keep_own) {
  static_assert(sizeof(T) <= 16, "shuffle of a type wider than 16 bytes");
  unsigned char* slots = warp_slots();
  int lane = lane_id();
  std::memcpy(slots + lane * 16, &v, sizeof(T));
  yield(kWarpBarrier);
  T out = v;
  if (!keep_own) std::memcpy(&out, slots + src_lane * 16, sizeof(T));
  yield(kWarpBarrier);
  return out;
}

}  // namespace emu

// ---- device built-ins ---------------------------------------------------------------------------------
inline void __syncthreads() { emu::yield(emu::kBlockBarrier); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::yield(emu::kWarpBarrier); }
inline void __threadfence() {}
inline void __threadfence_block() {}

template <class T> T __shfl_sync(unsigned, T v, int src, int width = 32) {
  int lane = emu::lane_id();
  return emu::exchange(v, (lane / width) * width + (src % width), false);
}
template <class T> T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  int lane = emu::lane_id();
  int src = lane ^ mask;
  return emu::exchange(v, src, (src / width) != (lane / width));
}
template <class T> T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  int lane = emu::lane_id();
  int src = lane + static_cast<int>(delta);
  return emu::exchange(v, src, (src / width) != (lane / width) || src >= 32);
}
template <class T> T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
  int lane = emu::lane_id();
  int src = lane - static_cast<int>(delta);
  return emu::exchange(v, src < 0 ? 0 : src, src < 0 || (src / width) != (lane / width));
}
inline unsigned __ballot_sync(unsigned, int p) {
  unsigned char* slots = emu::warp_slots();
  int lane = emu::lane_id();
  int v = p != 0;
  std::memcpy(slots + lane * 16, &v, sizeof v);
  emu::yield(emu::kWarpBarrier);
  unsigned r = 0;
  int n = static_cast<int>(blockDim.x * blockDim.y * blockDim.z);
  int base = (emu::sched().cur->linear / 32) * 32;
  for (int i = 0; i < 32 && base + i < n; ++i) {
    int b;
    std::memcpy(&b, slots + i * 16, sizeof b);
    if (emu::sched().fibers[base + i].state != emu::kDone && b) r |= 1u << i;
  }
  emu::yield(emu::kWarpBarrier);
  return r;
}
inline int __any_sync(unsigned m, int p) { return __ballot_sync(m, p) != 0; }

template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }
template <class T> inline T atomicOr(T* p, T v) { T old = *p; *p = old | v; return old; }
template <class T> inline T atomicMax(T* p, T v) { T old = *p; if (v > old) *p = v; return old; }
template <class T> inline T atomicCAS(T* p, T cmp, T v) { T old = *p; if (old == cmp) *p = v; return old; }
inline int __float_as_int(float f) { int i; std::memcpy(&i, &f, 4); return i; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline long long clock64() { return 0; }

// ---- runtime API ----------------------------------------------------------------------------------------
inline cudaError_t cudaGetLastError() {
  cudaError_t e = emu::g_state.last_error;
  emu::g_state.last_error = cudaSuccess;
  return e;
}
inline cudaError_t cudaPeekAtLastError() { return emu::g_state.last_error; }
inline const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}
inline const char* cudaGetErrorString(cudaError_t e) {
  if (e != cudaSuccess && !emu::g_state.last_message.empty()) return emu::g_state.last_message.c_str();
  return cudaGetErrorName(e);
}
inline cudaError_t cudaGetDeviceCount(int* n) { *n = 1; return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
inline cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (d != 0) return emu::set_error(cudaErrorInvalidValue);
  std::memset(p, 0, sizeof *p);
  std::strcpy(p->name, "convkit CPU emulator");
  p->multiProcessorCount = 4;
  p->sharedMemPerBlock = 48 * 1024;
  p->sharedMemPerBlockOptin = 227 * 1024;
  p->maxThreadsPerBlock = 1024;
  p->major = 9;
  p->minor = 0;
  p->l2CacheSize = 1 << 20;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* v, int, int) { *v = 4; return cudaSuccess; }
inline cudaError_t cudaMalloc(void** p, std::size_t bytes) {
  // 256-byte alignment, as cudaMalloc guarantees; the bytes are poisoned so unwritten outputs show up
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  if (!*p) return emu::set_error(cudaErrorMemoryAllocation);
  std::memset(*p, 0xFF, bytes);  // NaN for floats, -1 for integers
  return cudaSuccess;
}
template <class T> inline cudaError_t cudaMalloc(T** p, std::size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
inline cudaError_t cudaFree(void* p) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaMallocHost(void** p, std::size_t bytes) { return cudaMalloc(p, bytes); }
inline cudaError_t cudaHostAlloc(void** p, std::size_t bytes, unsigned) { return cudaMalloc(p, bytes); }
inline cudaError_t cudaFreeHost(void* p) { std::free(p); return cudaSuccess; }
inline cudaError_t cudaMemcpy(void* d, const void* s, std::size_t n, cudaMemcpyKind) {
  if (n) std::memmove(d, s, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, std::size_t n, cudaMemcpyKind k, cudaStream_t = nullptr) {
  return cudaMemcpy(d, s, n, k);
}
inline cudaError_t cudaMemsetAsync(void* p, int v, std::size_t n, cudaStream_t = nullptr) {
  if (n) std::memset(p, v, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemset(void* p, int v, std::size_t n) { return cudaMemsetAsync(p, v, n); }
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = reinterpret_cast<cudaStream_t>(new int(0));
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = reinterpret_cast<cudaEvent_t>(new int(0));
  return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t = nullptr) { return cudaSuccess; }
inline cudaError_t cudaEventDestroy(cudaEvent_t e) { delete reinterpret_cast<int*>(e); return cudaSuccess; }
inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned = 0) { return cudaSuccess; }
