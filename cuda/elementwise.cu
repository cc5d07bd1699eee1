// Elementwise ops, reductions, fills, casts and the fused optimizer updates on CUDA (conventions in
// csrc/ops/elementwise.h, whose per-element functions both devices share).
//
// Decomposition: elementwise kernels are one thread per element in a grid-stride loop (memory-bound;
// the per-element work is a few instructions). Reductions are two deterministic passes: a grid whose
// size depends only on n sums (in double) a fixed strided subset per block, then one block combines
// the per-block results in order; no atomics, so the result is the same on every run.
#include "common.cuh"
#include "ops/elementwise.h"

namespace convkit {
namespace {

constexpr int kBlock = 256;
constexpr int kReduceThreads = 256;
constexpr int kReduceMaxBlocks = 1024;

template <int OP, class T>
__global__ void unary_kernel(const T* __restrict__ x, T* out, int64_t n, T a, T b) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) out[i] = ew::unary<OP, T>(x[i], a, b);
}

template <int OP, class T>
__global__ void binary_kernel(const T* x, const T* y, T* out, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) out[i] = ew::binary<OP, T>(x[i], y[i]);
}

template <class T> __global__ void fill_kernel(T* x, int64_t n, T v) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) x[i] = v;
}

template <class To, class From> __global__ void cast_kernel(const From* __restrict__ x, To* __restrict__ out, int64_t n) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) out[i] = ew::convert<To, From>(x[i]);
}

template <class T>
__global__ void sgd_kernel(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ buf, int64_t n, T lr, T momentum,
                           T dampening, T wd, bool nesterov, bool first_step) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    T pv = p[i];
    ew::sgd_step<T>(pv, g[i], buf ? buf + i : nullptr, lr, momentum, dampening, wd, nesterov, first_step);
    p[i] = pv;
  }
}

template <class T>
__global__ void adam_kernel(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,
                            int64_t n, T lr, T beta1, T beta2, T eps, T wd, T step_size, T bc2_sqrt, bool decoupled) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    T pv = p[i], mv = m[i], vv = v[i];
    ew::adam_step<T>(pv, g[i], mv, vv, lr, beta1, beta2, eps, wd, step_size, bc2_sqrt, decoupled);
    p[i] = pv;
    m[i] = mv;
    v[i] = vv;
  }
}

// kind: 0 sum, 1 max, 2 min (NaN sticks for max/min).
__device__ __forceinline__ double combine(int kind, double a, double b) {
  if (kind == 0) return a + b;
  if (kind == 1) return (a != a || a >= b) ? a : b;
  return (a != a || a <= b) ? a : b;
}

__device__ double block_combine(int kind, double v, double* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = combine(kind, v, __shfl_xor_sync(0xffffffffu, v, o));
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    // lanes past the last warp hold the identity: 0 for sum, any real element (scratch[0]) for max/min
    v = lane < nw ? scratch[lane] : (kind == 0 ? 0.0 : scratch[0]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = combine(kind, v, __shfl_xor_sync(0xffffffffu, v, o));
  }
  return v;  // valid in warp 0
}

// Pass 1: block b combines elements b*T + t + k*G*T; writes part[b].
template <class T> __global__ void reduce_pass1(const T* __restrict__ x, int64_t n, int kind, double* part) {
  __shared__ double scratch[32];
  double acc = kind == 0 ? 0.0 : static_cast<double>(x[0]);
  for (int64_t i = global_thread(); i < n; i += grid_threads()) acc = combine(kind, acc, static_cast<double>(x[i]));
  acc = block_combine(kind, acc, scratch);
  if (threadIdx.x == 0) part[blockIdx.x] = acc;
}

// Pass 2: one block combines the G partial results; mean divides by n.
template <class T> __global__ void reduce_pass2(const double* part, int g, int kind, bool mean, int64_t n, T* out) {
  __shared__ double scratch[32];
  double acc = kind == 0 ? 0.0 : part[0];
  for (int i = threadIdx.x; i < g; i += blockDim.x) acc = combine(kind, acc, part[i]);
  acc = block_combine(kind, acc, scratch);
  if (threadIdx.x == 0) out[0] = static_cast<T>(mean ? acc / static_cast<double>(n) : acc);
}

template <class F> void dispatch_any(DType dt, F&& f) {
  switch (dt) {
    case DType::Float32: f(float()); return;
    case DType::Float64: f(double()); return;
    case DType::Int64: f(int64_t()); return;
    case DType::UInt8: f(uint8_t()); return;
  }
  throw std::invalid_argument("unknown dtype");
}

}  // namespace

