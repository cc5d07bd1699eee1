// cuda/common.cuh: what every convkit CUDA file shares: the checked launch on convkit's stream, the
// device check that names the op, the device-side error flag, scratch memory, reductions.
//
// Every kernel is launched through convkit::launch(op, kernel, grid, block, args...), which runs it on
// convkit::stream() and turns a launch error into std::runtime_error naming the op (the same as
// `kernel<<<grid, block, 0, stream()>>>(args...); CONVKIT_LAUNCH_CHECK(op);`). Going through one
// function also lets the CPU emulator (cuda/emu) run the same kernels in tests without a GPU.
#pragma once

#include <cstdint>
#include <utility>

#include "convkit/cuda_check.h"

namespace convkit {

// ---- host side ---------------------------------------------------------------------------------------

// Throws std::runtime_error "<op>: no usable CUDA device (<driver's reason>)" when no device is
// usable; every *_cuda entry point calls it first. The answer is cached after the first call.
void cuda_require(const char* op);

// Error bits that kernels set on the device when an input is bad in a way only the device can see
// (labels out of range). The host reads them when results are read (to_numpy, item, synchronize) and
// raises RuntimeError naming the op; see cuda_raise_pending_errors in runtime.cu.
enum DeviceErrorBit : unsigned {
  kErrLabelsForward = 1u,   // softmax_cross_entropy_forward: a label outside [0, K)
  kErrLabelsBackward = 2u,  // softmax_cross_entropy_backward: a label outside [0, K)
};
unsigned* cuda_error_flags();  // device pointer to the flag word (one per process)

// Scratch device memory for one op, valid until the next call with the same slot; ordered on
// convkit's stream like every kernel, so ops that run one after another may reuse it.
void* cuda_workspace(std::size_t bytes, int slot = 0);

// Multiprocessors of the current device (cached): sizes split-K and reduction grids.
int cuda_sm_count();

template <class T> __host__ __device__ __forceinline__ T ceil_div(T a, T b) { return (a + b - 1) / b; }

template <class... KArgs, class... Args>
inline void launch(const char* op, void (*kernel)(KArgs...), dim3 grid, dim3 block, Args&&... args) {
#ifdef CONVKIT_CUDA_EMULATE
  emu::launch(grid, block, 0, [&] { kernel(args...); });
#else
  kernel<<<grid, block, 0, stream()>>>(std::forward<Args>(args)...);
#endif
  CONVKIT_LAUNCH_CHECK(op);
}

// ---- device side -------------------------------------------------------------------------------------

template <class T> __device__ __forceinline__ T dmin(T a, T b) { return b < a ? b : a; }
template <class T> __device__ __forceinline__ T dmax(T a, T b) { return a < b ? b : a; }

template <class T> __device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Max that propagates NaN (as numpy's max does).
template <class T> __device__ __forceinline__ T nan_max(T a, T b) { return (a != a || a > b) ? a : b; }

template <class T> __device__ __forceinline__ T warp_max(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Block-wide sum/max for blockDim.x a multiple of 32 and <= 1024; every thread gets the result.
// `scratch` is __shared__ T[32]. Fixed order, so the result is deterministic.
template <class T> __device__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : T(0);  // 0: the identity of the sum
  return warp_sum(v);
}

template <class T> __device__ T block_max(T v, T* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nw ? scratch[lane] : scratch[0];
  return warp_max(v);
}

// Grid-stride loop index helpers (64-bit: arrays may exceed 2^31 elements).
__device__ __forceinline__ int64_t global_thread() { return blockIdx.x * int64_t(blockDim.x) + threadIdx.x; }
__device__ __forceinline__ int64_t grid_threads() { return int64_t(gridDim.x) * blockDim.x; }

}  // namespace convkit
