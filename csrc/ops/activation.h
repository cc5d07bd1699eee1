// Elementwise activations over arrays of any shape (treated as flat).
//
// relu:    y = max(x, 0);  dx = dy * (y > 0)   (gradient 0 at x == 0, as PyTorch)
// dropout: keep[i] = u(seed, i) >= p with u a counter-based hash of (seed, i) mapped to [0, 1), so
//          the mask depends only on (seed, i): the same on every device and thread count.
//          y = x * keep / (1 - p); mask stores keep as 0/1 bytes; dx = dy * keep / (1 - p).
//          p in [0, 1); p == 0 keeps everything.
// Every function OVERWRITES its output.
#pragma once
#include "convkit/tensor.h"

namespace convkit {

void relu_forward(const Tensor& x, const Tensor& y);
void relu_backward(const Tensor& dy, const Tensor& y, const Tensor& dx);
void dropout_forward(const Tensor& x, const Tensor& y, const Tensor& mask /* uint8, x's shape */, double p,
                     uint64_t seed);
void dropout_backward(const Tensor& dy, const Tensor& mask, const Tensor& dx, double p);

// The dropout hash, shared by the CPU and CUDA kernels: uniform in [0, 1) from (seed, i).
#if defined(__CUDACC__)
__host__ __device__
#endif
inline double dropout_uniform(uint64_t seed, uint64_t i) {
  // splitmix64 of the pair; 53 high bits -> double in [0, 1).
  uint64_t z = seed * 0x9E3779B97F4A7C15ULL + i + 0x632BE59BD9B4E019ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z = z ^ (z >> 31);
  z = (z + i * 0xD1B54A32D192ED03ULL);
  z = (z ^ (z >> 29)) * 0xBF58476D1CE4E5B9ULL;
  z = z ^ (z >> 32);
  return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);
}

void relu_forward_cpu(const Tensor& x, const Tensor& y);
void relu_backward_cpu(const Tensor& dy, const Tensor& y, const Tensor& dx);
void dropout_forward_cpu(const Tensor& x, const Tensor& y, const Tensor& mask, double p, uint64_t seed);
void dropout_backward_cpu(const Tensor& dy, const Tensor& mask, const Tensor& dx, double p);
void relu_forward_cuda(const Tensor& x, const Tensor& y);
void relu_backward_cuda(const Tensor& dy, const Tensor& y, const Tensor& dx);
void dropout_forward_cuda(const Tensor& x, const Tensor& y, const Tensor& mask, double p, uint64_t seed);
void dropout_backward_cuda(const Tensor& dy, const Tensor& mask, const Tensor& dx, double p);

}  // namespace convkit
