// conv2d_direct_avx2.cpp: the register-blocked direct convolution kernel behind conv2d_direct.cpp
// (float, stride 1, AVX2 + FMA). This file is compiled with -mavx2 -mfma and only called when
// convkit::cpu_isa() reports avx2 or better. Like the gemm microkernels it keeps everything but the
// one entry point declared in conv2d_impl.h in an anonymous namespace and uses no inline library
// templates, so no AVX-encoded copy can be merged with code that runs on a plain x86-64.
//
// Two tilings, each keeping <= 12 ymm accumulators (two FMA pipes of latency 4-5 need ~10 in flight):
//   pixel-vectorized  MO output channels x NV vectors of 8 output pixels of one row (MO * NV <= 12).
//                     Per kernel tap (c, p, q): NV unaligned loads of the padded input row, then per
//                     channel one broadcast of w[o, c, p, q] (packed so that a tap's 6 are adjacent)
//                     and NV FMAs. Wastes lanes when OW is
//                     not a multiple of 8 (LeNet conv2: OW = 10 fills 10 of 16 lanes).
//   channel-vectorized  NV vectors of 8 output channels x NP pixels (NV * NP <= 12), from weights
//                     packed [c, p, q, o]. Per tap: NV weight loads, per pixel one broadcast of the
//                     input and NV FMAs. Wastes lanes when OCg is not a multiple of 8.
// Each output is its bias plus the taps in (c, p, q) order: the same operations whatever the thread
// count or the tile it falls in.
#include <immintrin.h>

#include "ops/conv2d_direct.h"

namespace {

using convkit::conv2d_detail::DirectRows;

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Stores the first n (1..8) lanes of v: 4, 2 and 1 lanes at a time below 8 (with vmaskmovps, which
// is slow on AMD, LeNet conv1 forward took 1.08-1.11x the time, its conv2 data gradient 1.01-1.02x).
inline void store_first(float* p, __m256 v, int64_t n) {
  if (n >= 8) {
    _mm256_storeu_ps(p, v);
    return;
  }
  __m128 h = _mm256_castps256_ps128(v);
  if (n >= 4) {
    _mm_storeu_ps(p, h);
    h = _mm256_extractf128_ps(v, 1);
    p += 4, n -= 4;
  }
  if (n >= 2) {
    _mm_storel_pi(reinterpret_cast<__m64*>(p), h);
    h = _mm_movehl_ps(h, h);
    p += 2, n -= 2;
  }
  if (n >= 1) _mm_store_ss(p, h);
}

// The kernel rows [*p0, *p1) that read input rows (not padding) for output row i.
inline void tap_rows(const DirectRows& a, int64_t i, int64_t* p0, int64_t* p1) {
  const int64_t top = a.ph - i, bottom = a.H - 1 + a.ph - i;  // p * dh must lie in [top, bottom]
  *p0 = top <= 0 ? 0 : (top + a.dh - 1) / a.dh;
  *p1 = bottom < 0 ? 0 : min64(a.KH, bottom / a.dh + 1);
}

// Output row i (relative row ri in the padded buffer), channels [ob, ob + MO), pixels [jb, jb + n),
// kernel rows [p0, p1).
template <int MO, int NV>
inline void tile(const DirectRows& a, int64_t ri, int64_t i, int64_t ob, int64_t jb, int64_t n, int64_t p0,
                 int64_t p1) {
  const int64_t CKK = a.Cg * a.KH * a.KW;
  __m256 acc[MO][NV];
#pragma GCC unroll 8
  for (int o = 0; o < MO; ++o) {
    const __m256 init = a.b ? _mm256_set1_ps(a.b[ob + o]) : _mm256_setzero_ps();
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[o][v] = init;
  }
  // Per input channel, its taps (p, q) with p in [p0, p1) as one loop, as in tile_oc (LeNet conv1
  // forward 0.91-0.95, LeNet conv2's data gradient 0.89-0.96 of the time of nested p and q loops).
  const float* wo = a.wt + ob * CKK;  // this block of 6 channels: [CKK][6]
  const int64_t t0 = p0 * a.KW, t1 = p1 * a.KW;
  const int64_t* toff = a.toff;
  for (int64_t c = 0; c < a.Cg; ++c) {
    const float* xc = a.xpad + (c * a.R + ri) * a.Wp + jb;
    const float* wq = wo + (c * a.KH * a.KW + t0) * 6;
#pragma GCC unroll 2
    for (int64_t t = t0; t < t1; ++t, wq += 6) {
      const float* xq = xc + toff[t];
      __m256 xv[NV];
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) xv[v] = _mm256_loadu_ps(xq + 8 * v);
#pragma GCC unroll 8
      for (int o = 0; o < MO; ++o) {
        const __m256 wv = _mm256_broadcast_ss(wq + o);
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) acc[o][v] = _mm256_fmadd_ps(wv, xv[v], acc[o][v]);
      }
    }
  }
#pragma GCC unroll 8
  for (int o = 0; o < MO; ++o) {
    float* yr = a.y + ((ob + o) * a.OH + i) * a.OW + jb;
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) store_first(yr + 8 * v, acc[o][v], n - 8 * v);
  }
}

