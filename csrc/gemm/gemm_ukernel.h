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
// first MR rows of a panel packed for a taller kernel (the edge rows of a matrix). BS: the packed B
// panel's width likewise; BS > NR computes only the first NR columns of a panel packed wider (a last
// strip of at most half the kernel's width: gemm_internal.h's HalfCols).
// init (optional): row i of the tile is written as init[i] + alpha * acc, the same operations as
// beta = 1 on a tile filled with init[i] beforehand (C is then not read; beta is ignored).
template <class V, int MR, int NV, int AS = MR, int BS = NV * V::kWidth>
inline void ukernel_fma(int64_t kc, const typename V::T* __restrict a, const typename V::T* __restrict b,
                        typename V::T* __restrict c, int64_t ldc, typename V::T alpha, typename V::T beta,
                        const typename V::T* __restrict init = nullptr) {
  using T = typename V::T;
  using R = typename V::R;
  constexpr int W = V::kWidth;
  static_assert(BS >= NV * W, "a B panel at least the tile's width");

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
    b += BS;
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

// EdgeRows (gemm_internal.h) of a 12-row kernel NV vectors wide: the first `rows` (1 .. 11) rows of
// panels packed 12 tall, each row with the full kernel's operations.
template <class V, int NV>
inline void ukernel_rows_of12(int rows, int64_t kc, const typename V::T* a, const typename V::T* b,
                              typename V::T* c, int64_t ldc, typename V::T alpha, typename V::T beta) {
  switch (rows) {
    case 1: return ukernel_fma<V, 1, NV, 12>(kc, a, b, c, ldc, alpha, beta);
    case 2: return ukernel_fma<V, 2, NV, 12>(kc, a, b, c, ldc, alpha, beta);
    case 3: return ukernel_fma<V, 3, NV, 12>(kc, a, b, c, ldc, alpha, beta);
    case 4: return ukernel_fma<V, 4, NV, 12>(kc, a, b, c, ldc, alpha, beta);
    case 5: return ukernel_fma<V, 5, NV, 12>(kc, a, b, c, ldc, alpha, beta);
    case 6: return ukernel_fma<V, 6, NV, 12>(kc, a, b, c, ldc, alpha, beta);
    case 7: return ukernel_fma<V, 7, NV, 12>(kc, a, b, c, ldc, alpha, beta);
    case 8: return ukernel_fma<V, 8, NV, 12>(kc, a, b, c, ldc, alpha, beta);
    case 9: return ukernel_fma<V, 9, NV, 12>(kc, a, b, c, ldc, alpha, beta);
    case 10: return ukernel_fma<V, 10, NV, 12>(kc, a, b, c, ldc, alpha, beta);
    default: return ukernel_fma<V, 11, NV, 12>(kc, a, b, c, ldc, alpha, beta);
  }
}

// The first MR rows of a panel packed AS tall (the short last panel of a matrix: AlexNet's 128
// channels per group end in 2 rows of 6) against two adjacent B panels packed NV vectors wide (b
// and b + bstride): a tile MR x 2 NR whose C columns are consecutive. With MR <= 3 that is up to
// 12 accumulators where one panel alone had up to 6 (a 2-row tile was 4 chains of FMAs waiting on
// their latency). Every C value gets ukernel_fma's operations.
template <class V, int MR, int NV, int AS>
inline void ukernel_fma_2b(int64_t kc, const typename V::T* __restrict a, const typename V::T* __restrict b,
                           int64_t bstride, typename V::T* __restrict c, int64_t ldc, typename V::T alpha,
                           typename V::T beta) {
  using R = typename V::R;
  constexpr int W = V::kWidth, NR = NV * W;
  const typename V::T* __restrict b2 = b + bstride;
  R acc[MR][2 * NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < 2 * NV; ++j) acc[i][j] = V::zero();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    R bv[2 * NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) bv[j] = V::load(b + j * W), bv[NV + j] = V::load(b2 + j * W);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const R av = V::bcast(a + i);
#pragma GCC unroll 8
      for (int j = 0; j < 2 * NV; ++j) acc[i][j] = V::fma(av, bv[j], acc[i][j]);
    }
    a += AS;
    b += NR;
    b2 += NR;
  }
  const R va = V::set1(alpha), vb = V::set1(beta);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < 2 * NV; ++j) {
      typename V::T* p = c + i * ldc + j * W;
      V::store(p, beta == typename V::T(0) ? V::mul(acc[i][j], va) : V::fma(vb, V::load(p), V::mul(acc[i][j], va)));
    }
}

