// Leaky ReLU on CUDA (formulas in leaky_relu.h). One thread per element, grid-stride loop, on
// convkit's current stream; arguments were checked by the entry points in leaky_relu.cpp.
#include "leaky_relu.h"  // includes convkit/extension.h first (it must come before cuda_check.h)

#include "convkit/cuda_check.h"

namespace custom_op {
using namespace convkit;

namespace {

constexpr int kBlock = 256;

template <class T>
__global__ void forward_kernel(const T* __restrict__ x, T* __restrict__ y, T slope, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = x[i] > T(0) ? x[i] : slope * x[i];
}

template <class T>
__global__ void backward_kernel(const T* __restrict__ dy, const T* __restrict__ x, T* __restrict__ dx, T slope,
                                int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = x[i] > T(0) ? dy[i] : slope * dy[i];
}

}  // namespace

void leaky_relu_forward_cuda(const Tensor& x, const Tensor& y, double slope) {
  CONVKIT_DISPATCH_FLOAT(x.dtype, "leaky_relu_forward", [&] {
    int64_t n = x.numel();
    forward_kernel<scalar_t><<<grid_for(n, kBlock), kBlock, 0, stream()>>>(x.ptr<scalar_t>(), y.ptr<scalar_t>(),
                                                                          static_cast<scalar_t>(slope), n);
    CONVKIT_LAUNCH_CHECK("leaky_relu_forward");
  });
}

void leaky_relu_backward_cuda(const Tensor& dy, const Tensor& x, const Tensor& dx, double slope) {
  CONVKIT_DISPATCH_FLOAT(x.dtype, "leaky_relu_backward", [&] {
    int64_t n = x.numel();
    backward_kernel<scalar_t><<<grid_for(n, kBlock), kBlock, 0, stream()>>>(
        dy.ptr<scalar_t>(), x.ptr<scalar_t>(), dx.ptr<scalar_t>(), static_cast<scalar_t>(slope), n);
    CONVKIT_LAUNCH_CHECK("leaky_relu_backward");
  });
}

}  // namespace custom_op
