// cuda/igemm.cuh: the tiled GEMM main loop that conv2d (implicit GEMM: forward, backward data,
// backward weight) and linear share.
//
//   C[M, N] = sum_k A[m, k] * B[k, n]
//
// Decomposition: a block of NT = 256 threads computes a BM x BN tile of C, walking K in steps of BK.
// Each step the block copies an A tile (BM x BK) and a B tile (BK x BN) into shared memory, both
// stored k-major ([BK][BM] and [BK][BN]), and each thread accumulates a TM x TN register block with
// TM*TN FMAs per k (register blocking; each value read from shared memory feeds TN or TM FMAs).
// The thread's rows are two groups of TM/2 at ty*TM/2 and BM/2 + ty*TM/2 (likewise columns), so a
// warp's 16-byte shared-memory reads are either broadcasts (A) or consecutive (B): no bank conflicts.
// Double buffering: while the FMAs run on one shared-memory buffer, the next tile's global loads are
// in flight into registers and are stored into the other buffer; one barrier per k step.
//
//   float:  BM = BN = 128, BK = 8, TM = TN = 8 (64 accumulators per thread), 17 KB shared memory.
//   double: BM = BN = 64,  BK = 8, TM = TN = 4.
//
// What differs between the ops is only where A and B come from (a plain matrix, or an image gathered
// on the fly: the implicit im2col) and where C goes: those are the loaders and epilogues in conv2d.cu
// and linear.cu. A loader owns the mapping of its tile's elements to threads:
//   KFast: consecutive threads take consecutive k (for operands contiguous along k); a thread keeps
//          one k per step, so per-k index arithmetic is done once per step.
//   MFast: consecutive threads take consecutive m (or n) (operands contiguous along m/n); a thread keeps
//          one column for the whole loop, so its per-column index arithmetic is done once.
#pragma once

#include "common.cuh"