template <int MO>
inline void row_block(const DirectRows& a, int64_t ri, int64_t i, int64_t ob) {
  int64_t p0, p1;
  tap_rows(a, i, &p0, &p1);
  for (int64_t jb = 0; jb < a.OW; jb += 16) {
    const int64_t n = min64(16, a.OW - jb);
    if (n > 8) tile<MO, 2>(a, ri, i, ob, jb, n, p0, p1);
    else tile<MO, 1>(a, ri, i, ob, jb, n, p0, p1);
  }
}

// Channel-vectorized tile: channels [ob, ob + 8 * NV) (vectors of the packed weights/bias), pixels
// [j0, j0 + NP) of output row i. Per tap: NV weight vector loads, then per pixel one broadcast of
// the input value and NV FMAs.
template <int NV, int NP>
inline void tile_oc(const DirectRows& a, int64_t ri, int64_t i, int64_t ob, int64_t j0, int64_t p0, int64_t p1) {
  __m256 acc[NV][NP];
#pragma GCC unroll 2
  for (int v = 0; v < NV; ++v) {
    const __m256 init = _mm256_loadu_ps(a.bt + ob + 8 * v);
#pragma GCC unroll 12
    for (int j = 0; j < NP; ++j) acc[v][j] = init;
  }
  // Per input channel, its taps (p, q) with p in [p0, p1) as one loop: each tap's input offset from
  // a.toff, its weights OCp after the previous tap's (LeNet conv2 forward 0.74-0.81 of the time of
  // nested p and q loops, 1 and 2 threads, interleaved). Sums in (c, p, q) order.
  const float* wt = a.wt + ob;
  const int64_t t0 = p0 * a.KW, t1 = p1 * a.KW, ocp = a.OCp;
  const int64_t* toff = a.toff;
  for (int64_t c = 0; c < a.Cg; ++c) {
    const float* xc = a.xpad + (c * a.R + ri) * a.Wp + j0;
    const float* w = wt + (c * a.KH * a.KW + t0) * ocp;
#pragma GCC unroll 2
    for (int64_t t = t0; t < t1; ++t, w += ocp) {
      __m256 wv[NV];
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) wv[v] = _mm256_loadu_ps(w + 8 * v);
      const float* xq = xc + toff[t];
#pragma GCC unroll 12
      for (int j = 0; j < NP; ++j) {
        const __m256 xv = _mm256_broadcast_ss(xq + j);
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) acc[v][j] = _mm256_fmadd_ps(wv[v], xv, acc[v][j]);
      }
    }
  }
  // Scatter: lane k of acc[v][j] is y[ob + 8v + k, i, j0 + j].
  const int64_t plane = a.OH * a.OW;
  float* yb = a.y + i * a.OW + j0;
#pragma GCC unroll 2
  for (int v = 0; v < NV; ++v) {
    alignas(32) float lanes[NP][8];
#pragma GCC unroll 12
    for (int j = 0; j < NP; ++j) _mm256_store_ps(lanes[j], acc[v][j]);
    const int64_t o0 = ob + 8 * v, kn = min64(8, a.OCg - o0);
    for (int64_t k = 0; k < kn; ++k) {
      float* yr = yb + (o0 + k) * plane;
#pragma GCC unroll 12
      for (int j = 0; j < NP; ++j) yr[j] = lanes[j][k];
    }
  }
}

