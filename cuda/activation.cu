// relu and dropout on CUDA (formulas in csrc/ops/activation.h). One thread per element, grid-stride
// loop; arguments were checked by the dispatching entry points in csrc/ops/activation.cpp.
#include "common.cuh"
#include "ops/activation.h"

namespace convkit {
namespace {

template <class T>
__global__ void relu_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = !(x[i] <= T(0)) ? x[i] : T(0);  // NaN propagates, as on the CPU
}

template <class T>
__global__ void relu_bwd_kernel(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = y[i] > T(0) ? dy[i] : T(0);
}

template <class T>
__global__ void dropout_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, uint8_t* __restrict__ mask,
                                   int64_t n, double p, uint64_t seed, T scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint8_t keep = dropout_uniform(seed, static_cast<uint64_t>(i)) >= p;
    mask[i] = keep;
    y[i] = keep ? x[i] * scale : T(0);
  }
}

template <class T>
__global__ void dropout_bwd_kernel(const T* __restrict__ dy, const uint8_t* __restrict__ mask, T* __restrict__ dx,
                                   int64_t n, T scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = mask[i] ? dy[i] * scale : T(0);
}

constexpr int kBlock = 256;

}  // namespace

void relu_forward_cuda(const Tensor& x, const Tensor& y) {
  cuda_require("relu_forward");
  CONVKIT_DISPATCH_FLOAT(x.dtype, "relu_forward", [&] {
    int64_t n = x.numel();
    launch("relu_forward", relu_fwd_kernel<scalar_t>, grid_for(n, kBlock), kBlock, x.ptr<scalar_t>(),
           y.ptr<scalar_t>(), n);
  });
}

void relu_backward_cuda(const Tensor& dy, const Tensor& y, const Tensor& dx) {
  cuda_require("relu_backward");
  CONVKIT_DISPATCH_FLOAT(y.dtype, "relu_backward", [&] {
    int64_t n = y.numel();
    launch("relu_backward", relu_bwd_kernel<scalar_t>, grid_for(n, kBlock), kBlock, dy.ptr<scalar_t>(),
           y.ptr<scalar_t>(), dx.ptr<scalar_t>(), n);
  });
}

void dropout_forward_cuda(const Tensor& x, const Tensor& y, const Tensor& mask, double p, uint64_t seed) {
  cuda_require("dropout_forward");
  CONVKIT_DISPATCH_FLOAT(x.dtype, "dropout_forward", [&] {
    int64_t n = x.numel();
    launch("dropout_forward", dropout_fwd_kernel<scalar_t>, grid_for(n, kBlock), kBlock, x.ptr<scalar_t>(),
           y.ptr<scalar_t>(), mask.ptr<uint8_t>(), n, p, seed, scalar_t(1.0 / (1.0 - p)));
  });
}

void dropout_backward_cuda(const Tensor& dy, const Tensor& mask, const Tensor& dx, double p) {
  cuda_require("dropout_backward");
  CONVKIT_DISPATCH_FLOAT(dy.dtype, "dropout_backward", [&] {
    int64_t n = dy.numel();
    launch("dropout_backward", dropout_bwd_kernel<scalar_t>, grid_for(n, kBlock), kBlock, dy.ptr<scalar_t>(),
           mask.ptr<uint8_t>(), dx.ptr<scalar_t>(), n, scalar_t(1.0 / (1.0 - p)));
  });
}

}  // namespace convkit