namespace convkit {
namespace igemm {

template <class T> struct Cfg;
template <> struct Cfg<float> {
  static constexpr int BM = 128, BN = 128, BK = 8, TM = 8, TN = 8;
  static constexpr int NT = (BM / TM) * (BN / TN);
  static constexpr int PAD = 4;  // 16 bytes: rows stay 16-byte aligned, no 2-way conflicts on stores
};
template <> struct Cfg<double> {
  static constexpr int BM = 64, BN = 64, BK = 8, TM = 4, TN = 4;
  static constexpr int NT = (BM / TM) * (BN / TN);
  static constexpr int PAD = 2;
};

// Narrow tiles for products with few rows (backward data into a layer with 1-16 input channels per
// group, like conv1's 3): with the 128-row tile, 125 of conv1's 128 rows were padding and its data
// gradient ran at 0.7 TFLOP/s on an H200 (cuDNN: 0.74 ms, convkit 37.6 ms at batch 128).
template <class T> struct CfgSmallM;
template <> struct CfgSmallM<float> {
  static constexpr int BM = 16, BN = 128, BK = 16, TM = 2, TN = 4;
  static constexpr int NT = (BM / TM) * (BN / TN);
  static constexpr int PAD = 4;
};
template <> struct CfgSmallM<double> {
  static constexpr int BM = 16, BN = 64, BK = 16, TM = 2, TN = 2;
  static constexpr int NT = (BM / TM) * (BN / TN);
  static constexpr int PAD = 2;
};

constexpr int kThreads = 256;
static_assert(Cfg<float>::NT == kThreads && Cfg<double>::NT == kThreads && CfgSmallM<float>::NT == kThreads &&
                  CfgSmallM<double>::NT == kThreads,
              "one block size for every config");

// Element e (0 <= e < L) of the calling thread inside a DIM x BK tile.
template <class C, int DIM> struct KFast {
  static constexpr int L = DIM * C::BK / C::NT;
  static_assert(C::NT % C::BK == 0 && (DIM * C::BK) % C::NT == 0, "KFast mapping");
  static __device__ __forceinline__ int k() { return threadIdx.x % C::BK; }
  static __device__ __forceinline__ int m(int e) { return threadIdx.x / C::BK + e * (C::NT / C::BK); }
};
template <class C, int DIM> struct MFast {
  static constexpr int L = DIM * C::BK / C::NT;
  static_assert(C::NT % DIM == 0 && (DIM * C::BK) % C::NT == 0, "MFast mapping");
  static __device__ __forceinline__ int k(int e) { return threadIdx.x / DIM + e * (C::NT / DIM); }
  static __device__ __forceinline__ int m() { return threadIdx.x % DIM; }
};

__device__ __forceinline__ float fma_(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double fma_(double a, double b, double c) { return fma(a, b, c); }

// N contiguous elements from 16-byte aligned shared memory.
template <class T, int N> __device__ __forceinline__ void lds(const T* p, T* r) {
  if constexpr (sizeof(T) == 4 && N == 4) {
    float4 v = *reinterpret_cast<const float4*>(p);
    r[0] = v.x, r[1] = v.y, r[2] = v.z, r[3] = v.w;
  } else if constexpr (sizeof(T) == 8 && N == 2) {
    double2 v = *reinterpret_cast<const double2*>(p);
    r[0] = v.x, r[1] = v.y;
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) r[i] = p[i];
  }
}

// Row (i < TM) / column (j < TN) of the calling thread's register block inside the tile.
template <class C> __device__ __forceinline__ int row_of(int i) {
  const int ty = threadIdx.x / (C::BN / C::TN);
  return i < C::TM / 2 ? ty * (C::TM / 2) + i : C::BM / 2 + ty * (C::TM / 2) + (i - C::TM / 2);
}
template <class C> __device__ __forceinline__ int col_of(int j) {
  const int tx = threadIdx.x % (C::BN / C::TN);
  return j < C::TN / 2 ? tx * (C::TN / 2) + j : C::BN / 2 + tx * (C::TN / 2) + (j - C::TN / 2);
}

// The main loop over `nkt` k-steps. LA/LB provide fetch(regs) (load the next tile into registers and
// advance) and stash(smem, regs) (store them k-major into a [BK][DIM + PAD] buffer). acc is zeroed here.
// Must be reached by every thread of the block (it has barriers).
template <class T, class C = Cfg<T>, class LA, class LB>
__device__ __forceinline__ void mainloop(LA& la, LB& lb, int nkt, T (&acc)[C::TM][C::TN]) {
  __shared__ __align__(16) T As[2][C::BK][C::BM + C::PAD];
  __shared__ __align__(16) T Bs[2][C::BK][C::BN + C::PAD];
#pragma unroll
  for (int i = 0; i < C::TM; ++i)
#pragma unroll
    for (int j = 0; j < C::TN; ++j) acc[i][j] = T(0);
  if (nkt <= 0) return;

  const int ty = threadIdx.x / (C::BN / C::TN), tx = threadIdx.x % (C::BN / C::TN);
  T ra[LA::L], rb[LB::L];
  la.fetch(ra);
  lb.fetch(rb);
  la.stash(As[0], ra);
  lb.stash(Bs[0], rb);
  __syncthreads();

  for (int kt = 0; kt < nkt; ++kt) {
    const int cur = kt & 1;
    const bool more = kt + 1 < nkt;
    if (more) {  // the next tile's global loads overlap the FMAs below
      la.fetch(ra);
      lb.fetch(rb);
    }
#pragma unroll
    for (int kk = 0; kk < C::BK; ++kk) {
      T a[C::TM], b[C::TN];
      lds<T, C::TM / 2>(&As[cur][kk][ty * (C::TM / 2)], a);
      lds<T, C::TM / 2>(&As[cur][kk][C::BM / 2 + ty * (C::TM / 2)], a + C::TM / 2);
      lds<T, C::TN / 2>(&Bs[cur][kk][tx * (C::TN / 2)], b);
      lds<T, C::TN / 2>(&Bs[cur][kk][C::BN / 2 + tx * (C::TN / 2)], b + C::TN / 2);
#pragma unroll
      for (int i = 0; i < C::TM; ++i)
#pragma unroll
        for (int j = 0; j < C::TN; ++j) acc[i][j] = fma_(a[i], b[j], acc[i][j]);
    }
    if (more) {  // the other buffer was last read in step kt - 1, before the barrier that ended it
      la.stash(As[cur ^ 1], ra);
      lb.stash(Bs[cur ^ 1], rb);
    }
    __syncthreads();
  }
}

// Split-K partial sums: out[i] = sum_s ws[s * total + i], in a fixed order (deterministic).
template <class T> __global__ void splitk_reduce(const T* __restrict__ ws, T* __restrict__ out, int64_t total,
                                                 int splits) {
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    T s = ws[i];
    for (int k = 1; k < splits; ++k) s += ws[k * total + i];
    out[i] = s;
  }
}

// How many ways to split a reduction of length kred over `tiles` output tiles so the grid fills the
// device (about four blocks per multiprocessor), each split at least 256 long and a multiple of bk.
// Returns the split count and sets *chunk to each split's length.
inline int choose_splits(int64_t tiles, int64_t kred, int bk, int64_t* chunk) {
  int64_t want = 4LL * cuda_sm_count();
  int64_t s = tiles >= want ? 1 : (want + tiles - 1) / tiles;
  int64_t max_s = kred / 256;
  if (s > max_s) s = max_s;
  if (s > 64) s = 64;
  if (s < 1) s = 1;
  int64_t c = (kred + s - 1) / s;
  c = (c + bk - 1) / bk * bk;
  *chunk = c;
  return static_cast<int>((kred + c - 1) / c);
}

}  // namespace igemm
}  // namespace convkit