template <int NV, int NPMAX>
inline void row_oc(const DirectRows& a, int64_t ri, int64_t i, int64_t ob) {
  int64_t j0 = 0, p0, p1;
  tap_rows(a, i, &p0, &p1);
  for (; j0 + NPMAX <= a.OW; j0 += NPMAX) tile_oc<NV, NPMAX>(a, ri, i, ob, j0, p0, p1);
  switch (a.OW - j0) {  // the row's last pixels
    case 11: if constexpr (NPMAX > 11) tile_oc<NV, 11>(a, ri, i, ob, j0, p0, p1); break;
    case 10: if constexpr (NPMAX > 10) tile_oc<NV, 10>(a, ri, i, ob, j0, p0, p1); break;
    case 9: if constexpr (NPMAX > 9) tile_oc<NV, 9>(a, ri, i, ob, j0, p0, p1); break;
    case 8: if constexpr (NPMAX > 8) tile_oc<NV, 8>(a, ri, i, ob, j0, p0, p1); break;
    case 7: if constexpr (NPMAX > 7) tile_oc<NV, 7>(a, ri, i, ob, j0, p0, p1); break;
    case 6: if constexpr (NPMAX > 6) tile_oc<NV, 6>(a, ri, i, ob, j0, p0, p1); break;
    case 5: tile_oc<NV, 5>(a, ri, i, ob, j0, p0, p1); break;
    case 4: tile_oc<NV, 4>(a, ri, i, ob, j0, p0, p1); break;
    case 3: tile_oc<NV, 3>(a, ri, i, ob, j0, p0, p1); break;
    case 2: tile_oc<NV, 2>(a, ri, i, ob, j0, p0, p1); break;
    case 1: tile_oc<NV, 1>(a, ri, i, ob, j0, p0, p1); break;
    default: break;
  }
}

// ---- backward weight ----------------------------------------------------------------------------
//
// dw[o, c, p, q] = sum over n, i, j of dy[n, o, i, j] * xpad[n, c, i + p*dh, j + q*dw]. One call: NB
// output channels x the KW taps of one kernel row, NB * KW (<= 12) vector accumulators of 8 output
// pixels each, kept in registers over the whole batch. Per 8 pixels of an output row: NB loads of
// dy, then per tap one unaligned load of the padded input row and NB FMAs. The last vector of a row
// that OW does not fill is masked on both sides (the input by an AND; dy by an AND too, or by a
// masked load where a whole vector would read past the end of dy), so the lanes past OW add exactly
// 0 even when the input or the next row of dy holds inf or NaN there.

using convkit::conv2d_detail::DirectWeightRows;

// Sum of the 8 lanes in a fixed order.
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int KW, int NB>
void weight_block(const DirectWeightRows& a, int64_t o0, int64_t cl, int64_t cg, int64_t p) {
  __m256 acc[NB][KW];
#pragma GCC unroll 12
  for (int b = 0; b < NB; ++b)
#pragma GCC unroll 7
    for (int q = 0; q < KW; ++q) acc[b][q] = _mm256_setzero_ps();
  const int64_t full = a.OW / 8 * 8, rest = a.OW - full, plane = a.OH * a.OW, dq = a.dw_dil;
  const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rest)),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256 maskf = _mm256_castsi256_ps(mask);
  const float* dy_end = a.dy + a.N * a.OC * plane;
  for (int64_t n = 0; n < a.N; ++n) {
    const float* xc = a.xpad + (n * a.C + cg) * a.Hp * a.Wp + p * a.dh * a.Wp;
    const float* gn = a.dy + (n * a.OC + o0) * plane;
    for (int64_t i = 0; i < a.OH; ++i) {
      const float* xr = xc + i * a.Wp;
      const float* gr = gn + i * a.OW;
      __m256 g[NB];
      for (int64_t j = 0; j < full; j += 8) {
#pragma GCC unroll 12
        for (int b = 0; b < NB; ++b) g[b] = _mm256_loadu_ps(gr + b * plane + j);
#pragma GCC unroll 7
        for (int q = 0; q < KW; ++q) {
          // one load per tap: GCC folded it into each of the NB FMAs, NB loads per tap (pinned in a
          // register, LeNet conv1's weight gradient took 0.91-0.92 of the time with the dy change below)
          __m256 xv = _mm256_loadu_ps(xr + j + q * dq);
          asm("" : "+x"(xv));
#pragma GCC unroll 12
          for (int b = 0; b < NB; ++b) acc[b][q] = _mm256_fmadd_ps(g[b], xv, acc[b][q]);
        }
      }
      if (rest) {
        // dy's values past the row: the next row's, cleared by the mask (a plain load), except at
        // the end of dy, where a masked load reads nothing past it
        const bool inside = gr + (NB - 1) * plane + full + 8 <= dy_end;
#pragma GCC unroll 12
        for (int b = 0; b < NB; ++b)
          g[b] = inside ? _mm256_and_ps(_mm256_loadu_ps(gr + b * plane + full), maskf)
                        : _mm256_maskload_ps(gr + b * plane + full, mask);
#pragma GCC unroll 7
        for (int q = 0; q < KW; ++q) {
          __m256 xv = _mm256_and_ps(_mm256_loadu_ps(xr + full + q * dq), maskf);
          asm("" : "+x"(xv));
#pragma GCC unroll 12
          for (int b = 0; b < NB; ++b) acc[b][q] = _mm256_fmadd_ps(g[b], xv, acc[b][q]);
        }
      }
    }
  }
