// softmax, log_softmax and softmax cross-entropy on CUDA (formulas in csrc/ops/softmax.h).
//
// Decomposition: one group of threads per row of [N, K]: a warp per row when K <= 1024 (8 rows per
// 256-thread block, no block barriers), a whole 256-thread block per row otherwise. Each row is read
// in a few passes (max, sum of exp, write); reductions are fixed-order trees (deterministic), sums
// accumulated in double, the max subtracted first (stable for logits of magnitude 1e4).
//
// Labels (cross-entropy) live on the device, so they are checked there: a label outside [0, K) sets
// that row's loss (forward) or gradient row (backward) to NaN, is never used as an address, and sets a
// bit in convkit's device error flag; the host raises ValueError naming the op when results are next
// read (to_numpy, item, synchronize). Labels that start on the host are range-checked before launch
// by convkit.functional.
#include "common.cuh"
#include "ops/softmax.h"

namespace convkit {
namespace {

__device__ __forceinline__ float exp_(float v) { return expf(v); }
__device__ __forceinline__ double exp_(double v) { return exp(v); }

// Sum/max over the threads of one row group (GROUP = 32: a warp; 256: the block).
template <int GROUP> struct Group {
  static __device__ __forceinline__ double sum(double v, double* scratch) {
    if constexpr (GROUP == 32) return warp_sum(v);
    else return block_sum(v, scratch);
  }
  template <class T> static __device__ __forceinline__ T max(T v, T* scratch) {
    if constexpr (GROUP == 32) return warp_max(v);
    else return block_max(v, scratch);
  }
};

enum Kind : int { kSoftmax = 0, kLogSoftmax = 1, kCrossEntropy = 2 };

template <class T, int GROUP, int KIND>
__global__ void softmax_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, const int64_t* __restrict__ labels,
                                   T* __restrict__ loss, unsigned* __restrict__ flags, int64_t N, int64_t K) {
  __shared__ double dscratch[32];
  __shared__ T tscratch[32];
  const int rows_per_block = blockDim.x / GROUP;
  const int lane = threadIdx.x % GROUP;
  for (int64_t row0 = static_cast<int64_t>(blockIdx.x) * rows_per_block; row0 < N;
       row0 += static_cast<int64_t>(gridDim.x) * rows_per_block) {
    const int64_t row = row0 + threadIdx.x / GROUP;
    const bool active = row < N;  // (only warp groups can be inactive; a block group's row is < N)
    if (GROUP == 32 && !active) continue;
    const T* xr = x + row * K;
    T* yr = y + row * K;
    T m = T(-INFINITY);
    for (int64_t k = lane; k < K; k += GROUP) m = nan_max(m, xr[k]);
    m = Group<GROUP>::max(m, tscratch);
    double s = 0;
    for (int64_t k = lane; k < K; k += GROUP) s += static_cast<double>(exp_(xr[k] - m));
    s = Group<GROUP>::sum(s, dscratch);
    if constexpr (KIND == kLogSoftmax) {
      const T lse = static_cast<T>(log(s));
      for (int64_t k = lane; k < K; k += GROUP) yr[k] = xr[k] - m - lse;
    } else {
      const T inv = static_cast<T>(1.0 / s);
      for (int64_t k = lane; k < K; k += GROUP) yr[k] = exp_(xr[k] - m) * inv;
    }
    if constexpr (KIND == kCrossEntropy) {
      if (lane == 0) {
        const int64_t lab = labels[row];
        if (lab < 0 || lab >= K) {
          loss[row] = T(NAN);
          atomicOr(flags, static_cast<unsigned>(kErrLabelsForward));
        } else {
          loss[row] = static_cast<T>(static_cast<double>(m) + log(s) - static_cast<double>(xr[lab]));
        }
      }
    }
  }
}

template <class T, int GROUP, int KIND>
__global__ void softmax_bwd_kernel(const T* __restrict__ y, const T* __restrict__ dy, T* __restrict__ dx, int64_t N,
                                   int64_t K) {
  __shared__ double dscratch[32];
  const int rows_per_block = blockDim.x / GROUP;
  const int lane = threadIdx.x % GROUP;
  for (int64_t row0 = static_cast<int64_t>(blockIdx.x) * rows_per_block; row0 < N;
       row0 += static_cast<int64_t>(gridDim.x) * rows_per_block) {
    const int64_t row = row0 + threadIdx.x / GROUP;
    if (GROUP == 32 && row >= N) continue;
    const T* yr = y + row * K;
    const T* gr = dy + row * K;
    T* dr = dx + row * K;
    double s = 0;
    if constexpr (KIND == kSoftmax)
      for (int64_t k = lane; k < K; k += GROUP) s += static_cast<double>(gr[k] * yr[k]);
    else
      for (int64_t k = lane; k < K; k += GROUP) s += static_cast<double>(gr[k]);
    s = Group<GROUP>::sum(s, dscratch);
    const T st = static_cast<T>(s);
    if constexpr (KIND == kSoftmax)
      for (int64_t k = lane; k < K; k += GROUP) dr[k] = yr[k] * (gr[k] - st);
    else
      for (int64_t k = lane; k < K; k += GROUP) dr[k] = gr[k] - exp_(yr[k]) * st;
  }
}

// dx[n, k] = dloss[n] * (probs[n, k] - [k == label[n]]): one thread per element.
template <class T>
__global__ void cross_entropy_bwd_kernel(const T* __restrict__ probs, const int64_t* __restrict__ labels,
                                         const T* __restrict__ dloss, T* __restrict__ dx, unsigned* __restrict__ flags,
                                         int64_t N, int64_t K) {
  const int64_t total = N * K;
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    const int64_t n = i / K, k = i - n * K;
    const int64_t lab = labels[n];
    if (lab < 0 || lab >= K) {
      dx[i] = T(NAN);
      if (k == 0) atomicOr(flags, static_cast<unsigned>(kErrLabelsBackward));
      continue;
    }
    dx[i] = dloss[n] * (probs[i] - (k == lab ? T(1) : T(0)));
  }
}

