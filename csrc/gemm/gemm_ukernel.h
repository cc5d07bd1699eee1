// gemm_ukernel.h: the register-blocked FMA microkernel, written once over a small "vector traits"
// type V and instantiated by gemm_avx2.cpp (V = 256-bit AVX2) and gemm_avx512.cpp (V = 512-bit).
// Include it only from those files: everything here has internal linkage (anonymous namespace),
// so the AVX-encoded copies can never be merged with code that runs on a plain x86-64.
//
// Tile: MR rows x NV vectors (NR = NV * V::kWidth columns). Per k step: NV vector loads of B, then
// for each of the MR rows one broadcast of A and NV FMAs into MR * NV accumulator registers, so
// every loaded B vector is used MR times and every broadcast NV times. MR * NV must leave room in
// the register file (16 ymm on AVX2: 6 x 2 = 12 accumulators; 32 zmm on AVX-512: 12 x 2 = 24).
// Contract: see gemm_internal.h.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace {

// AS: the packed A panel's height (its values for one k are AS apart); AS > MR computes only the
// first MR rows of a panel packed for a taller kernel (the edge rows of a matrix).
// init (optional): row i of the tile is written as init[i] + alpha * acc, the same operations as
// beta = 1 on a tile filled with init[i] beforehand (C is then not read; beta is ignored).
template <class V, int MR, int NV, int AS = MR>
inline void ukernel_fma(int64_t kc, const typename V::T* __restrict a, const typename V::T* __restrict b,
                        typename V::T* __restrict c, int64_t ldc, typename V::T alpha, typename V::T beta,
                        const typename V::T* __restrict init = nullptr) {
  using T = typename V::T;
  using R = typename V::R;
  constexpr int W = V::kWidth;
  constexpr int NR = NV * W;

  R acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[i][j] = V::zero();

  // Bring the C tile towards L1 while the k loop runs (it is read or written once at the end).
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);

#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    R bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) bv[j] = V::load(b + j * W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      R av = V::bcast(a + i);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] = V::fma(av, bv[j], acc[i][j]);
    }
    a += AS;
    b += NR;
  }

  const R va = V::set1(alpha);
  if (init) {
    const R one = V::set1(T(1));
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const R vi = V::set1(init[i]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) V::store(c + i * ldc + j * W, V::fma(one, vi, V::mul(acc[i][j], va)));
    }
  } else if (beta == T(0)) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) V::store(c + i * ldc + j * W, V::mul(acc[i][j], va));
  } else {
    const R vb = V::set1(beta);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) {
        T* p = c + i * ldc + j * W;
        V::store(p, V::fma(vb, V::load(p), V::mul(acc[i][j], va)));  // beta * c + alpha * acc
      }
  }
}

// FP32/FP64 FMA throughput probe (convkit bench's "measured peak"): NACC independent accumulator
// chains, each advanced by one FMA per iteration, so with NACC >= pipes x latency the FMA units
// never wait. Returns a value derived from every accumulator so the loop cannot be removed.
// Flops: iters * NACC * kWidth * 2.
template <class V, int NACC>
inline typename V::T fma_throughput(int64_t iters) {
  using T = typename V::T;
  using R = typename V::R;
  R acc[NACC];
  T seed = T(1) / T(iters + 3);
#pragma GCC unroll 16
  for (int i = 0; i < NACC; ++i) acc[i] = V::set1(seed * T(i + 1));
  // x -> x * m + a with m slightly below 1: the values stay finite for any iteration count.
  const R m = V::set1(T(0.999999)), a = V::set1(T(1e-7));
  for (int64_t k = 0; k < iters; ++k) {
#pragma GCC unroll 16
    for (int i = 0; i < NACC; ++i) acc[i] = V::fma(acc[i], m, a);
  }
  R s = acc[0];
#pragma GCC unroll 16
  for (int i = 1; i < NACC; ++i) s = V::fma(acc[i], m, s);
  alignas(64) T out[V::kWidth];
  V::store(out, s);
  T r = T(0);
  for (int l = 0; l < V::kWidth; ++l) r += out[l];
  return r;
}

}  // namespace