#pragma GCC unroll 12
  for (int b = 0; b < NB; ++b)
#pragma GCC unroll 7
    for (int q = 0; q < KW; ++q) a.dw[(((o0 + b) * a.Cg + cl) * a.KH + p) * KW + q] = hsum(acc[b][q]);
}

// The last r (< the block) channels: the block of exactly r.
template <int KW, int NB>
void weight_tail(const DirectWeightRows& a, int64_t r, int64_t o0, int64_t cl, int64_t cg, int64_t p) {
  if (r == NB) return weight_block<KW, NB>(a, o0, cl, cg, p);
  if constexpr (NB > 1) weight_tail<KW, NB - 1>(a, r, o0, cl, cg, p);
}

// Channels [o0, o0 + nb) in blocks of B, B * KW <= 12 accumulators and B + 1 more registers.
template <int KW, int B>
void weight_rows(const DirectWeightRows& a, int64_t o0, int64_t nb, int64_t cl, int64_t cg, int64_t p) {
  int64_t o = o0;
  for (; o + B <= o0 + nb; o += B) weight_block<KW, B>(a, o, cl, cg, p);
  if (o < o0 + nb) weight_tail<KW, B>(a, o0 + nb - o, o, cl, cg, p);
}

// Channel-vectorized: output channel vectors [v0, v0 + NV) x the KW taps of one kernel row, NV * KW
// (<= 12) accumulators. Per output pixel: NV loads of the transposed dy, then per tap one broadcast
// of the input value and NV FMAs. Padded channels (o >= OCg) see dy = 0 and are not stored.
template <int NV, int KW>
void weight_oc_block(const DirectWeightRows& a, int64_t g, int64_t v0, int64_t cl, int64_t cg, int64_t p) {
  __m256 acc[NV][KW];
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v)
#pragma GCC unroll 7
    for (int q = 0; q < KW; ++q) acc[v][q] = _mm256_setzero_ps();
  const int64_t dq = a.dw_dil;
  for (int64_t n = 0; n < a.N; ++n) {
    const float* xc = a.xpad + (n * a.C + cg) * a.Hp * a.Wp + p * a.dh * a.Wp;
    const float* gn = a.dyt + (g * a.N + n) * a.OH * a.OW * a.OCp + v0 * 8;
    for (int64_t i = 0; i < a.OH; ++i) {
      const float* xr = xc + i * a.Wp;
      const float* gr = gn + i * a.OW * a.OCp;
      for (int64_t j = 0; j < a.OW; ++j) {
        __m256 gv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) gv[v] = _mm256_loadu_ps(gr + j * a.OCp + v * 8);
#pragma GCC unroll 7
        for (int q = 0; q < KW; ++q) {
          const __m256 xb = _mm256_broadcast_ss(xr + j + q * dq);
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) acc[v][q] = _mm256_fmadd_ps(gv[v], xb, acc[v][q]);
        }
      }
    }
  }
  alignas(32) float lanes[8];
  // fully unrolled, so acc is never indexed at run time and stays in registers in the loop above (with
  // a run-time index here GCC kept acc on the stack, storing every accumulator after every FMA)
