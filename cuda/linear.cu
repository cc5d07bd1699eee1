// linear on CUDA (formula in csrc/ops/linear.h): three dense GEMMs on the tiled main loop of
// igemm.cuh (the one conv2d uses), with loaders for row-major matrices read as stored or transposed.
//
//   forward        y  [N, OUT] = x [N, IN]  @ w^T            (A = x,    B = w read transposed) + b
//   backward data  dx [N, IN]  = dy [N, OUT] @ w             (A = dy,   B = w)
//   backward wt    dw [OUT, IN] = dy^T @ x                   (A = dy read transposed, B = x)
//   backward bias  db [OUT]    = sum over n of dy            (one thread per column, fixed order)
//
// When the output has too few tiles to fill the device and the reduction is long (the weight
// gradient of a small layer at a large batch), the reduction is split (split-K) into scratch and
// summed by a second kernel in a fixed order: deterministic, no atomics.
#include "common.cuh"
#include "igemm.cuh"
#include "ops/linear.h"

namespace convkit {
namespace {

using igemm::Cfg;
using igemm::KFast;
using igemm::MFast;

// A operand rows m < M over k in [kbeg, kend). Stored [M, K] (contiguous along k: KFast) or, when
// TRANS, [K, M] (contiguous along m: MFast). Same for B with its columns n < N: stored [K, N] is
// contiguous along n (MFast), TRANS [N, K] along k (KFast).
template <class T, int DIM, bool KMAJOR> struct Dense;

template <class T, int DIM> struct Dense<T, DIM, true> {  // element (m, k) at p[m * ld + k]
  using C = Cfg<T>;
  using Map = KFast<C, DIM>;
  static constexpr int L = Map::L;
  const T* p;
  int64_t ld, M, kend, k;
  int64_t m0;
  __device__ Dense(const T* p_, int64_t ld_, int64_t M_, int64_t m0_, int64_t kbeg, int64_t kend_)
      : p(p_), ld(ld_), M(M_), kend(kend_), k(kbeg + Map::k()), m0(m0_) {}
  __device__ __forceinline__ void fetch(T (&r)[L]) {
#pragma unroll
    for (int e = 0; e < L; ++e) {
      const int64_t m = m0 + Map::m(e);
      r[e] = (m < M && k < kend) ? p[m * ld + k] : T(0);
    }
    k += C::BK;
  }
  __device__ __forceinline__ void stash(T (*s)[DIM + C::PAD], const T (&r)[L]) const {
#pragma unroll
    for (int e = 0; e < L; ++e) s[Map::k()][Map::m(e)] = r[e];
  }
};

template <class T, int DIM> struct Dense<T, DIM, false> {  // element (m, k) at p[k * ld + m]
  using C = Cfg<T>;
  using Map = MFast<C, DIM>;
  static constexpr int L = Map::L;
  const T* p;
  int64_t ld, M, kend, k0;
  int64_t m;
  __device__ Dense(const T* p_, int64_t ld_, int64_t M_, int64_t m0_, int64_t kbeg, int64_t kend_)
      : p(p_), ld(ld_), M(M_), kend(kend_), k0(kbeg), m(m0_ + Map::m()) {}
  __device__ __forceinline__ void fetch(T (&r)[L]) {
#pragma unroll
    for (int e = 0; e < L; ++e) {
      const int64_t k = k0 + Map::k(e);
      r[e] = (m < M && k < kend) ? p[k * ld + m] : T(0);
    }
    k0 += C::BK;
  }
  __device__ __forceinline__ void stash(T (*s)[DIM + C::PAD], const T (&r)[L]) const {
#pragma unroll
    for (int e = 0; e < L; ++e) s[Map::k(e)][Map::m()] = r[e];
  }
};

// C[M, N] (+ bias[n]) = op(A) op(B) over the k range of split blockIdx.z; out points at C, or at
// split blockIdx.z's slice of the scratch when the reduction is split.
template <class T, bool A_KMAJOR, bool B_KMAJOR>
__global__ void __launch_bounds__(igemm::kThreads, 2)
    dense_gemm_kernel(const T* __restrict__ A, int64_t lda, const T* __restrict__ B, int64_t ldb, T* __restrict__ out,
                      const T* __restrict__ bias, int64_t M, int64_t N, int64_t K, int64_t chunk) {
  using C = Cfg<T>;
  const int sp = blockIdx.z;
  const int64_t kbeg = sp * chunk, kend = kbeg + chunk < K ? kbeg + chunk : K;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * C::BM, n0 = static_cast<int64_t>(blockIdx.x) * C::BN;
  Dense<T, C::BM, A_KMAJOR> la(A, lda, M, m0, kbeg, kend);
  Dense<T, C::BN, B_KMAJOR> lb(B, ldb, N, n0, kbeg, kend);
  T acc[C::TM][C::TN];
  igemm::mainloop<T>(la, lb, static_cast<int>(ceil_div<int64_t>(kend - kbeg, C::BK)), acc);
  T* o = out + static_cast<int64_t>(sp) * M * N;
#pragma unroll
  for (int i = 0; i < C::TM; ++i) {
    const int64_t m = m0 + igemm::row_of<C>(i);
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < C::TN; ++j) {
      const int64_t n = n0 + igemm::col_of<C>(j);
      if (n < N) o[m * N + n] = acc[i][j] + (bias ? bias[n] : T(0));
    }
  }
}

template <class T> __global__ void column_sum_kernel(const T* __restrict__ dy, T* __restrict__ db, int64_t rows,
                                                     int64_t cols) {
  for (int64_t c = global_thread(); c < cols; c += grid_threads()) {
    double acc = 0;
    for (int64_t r = 0; r < rows; ++r) acc += static_cast<double>(dy[r * cols + c]);
    db[c] = static_cast<T>(acc);
  }
}

// C = op(A) @ op(B) (+ bias) with the split decided here. a_kmajor: A stored [M, K]; b_kmajor: B stored
// [N, K] (i.e. read transposed).
template <class T>
void dense_gemm(const char* op, bool a_kmajor, bool b_kmajor, int64_t M, int64_t N, int64_t K, const T* A,
                int64_t lda, const T* B, int64_t ldb, T* Cout, const T* bias) {
  using C = Cfg<T>;
  const int64_t gx = ceil_div<int64_t>(N, C::BN), gy = ceil_div<int64_t>(M, C::BM);
  CONVKIT_CHECK(gx <= 2147483647LL && gy <= 65535, op, ": matrix too large for one launch");
  int64_t chunk = 0;
  int splits = bias ? 1 : igemm::choose_splits(gx * gy, K, C::BK, &chunk);
  if (splits <= 1) {
    splits = 1;
    chunk = K;
  }
  const int64_t total = M * N;
  while (splits > 1 && static_cast<double>(splits) * total * sizeof(T) > 256.0 * (1 << 20)) {
    splits = (splits + 1) / 2;
    chunk = ceil_div<int64_t>(ceil_div<int64_t>(K, splits), C::BK) * C::BK;
    splits = static_cast<int>(ceil_div<int64_t>(K, chunk));
  }
  T* out = splits > 1 ? static_cast<T*>(cuda_workspace(sizeof(T) * splits * total, 0)) : Cout;
  dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy), static_cast<unsigned>(splits));
  if (a_kmajor && b_kmajor)
    launch(op, dense_gemm_kernel<T, true, true>, grid, igemm::kThreads, A, lda, B, ldb, out, bias, M, N, K, chunk);
  else if (a_kmajor)
    launch(op, dense_gemm_kernel<T, true, false>, grid, igemm::kThreads, A, lda, B, ldb, out, bias, M, N, K, chunk);
  else if (b_kmajor)
    launch(op, dense_gemm_kernel<T, false, true>, grid, igemm::kThreads, A, lda, B, ldb, out, bias, M, N, K, chunk);
  else
    launch(op, dense_gemm_kernel<T, false, false>, grid, igemm::kThreads, A, lda, B, ldb, out, bias, M, N, K, chunk);
  if (splits > 1)
    launch(op, igemm::splitk_reduce<T>, grid_for(total, 256), 256, static_cast<const T*>(out), Cout, total, splits);
}

}  // namespace