// Two panels packed PR tall (a, a + PR * kc: 2 PR rows) against the first vector of a B panel packed
// BS wide, and with EXTRA one column more (b[k * BS + W]) computed along the rows: per k one
// broadcast of that value times each panel's PR values as a vector (plus the next k's first values
// in the spare lanes, never stored). 2 PR + 2 accumulators: with PR = 6 on AVX2, 14 of the 16
// registers, the 15th holding first the broadcast column value and then the B vector, the 16th
// the broadcasts of A. Every C value gets ukernel_fma's operations: the same FMA chain over k,
// then alpha, then init or beta.
template <class V, int PR, int BS, bool EXTRA>
inline void upair_fma(int64_t kc, const typename V::T* __restrict a, const typename V::T* __restrict b,
                      typename V::T* __restrict c, int64_t ldc, typename V::T alpha, typename V::T beta,
                      const typename V::T* __restrict init) {
  using T = typename V::T;
  using R = typename V::R;
  constexpr int W = V::kWidth, MR = 2 * PR;
  static_assert(PR <= W && BS >= W + (EXTRA ? 1 : 0), "tile shape");
  const T* __restrict a1 = a + PR * kc;
  R acc[MR], col[2] = {V::zero(), V::zero()};
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) acc[i] = V::zero();
  auto rows = [&](const T* ak0, const T* ak1) {  // the 2 PR x W part at one k
    const R bv = V::load(b);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) acc[i] = V::fma(V::bcast(i < PR ? ak0 + i : ak1 + i - PR), bv, acc[i]);
    b += BS;
  };
  int64_t k = 0;
  if (EXTRA) {
#pragma GCC unroll 2
    for (; k + 1 < kc; ++k) {  // the last k apart: a full-vector load of it would leave the panel a1
      const R t = V::bcast(b + W);
      col[0] = V::fma(V::load(a + k * PR), t, col[0]);
      col[1] = V::fma(V::load(a1 + k * PR), t, col[1]);
      rows(a + k * PR, a1 + k * PR);
    }
    if (k < kc) {
      alignas(64) T l1[W] = {};
      for (int i = 0; i < PR; ++i) l1[i] = a1[k * PR + i];
      const R t = V::bcast(b + W);
      col[0] = V::fma(V::load(a + k * PR), t, col[0]);
      col[1] = V::fma(V::load(l1), t, col[1]);
      rows(a + k * PR, a1 + k * PR);
    }
  } else {
#pragma GCC unroll 4
    for (; k < kc; ++k) rows(a + k * PR, a1 + k * PR);
  }

  const R va = V::set1(alpha);
  if (init) {
    const R one = V::set1(T(1));
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) V::store(c + i * ldc, V::fma(one, V::set1(init[i]), V::mul(acc[i], va)));
  } else if (beta == T(0)) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) V::store(c + i * ldc, V::mul(acc[i], va));
  } else {
    const R vb = V::set1(beta);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) V::store(c + i * ldc, V::fma(vb, V::load(c + i * ldc), V::mul(acc[i], va)));
  }
  if (EXTRA) {
    alignas(64) T out[2][W];
    V::store(out[0], V::mul(col[0], va));
    V::store(out[1], V::mul(col[1], va));
    for (int i = 0; i < MR; ++i) {
      T* dst = c + i * ldc + W;
      const T v = out[i / PR][i % PR];
      *dst = init ? V::fma1(T(1), init[i], v) : beta == T(0) ? v : V::fma1(beta, *dst, v);
    }
  }
}

// One column of C from a B panel packed BS wide (b[k * BS]) and the rows of G consecutive A panels
// packed AS tall (AS <= the vector width; panel p at a + p * pstride), vectorized along the rows:
// per k one broadcast of b and, per panel, one vector load of its AS values (plus the next k's
// first values in the spare lanes, never stored). Row r of panel p is written to
// c[(p * AS + r) * ldc] for the first `rows` rows, each with the arithmetic of ukernel_fma's lane
// for it: the same FMA chain over k, then alpha, then init or beta.
template <class V, int AS, int BS, int G>
inline void ucolumn_fma(int64_t kc, const typename V::T* __restrict a, int64_t pstride,
                        const typename V::T* __restrict b, typename V::T* __restrict c, int64_t ldc, int rows,
                        typename V::T alpha, typename V::T beta, const typename V::T* __restrict init) {
  using T = typename V::T;
  using R = typename V::R;
  constexpr int W = V::kWidth;
  static_assert(AS <= W, "one vector per panel and k");
  R acc[G];
#pragma GCC unroll 8
  for (int p = 0; p < G; ++p) acc[p] = V::zero();
  int64_t k = 0;
  for (; k + 1 < kc; ++k) {  // the last k apart: its full-vector load would leave the last panel
    const R bv = V::bcast(b + k * BS);
#pragma GCC unroll 8
    for (int p = 0; p < G; ++p) acc[p] = V::fma(V::load(a + p * pstride + k * AS), bv, acc[p]);
  }
  if (k < kc) {
    const R bv = V::bcast(b + k * BS);
#pragma GCC unroll 8
    for (int p = 0; p < G; ++p) {
      alignas(64) T last[W] = {};
      for (int i = 0; i < AS; ++i) last[i] = a[p * pstride + k * AS + i];
      acc[p] = V::fma(V::load(last), bv, acc[p]);
    }
  }
  const R va = V::set1(alpha);
  for (int p = 0; p < G; ++p) {
    alignas(64) T out[W];
    V::store(out, V::mul(acc[p], va));
    for (int i = 0; i < AS && p * AS + i < rows; ++i) {
      T* dst = c + (p * AS + i) * ldc;
      if (init)
        *dst = V::fma1(T(1), init[p * AS + i], out[i]);
      else if (beta == T(0))
        *dst = out[i];
      else
        *dst = V::fma1(beta, *dst, out[i]);
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