#pragma GCC unroll 4
  for (int v = 0; v < NV; ++v)
#pragma GCC unroll 7
    for (int q = 0; q < KW; ++q) {
      _mm256_store_ps(lanes, acc[v][q]);
      for (int l = 0; l < 8; ++l) {
        const int64_t o = (v0 + v) * 8 + l;
        if (o < a.OCg) a.dw[(((g * a.OCg + o) * a.Cg + cl) * a.KH + p) * KW + q] = lanes[l];
      }
    }
}

// All channel vectors of group g in blocks of B (B * KW <= 12), the last one or two alone.
template <int KW, int B>
void weight_oc_rows(const DirectWeightRows& a, int64_t g, int64_t cl, int64_t cg, int64_t p) {
  const int64_t nv = a.OCp / 8;
  int64_t v = 0;
  for (; v + B <= nv; v += B) weight_oc_block<B, KW>(a, g, v, cl, cg, p);
  for (; v < nv; ++v) weight_oc_block<1, KW>(a, g, v, cl, cg, p);
}

}  // namespace

namespace convkit {
namespace conv2d_detail {

void conv2d_direct_weight_oc_avx2(const DirectWeightRows& a, int64_t g, int64_t c_local, int64_t c_global,
                                  int64_t p) {
  switch (a.KW) {
    case 1: return weight_oc_rows<1, 4>(a, g, c_local, c_global, p);
    case 2: return weight_oc_rows<2, 4>(a, g, c_local, c_global, p);
    case 3: return weight_oc_rows<3, 3>(a, g, c_local, c_global, p);
    case 4: return weight_oc_rows<4, 2>(a, g, c_local, c_global, p);
    case 5: return weight_oc_rows<5, 2>(a, g, c_local, c_global, p);
    case 6: return weight_oc_rows<6, 2>(a, g, c_local, c_global, p);
    case 7: return weight_oc_rows<7, 1>(a, g, c_local, c_global, p);
    default: return;  // the caller declines KW > 7
  }
}

void conv2d_direct_weight_avx2(const DirectWeightRows& a, int64_t o0, int64_t nb, int64_t c_local, int64_t c_global,
                               int64_t p) {
  switch (a.KW) {
    case 1: return weight_rows<1, 4>(a, o0, nb, c_local, c_global, p);
    case 2: return weight_rows<2, 4>(a, o0, nb, c_local, c_global, p);
    case 3: return weight_rows<3, 3>(a, o0, nb, c_local, c_global, p);
    case 4: return weight_rows<4, 2>(a, o0, nb, c_local, c_global, p);
    case 5: return weight_rows<5, 2>(a, o0, nb, c_local, c_global, p);
    case 6: return weight_rows<6, 2>(a, o0, nb, c_local, c_global, p);
    case 7: return weight_rows<7, 1>(a, o0, nb, c_local, c_global, p);
    default: return;  // the caller declines KW > 7
  }
}

void conv2d_direct_rows_avx2(const DirectRows& a, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t ri = i - a.row0;
    int64_t ob = 0;
    for (; ob + 6 <= a.OCg; ob += 6) row_block<6>(a, ri, i, ob);
    switch (a.OCg - ob) {
      case 5: row_block<5>(a, ri, i, ob); break;
      case 4: row_block<4>(a, ri, i, ob); break;
      case 3: row_block<3>(a, ri, i, ob); break;
      case 2: row_block<2>(a, ri, i, ob); break;
      case 1: row_block<1>(a, ri, i, ob); break;
      default: break;
    }
  }
}

void conv2d_direct_rows_oc_avx2(const DirectRows& a, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t ri = i - a.row0;
    int64_t ob = 0;
    for (; ob + 16 <= a.OCp; ob += 16) row_oc<2, 6>(a, ri, i, ob);
    if (ob < a.OCp) row_oc<1, 12>(a, ri, i, ob);  // the last 8 channels
  }
}

}  // namespace conv2d_detail
}  // namespace convkit