constexpr int kBlock = 256;

unsigned row_grid(int64_t N, int rows_per_block) {
  int64_t g = ceil_div<int64_t>(N, rows_per_block);
  if (g > 65535LL * 32) g = 65535LL * 32;
  return static_cast<unsigned>(g < 1 ? 1 : g);
}

template <int KIND>
void forward(const char* op, const Tensor& x, const Tensor& y, const Tensor* labels, const Tensor* loss) {
  cuda_require(op);
  const int64_t N = x.shape[0], K = x.shape[1];
  unsigned* flags = KIND == kCrossEntropy ? cuda_error_flags() : nullptr;
  CONVKIT_DISPATCH_FLOAT(x.dtype, op, [&] {
    const int64_t* lab = labels ? labels->ptr<int64_t>() : nullptr;
    scalar_t* ls = loss ? loss->ptr<scalar_t>() : nullptr;
    if (K <= 1024)
      launch(op, softmax_fwd_kernel<scalar_t, 32, KIND>, row_grid(N, kBlock / 32), kBlock, x.ptr<scalar_t>(),
             y.ptr<scalar_t>(), lab, ls, flags, N, K);
    else
      launch(op, softmax_fwd_kernel<scalar_t, kBlock, KIND>, row_grid(N, 1), kBlock, x.ptr<scalar_t>(),
             y.ptr<scalar_t>(), lab, ls, flags, N, K);
  });
}

template <int KIND> void backward(const char* op, const Tensor& y, const Tensor& dy, const Tensor& dx) {
  cuda_require(op);
  const int64_t N = y.shape[0], K = y.shape[1];
  CONVKIT_DISPATCH_FLOAT(y.dtype, op, [&] {
    if (K <= 1024)
      launch(op, softmax_bwd_kernel<scalar_t, 32, KIND>, row_grid(N, kBlock / 32), kBlock, y.ptr<scalar_t>(),
             dy.ptr<scalar_t>(), dx.ptr<scalar_t>(), N, K);
    else
      launch(op, softmax_bwd_kernel<scalar_t, kBlock, KIND>, row_grid(N, 1), kBlock, y.ptr<scalar_t>(),
             dy.ptr<scalar_t>(), dx.ptr<scalar_t>(), N, K);
  });
}

}  // namespace

void softmax_forward_cuda(const Tensor& x, const Tensor& y) { forward<kSoftmax>("softmax_forward", x, y, nullptr, nullptr); }
void log_softmax_forward_cuda(const Tensor& x, const Tensor& y) {
  forward<kLogSoftmax>("log_softmax_forward", x, y, nullptr, nullptr);
}
void softmax_backward_cuda(const Tensor& y, const Tensor& dy, const Tensor& dx) {
  backward<kSoftmax>("softmax_backward", y, dy, dx);
}
void log_softmax_backward_cuda(const Tensor& y, const Tensor& dy, const Tensor& dx) {
  backward<kLogSoftmax>("log_softmax_backward", y, dy, dx);
}
void softmax_cross_entropy_forward_cuda(const Tensor& logits, const Tensor& labels, const Tensor& loss,
                                        const Tensor& probs) {
  forward<kCrossEntropy>("softmax_cross_entropy_forward", logits, probs, &labels, &loss);
}
void softmax_cross_entropy_backward_cuda(const Tensor& probs, const Tensor& labels, const Tensor& dloss,
                                         const Tensor& dlogits) {
  const char* op = "softmax_cross_entropy_backward";
  cuda_require(op);
  const int64_t N = probs.shape[0], K = probs.shape[1];
  unsigned* flags = cuda_error_flags();
  CONVKIT_DISPATCH_FLOAT(probs.dtype, op, [&] {
    launch(op, cross_entropy_bwd_kernel<scalar_t>, grid_for(N * K, kBlock), kBlock, probs.ptr<scalar_t>(),
           labels.ptr<int64_t>(), dloss.ptr<scalar_t>(), dlogits.ptr<scalar_t>(), flags, N, K);
  });
}

}  // namespace convkit
