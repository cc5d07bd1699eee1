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

#include <cstdint>

namespace convkit {

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc, int threads = 0);

// Measured FP32 FMA throughput of this machine on `threads` threads (0 = all of num_threads()): each
// thread runs `iters` iterations of 12 independent vector FMA chains in the widest ISA cpu_isa()
// allows (what the GEMM microkernel can at best reach); returns GFLOP/s over the wall time of the
// parallel region. For convkit bench's "% of peak"; callers take the best of a few runs.
double fma_peak_gflops(int threads, int64_t iters);

}  // namespace convkit