void unary_op_cuda(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b) {
  const char* name = unary_op_name(op);
  cuda_require(name);
  const int64_t n = x.numel();
  if (n == 0) return;
  CONVKIT_DISPATCH_FLOAT(x.dtype, name, [&] {
    dispatch_op<static_cast<int>(UnaryOp::Count)>(static_cast<int>(op), [&](auto opc) {
      constexpr int OP = decltype(opc)::value;
      launch(name, unary_kernel<OP, scalar_t>, grid_for(n, kBlock), kBlock, x.ptr<scalar_t>(), out.ptr<scalar_t>(),
             n, static_cast<scalar_t>(a), static_cast<scalar_t>(b));
    });
  });
}

void binary_op_cuda(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out) {
  const char* name = binary_op_name(op);
  cuda_require(name);
  const int64_t n = x.numel();
  if (n == 0) return;
  CONVKIT_DISPATCH_FLOAT(x.dtype, name, [&] {
    dispatch_op<static_cast<int>(BinaryOp::Count)>(static_cast<int>(op), [&](auto opc) {
      constexpr int OP = decltype(opc)::value;
      launch(name, binary_kernel<OP, scalar_t>, grid_for(n, kBlock), kBlock, x.ptr<scalar_t>(), y.ptr<scalar_t>(),
             out.ptr<scalar_t>(), n);
    });
  });
}

void reduce_all_cuda(ReduceOp op, const Tensor& x, const Tensor& out) {
  const char* name = reduce_op_name(op);
  cuda_require(name);
  const int64_t n = x.numel();
  const int kind = op == ReduceOp::Max ? 1 : op == ReduceOp::Min ? 2 : 0;
  CONVKIT_DISPATCH_FLOAT(x.dtype, name, [&] {
    if (n == 0) {  // only sum gets here (the entry point rejects the others)
      fill_cuda(out, 0.0);
      return;
    }
    int64_t g64 = ceil_div<int64_t>(n, kReduceThreads * 4);
    const int g = static_cast<int>(g64 < kReduceMaxBlocks ? g64 : kReduceMaxBlocks);
    double* part = static_cast<double*>(cuda_workspace(sizeof(double) * g, 1));
    launch(name, reduce_pass1<scalar_t>, g, kReduceThreads, x.ptr<scalar_t>(), n, kind, part);
    launch(name, reduce_pass2<scalar_t>, 1, kReduceThreads, static_cast<const double*>(part), g, kind,
           op == ReduceOp::Mean, n, out.ptr<scalar_t>());
  });
}

void fill_cuda(const Tensor& x, double value) {
  cuda_require("fill");
  const int64_t n = x.numel();
  if (n == 0) return;
  dispatch_any(x.dtype, [&](auto tag) {
    using T = decltype(tag);
    launch("fill", fill_kernel<T>, grid_for(n, kBlock), kBlock, x.ptr<T>(), n, static_cast<T>(value));
  });
}

void cast_cuda(const Tensor& x, const Tensor& out) {
  cuda_require("astype");
  const int64_t n = x.numel();
  if (n == 0) return;
  dispatch_any(x.dtype, [&](auto from_tag) {
    dispatch_any(out.dtype, [&](auto to_tag) {
      using From = decltype(from_tag);
      using To = decltype(to_tag);
      launch("astype", cast_kernel<To, From>, grid_for(n, kBlock), kBlock, x.ptr<From>(), out.ptr<To>(), n);
    });
  });
}

void sgd_update_cuda(const Tensor& param, const Tensor& grad, const Tensor* buf, double lr, double momentum,
                     double dampening, double weight_decay, bool nesterov, bool first_step) {
  cuda_require("sgd_update");
  const int64_t n = param.numel();
  if (n == 0) return;
  CONVKIT_DISPATCH_FLOAT(param.dtype, "sgd_update", [&] {
    using T = scalar_t;
    launch("sgd_update", sgd_kernel<T>, grid_for(n, kBlock), kBlock, param.ptr<T>(), grad.ptr<T>(),
           buf ? buf->ptr<T>() : static_cast<T*>(nullptr), n, T(lr), T(momentum), T(dampening), T(weight_decay),
           nesterov, first_step);
  });
}

void adam_update_cuda(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, double lr,
                      double beta1, double beta2, double eps, double weight_decay, double step_size, double bc2_sqrt,
                      bool decoupled) {
  cuda_require("adam_update");
  const int64_t n = param.numel();
  if (n == 0) return;
  CONVKIT_DISPATCH_FLOAT(param.dtype, "adam_update", [&] {
    using T = scalar_t;
    launch("adam_update", adam_kernel<T>, grid_for(n, kBlock), kBlock, param.ptr<T>(), grad.ptr<T>(), m.ptr<T>(),
           v.ptr<T>(), n, T(lr), T(beta1), T(beta2), T(eps), T(weight_decay), T(step_size), T(bc2_sqrt), decoupled);
  });
}

}  // namespace convkit
