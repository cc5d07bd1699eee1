// convkit/cuda_check.h: launch and call checks for CUDA code (include only from .cu files).
// Every CUDA error becomes std::runtime_error naming the op, which pybind11 raises as RuntimeError.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "convkit/runtime.h"
#include "convkit/tensor.h"

namespace convkit {

inline void cuda_check(cudaError_t err, const char* op, const char* what) {
  if (err != cudaSuccess) {
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear the sticky-free error so later calls work
      throw std::bad_alloc();
    }
    throw std::runtime_error(str_cat(op, ": CUDA error in ", what, ": ", cudaGetErrorName(err), " (",
                                     cudaGetErrorString(err), ")"));
  }
}

inline cudaStream_t stream() { return static_cast<cudaStream_t>(cuda_current_stream()); }

// 1-D grid over n elements, capped so huge arrays use grid-stride loops.
inline unsigned grid_for(int64_t n, int block) {
  int64_t g = (n + block - 1) / block;
  if (g > 65535LL * 32) g = 65535LL * 32;
  return static_cast<unsigned>(g < 1 ? 1 : g);
}

}  // namespace convkit

// After every kernel launch: CONVKIT_LAUNCH_CHECK("relu_forward");
#define CONVKIT_LAUNCH_CHECK(OPNAME) ::convkit::cuda_check(cudaGetLastError(), OPNAME, "kernel launch")
#define CONVKIT_CUDA_CALL(OPNAME, CALL) ::convkit::cuda_check((CALL), OPNAME, #CALL)
