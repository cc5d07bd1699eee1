// gemm: convkit's own matrix multiply (no BLAS underneath), used by conv2d and linear.
//
//   C[M, N] = alpha * op(A) @ op(B) + beta * C       row-major; op(X) = X or X^T
//
// A is [M, K] (lda >= K) or, with trans_a, stored as [K, M] (lda >= M); B likewise [K, N] / [N, K].
// beta == 0 means C is overwritten (never read, so it may hold garbage or NaN).
// `threads`: how many threads this call may use (1 inside an outer parallel region; 0 = all of
// convkit::num_threads()). The result must not depend on it beyond rounding.
// Implementation: packed, cache-blocked panels with register-blocked FMA microkernels for AVX-512
// and AVX2, and a portable one; chosen at run time by convkit::cpu_isa().
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

namespace convkit {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc, int threads = 0);

// The same product with op(B) never materialized: the driver asks `packb` for each block it needs,
//   packb(p0, kc, j0, nc, nr, dst): write op(B)[p0 : p0+kc, j0 : j0+nc] into dst as nr-wide micro-panels,
//   dst[s * kc * nr + k * nr + j] = op(B)[p0 + k, j0 + s * nr + j], zero for columns past nc
// (nr is the microkernel's width). Lets conv2d build im2col blocks straight into packed form instead
// of writing and re-reading a cols matrix. packb may be called from several threads at once (on
// disjoint column ranges). Always the packed driver (no matrix-vector shortcuts); M, N, K >= 1.
template <class T>
using BPacker = std::function<void(int64_t p0, int64_t kc, int64_t j0, int64_t nc, int nr, T* dst)>;
template <class T>
void gemm_packer(bool trans_a, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                 const BPacker<T>& packb, T beta, T* C, int64_t ldc, int threads = 0);

// op(A) [M, K] packed once into the microkernel's panel layout, for many products with the same A
// (conv2d's weights over a batch: without this every image would pack them again). gemm_pack_a
// writes the panels into dst (gemm_packed_a_size(M, K) elements, owned by the caller, who keeps
// them alive and unchanged while they are used) and returns a view of them. The products below
// then read A's panels in place; always the packed driver, M, N, K >= 1. Several threads may use
// one PackedA at once.
template <class T>
struct PackedA {
  const T* data = nullptr;
  int64_t M = 0, K = 0;
  int mr = 0;  // the microkernel's row block it was packed for
};
template <class T>
std::size_t gemm_packed_a_size(int64_t M, int64_t K);
template <class T>
PackedA<T> gemm_pack_a(bool trans_a, int64_t M, int64_t K, const T* A, int64_t lda, T* dst, int threads = 0);
// Where gemm_pack_a puts element (i, k) of op(A), for callers that compute A's values straight
// into the packed form (conv2d's Winograd weights: no unpacked copy written and read again):
// K blocks of kcb columns one after the other, each [mpad / mr panels][kc][mr], zero rows past M.
// A PackedA over such a buffer is {data, M, K, mr}.
struct PackedALayout {
  int64_t M, K, mr, kcb, mpad;
  int64_t index(int64_t i, int64_t k) const {
    const int64_t pc = k / kcb * kcb, kc = K - pc < kcb ? K - pc : kcb;
    return pc * mpad + (i / mr) * mr * kc + (k - pc) * mr + i % mr;
  }
};
template <class T>
PackedALayout gemm_packed_a_layout(int64_t M, int64_t K);

// PackedALayout::index without its divisions, from tables (for callers that write every element:
// conv2d's Winograd weights): index(i, k) = base[k] + panel[i] * kc[k] + lane[i].
struct PackedIndex {
  std::vector<int64_t> base, kc, panel, lane;
  explicit PackedIndex(const PackedALayout& L)
      : base(static_cast<std::size_t>(L.K)), kc(base.size()), panel(static_cast<std::size_t>(L.mpad)),
        lane(panel.size()) {
    for (int64_t k = 0; k < L.K; ++k) {
      const int64_t pc = k / L.kcb * L.kcb;
      base[k] = pc * L.mpad + (k - pc) * L.mr, kc[k] = std::min(L.kcb, L.K - pc);
    }
    for (int64_t i = 0; i < L.mpad; ++i) panel[i] = i / L.mr * L.mr, lane[i] = i % L.mr;
  }
  int64_t operator()(int64_t i, int64_t k) const { return base[k] + panel[i] * kc[k] + lane[i]; }
};

// C[M, N] = alpha * A @ op(B) + beta * C. rows_done (optional) is called with [i0, i1) once rows
// i0 .. i1 - 1 of C are final, in ascending order, together covering [0, M): on one thread as the
// product goes (each block of rows while it is still in cache: conv2d's col2im), on several once at
// the end, from the calling thread.
using RowsDone = std::function<void(int64_t i0, int64_t i1)>;
template <class T>
void gemm(const PackedA<T>& A, bool trans_b, int64_t N, T alpha, const T* B, int64_t ldb, T beta, T* C, int64_t ldc,
          int threads = 0, const RowsDone* rows_done = nullptr);
// C[M, N] = alpha * A @ op(B) + beta * C with op(B) from a packer, as gemm_packer above. With
// row_init (beta must then be 0): C[i, j] = row_init[i] + alpha * (A @ op(B))[i, j], the same
// values as filling C with row_init and passing beta = 1, without that extra pass over C
// (conv2d's bias).
template <class T>
void gemm_packer(const PackedA<T>& A, int64_t N, T alpha, const BPacker<T>& packb, T beta, T* C, int64_t ldc,
                 int threads = 0, const T* row_init = nullptr);

// Measured FP32 FMA throughput of this machine on `threads` threads (0 = all of num_threads()): each
// thread runs `iters` iterations of 12 independent vector FMA chains in the widest ISA cpu_isa()
// allows (what the GEMM microkernel can at best reach); returns GFLOP/s over the wall time of the
// parallel region. For convkit bench's "% of peak"; callers take the best of a few runs.
double fma_peak_gflops(int threads, int64_t iters);

}  // namespace convkit