void linear_forward_cuda(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y) {
  const char* op = "linear_forward";
  cuda_require(op);
  const int64_t N = x.shape[0], IN = x.shape[1], OUT = w.shape[0];
  CONVKIT_DISPATCH_FLOAT(x.dtype, op, [&] {
    // A = x [N, IN] (k-major), B(k = in, n = out) = w[out, in]: stored [N_out, K] -> k-major
    dense_gemm<scalar_t>(op, true, true, N, OUT, IN, x.ptr<scalar_t>(), IN, w.ptr<scalar_t>(), IN, y.ptr<scalar_t>(),
                         b ? b->ptr<scalar_t>() : nullptr);
  });
}

void linear_backward_data_cuda(const Tensor& dy, const Tensor& w, const Tensor& dx) {
  const char* op = "linear_backward_data";
  cuda_require(op);
  const int64_t N = dy.shape[0], OUT = dy.shape[1], IN = w.shape[1];
  CONVKIT_DISPATCH_FLOAT(dy.dtype, op, [&] {
    // A = dy [N, OUT] (k-major), B(k = out, n = in) = w[out, in]: stored [K, N] -> n-major
    dense_gemm<scalar_t>(op, true, false, N, IN, OUT, dy.ptr<scalar_t>(), OUT, w.ptr<scalar_t>(), IN,
                         dx.ptr<scalar_t>(), nullptr);
  });
}

void linear_backward_weight_cuda(const Tensor& x, const Tensor& dy, const Tensor& dw) {
  const char* op = "linear_backward_weight";
  cuda_require(op);
  const int64_t N = x.shape[0], IN = x.shape[1], OUT = dy.shape[1];
  CONVKIT_DISPATCH_FLOAT(x.dtype, op, [&] {
    // A(m = out, k = n) = dy[n, out]: stored [K, M] -> m-major; B(k = n, n = in) = x[n, in]: stored [K, N]
    dense_gemm<scalar_t>(op, false, false, OUT, IN, N, dy.ptr<scalar_t>(), OUT, x.ptr<scalar_t>(), IN,
                         dw.ptr<scalar_t>(), nullptr);
  });
}

void linear_backward_bias_cuda(const Tensor& dy, const Tensor& db) {
  const char* op = "linear_backward_bias";
  cuda_require(op);
  const int64_t N = dy.shape[0], OUT = dy.shape[1];
  CONVKIT_DISPATCH_FLOAT(dy.dtype, op, [&] {
    launch(op, column_sum_kernel<scalar_t>, grid_for(OUT, 256), 256, dy.ptr<scalar_t>(), db.ptr<scalar_t>(), N, OUT);
  });
}

}  // namespace convkit
