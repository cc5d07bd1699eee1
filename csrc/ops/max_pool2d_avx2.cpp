// max_pool2d_avx2.cpp: the float32 plane kernel of max_pool2d for AVX2. CMake compiles this file
// with -mavx2 -mfma; max_pool2d.cpp calls it only when convkit::cpu_isa() >= Avx2.
//
// Same two passes and the same comparisons as pool_plane_generic in max_pool2d.cpp (read the
// comment there), so values and indices agree with it bit for bit:
//   row pass:    8 output columns at a time for windows that lie fully inside the row; stride 1
//                reads the window's columns with unaligned loads, stride 2 deinterleaves 16 floats
//                into even and odd columns; other strides and the edge windows run scalar; when
//                2-wide windows of stride 2 tile the rows exactly, the plane's rows at once as one
//                flat stream (row_pass_flat2);
//   column pass: 8 output columns at a time over the kh row results, any kernel and stride (rows
//                narrower than 8 with masked loads).
// Indices are tracked as int32 (the caller guarantees H * W < 2^31) and widened when stored.
//
// Only raw pointers and file-local helpers here: an inline function from a shared header, compiled
// with AVX2 flags in this file, could be the copy the linker keeps for the generic code too.
#include <immintrin.h>

#include <cstdint>

namespace convkit {
namespace avx2 {
namespace {

inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// Lanes where v replaces the running maximum m: v > m, or v is NaN.
inline __m256 takes_over(__m256 v, __m256 m) {
  return _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}

// The same rule on one value: (m, mi) <- (v, vi) where v takes over m. Compared and blended in SSE
// registers so that no branch is emitted (GCC turns `if (v > m || v != v)`, and even `t ? v : m`,
// into a branch, which mispredicts about half the time on real data: the planes too narrow for the
// 8-wide path, e.g. LeNet's 10x10 -> 5x5 pool, ran several times slower with it).
inline void take_scalar(float v, int32_t vi, float& m, int32_t& mi) {
  const __m128 vv = _mm_set_ss(v), mm = _mm_set_ss(m);
  const __m128 t = _mm_or_ps(_mm_cmp_ss(vv, mm, _CMP_GT_OQ), _mm_cmp_ss(vv, vv, _CMP_UNORD_Q));
  m = _mm_cvtss_f32(_mm_blendv_ps(mm, vv, t));
  const int32_t k = _mm_cvtsi128_si32(_mm_castps_si128(t));  // all ones where v takes over
  mi = (mi & ~k) | (vi & k);
}

inline __m256i blend_idx(__m256i a, __m256i b, __m256 mask) {
  return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(a), _mm256_castsi256_ps(b), mask));
}

// p[0..15] -> even = [p0 p2 ... p14], odd = [p1 p3 ... p15].
inline void deinterleave(const float* p, __m256& even, __m256& odd) {
  const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
  // per 128-bit half: [a0 a2 b0 b2 | a4 a6 b4 b6] and [a1 a3 b1 b3 | a5 a7 b5 b7]
  const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
  const __m256 o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
  // 64-bit blocks [a0a2, b0b2, a4a6, b4b6] -> [a0a2, a4a6, b0b2, b4b6]
  even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
  odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}

inline void store_idx(int64_t* dst, __m256i id) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(id)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 4), _mm256_cvtepi32_epi64(_mm256_extracti128_si256(id, 1)));
}

// One window of one row, scalar: columns [c0, c0 + kw) clipped to [0, W).
inline void row_window(const float* xr, int64_t W, int64_t c0, int64_t kw, int32_t rowbase, float* h, int32_t* hi) {
  const int64_t ca = imax(c0, 0), cb = imin(c0 + kw, W);
  float m = xr[ca];
  int32_t mi = static_cast<int32_t>(ca);
  for (int64_t c = ca + 1; c < cb; ++c) take_scalar(xr[c], static_cast<int32_t>(c), m, mi);
  *h = m;
  *hi = rowbase + mi;
}

// 8 full windows starting at output column j (all their columns inside the row).
inline void row_vec8(const float* xr, int64_t j, int64_t kw, int64_t sw, int64_t pw, int32_t rowbase,
                     __m256i lane_cols, float* h, int32_t* hi) {
  const int64_t c0 = j * sw - pw;
  const __m256i cols = _mm256_add_epi32(_mm256_set1_epi32(rowbase + static_cast<int32_t>(c0)), lane_cols);
  __m256 m;
  __m256i id = cols;
  if (sw == 1) {
    m = _mm256_loadu_ps(xr + c0);
    for (int64_t q = 1; q < kw; ++q) {
      const __m256 v = _mm256_loadu_ps(xr + c0 + q);
      const __m256 t = takes_over(v, m);
      m = _mm256_blendv_ps(m, v, t);
      id = blend_idx(id, _mm256_add_epi32(cols, _mm256_set1_epi32(static_cast<int32_t>(q))), t);
    }
  } else {  // sw == 2, kw >= 2: column q of the 8 windows is x[c0 + q + 2 * lane]
    __m256 even, odd;
    deinterleave(xr + c0, even, odd);  // reads c0 .. c0 + 15 <= the last window's end
    m = even;
    for (int64_t q = 1; q < kw; ++q) {
      __m256 v = odd;  // q == 1: odd columns of the same 16 floats
      if (q > 1) {
        __m256 unused;
        deinterleave(xr + c0 + q - 1, unused, v);  // odd elements from c0 + q - 1 are c0 + q + 2 * lane
      }
      const __m256 t = takes_over(v, m);
      m = _mm256_blendv_ps(m, v, t);
      id = blend_idx(id, _mm256_add_epi32(cols, _mm256_set1_epi32(static_cast<int32_t>(q))), t);
    }
  }
  _mm256_storeu_ps(h, m);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi), id);
}

// The output columns of one row whose windows lie fully inside it, [jlo, jhi), and whether they take
// the 8-wide path: the same for every row of a plane, so worked out once per plane (no measurable
// gain on its own; the row pass no longer divides).
struct RowSpan {
  int64_t jlo, jhi;
  bool vec;
};

RowSpan row_span(int64_t W, int64_t OW, int64_t kw, int64_t sw, int64_t pw) {
  // Windows fully inside the row: j * sw - pw >= 0 and j * sw - pw + kw <= W.
  int64_t jhi = W - kw + pw >= 0 ? imin((W - kw + pw) / sw + 1, OW) : 0;
  int64_t jlo = imin((pw + sw - 1) / sw, jhi);
  const bool vec = (sw == 1 || (sw == 2 && kw >= 2)) && jhi - jlo >= 8;
  if (!vec) jlo = jhi = 0;
  return {jlo, jhi, vec};
}

void row_pass(const float* xr, int64_t r, int64_t W, int64_t OW, int64_t kw, int64_t sw, int64_t pw,
              const RowSpan& sp, float* h, int32_t* hi) {
  const int32_t rowbase = static_cast<int32_t>(r * W);
  const int64_t jlo = sp.jlo, jhi = sp.jhi;
  for (int64_t j = 0; j < jlo; ++j) row_window(xr, W, j * sw - pw, kw, rowbase, h + j, hi + j);
  if (sp.vec) {
    const int32_t s = static_cast<int32_t>(sw);
    const __m256i lane_cols = _mm256_setr_epi32(0, s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s);
    int64_t j = jlo;
    for (; j + 8 <= jhi; j += 8) row_vec8(xr, j, kw, sw, pw, rowbase, lane_cols, h + j, hi + j);
    if (j < jhi) row_vec8(xr, jhi - 8, kw, sw, pw, rowbase, lane_cols, h + jhi - 8, hi + jhi - 8);  // overlap
  }
  for (int64_t j = jhi; j < OW; ++j) row_window(xr, W, j * sw - pw, kw, rowbase, h + j, hi + j);
}

// Output row: max over rows [ra, rb) of the row-pass results, 8 columns at a time.
inline void col_vec8(const float* hv, const int32_t* hi, int64_t OW, int64_t ra, int64_t rb, int64_t j, float* y,
                     int64_t* idx) {
  __m256 m = _mm256_loadu_ps(hv + ra * OW + j);
  __m256i id = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi + ra * OW + j));
  for (int64_t r = ra + 1; r < rb; ++r) {
    const __m256 v = _mm256_loadu_ps(hv + r * OW + j);
    const __m256 t = takes_over(v, m);
    m = _mm256_blendv_ps(m, v, t);
    id = blend_idx(id, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi + r * OW + j)), t);
  }
  _mm256_storeu_ps(y + j, m);
  store_idx(idx + j, id);
}

// col_vec8 for a row of n < 8 columns (a plane narrower than 8 outputs, LeNet's 10 x 10 -> 5 x 5),
// with the same comparisons: masked loads, so nothing past the scratch rows is read. The plane's
// output rows are contiguous, so a row that is not the last (spill) is stored 8 wide into the
// start of the rows after it, which their own stores overwrite later (masked stores are slow on
// AMD); the last row goes through a local copy.
inline void col_narrow(const float* hv, const int32_t* hi, int64_t OW, int64_t ra, int64_t rb, int64_t n, bool spill,
                       float* y, int64_t* idx) {
  const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(n)),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256 m = _mm256_maskload_ps(hv + ra * OW, mask);
  __m256i id = _mm256_maskload_epi32(hi + ra * OW, mask);
  for (int64_t r = ra + 1; r < rb; ++r) {
    const __m256 v = _mm256_maskload_ps(hv + r * OW, mask);
    const __m256 t = takes_over(v, m);
    m = _mm256_blendv_ps(m, v, t);
    id = blend_idx(id, _mm256_maskload_epi32(hi + r * OW, mask), t);
  }
  if (spill) {
    _mm256_storeu_ps(y, m);
    store_idx(idx, id);
    return;
  }
  alignas(32) float mv[8];
  alignas(32) int64_t iv[8];
  _mm256_store_ps(mv, m);
  store_idx(iv, id);
  for (int64_t j = 0; j < n; ++j) y[j] = mv[j], idx[j] = iv[j];
}

// The row pass of rows [0, rows) at once when 2-wide windows of stride 2 tile every row (no column
// padding, W = 2 OW: LeNet's 2 x 2 pools): rows and their results are then contiguous, so the plane
// is one stream of 8-output vectors whatever its width (a 10-wide row alone was all scalar). Same
// comparisons as row_vec8: the odd column takes over the even one. n = rows * OW >= 8.
void row_pass_flat2(const float* x, int64_t n, float* h, int32_t* hi) {
  const __m256i lane_cols = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
  const __m256i one = _mm256_set1_epi32(1);
  auto vec8 = [&](int64_t m0) {
    __m256 even, odd;
    deinterleave(x + 2 * m0, even, odd);
    const __m256 t = takes_over(odd, even);
    const __m256i cols = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int32_t>(2 * m0)), lane_cols);
    _mm256_storeu_ps(h + m0, _mm256_blendv_ps(even, odd, t));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi + m0), blend_idx(cols, _mm256_add_epi32(cols, one), t));
  };
  int64_t m0 = 0;
  for (; m0 + 8 <= n; m0 += 8) vec8(m0);
  if (m0 < n) vec8(n - 8);  // overlapping last block
}

}  // namespace

void max_pool2d_plane_f32(const float* x, float* y, int64_t* idx, int64_t H, int64_t W, int64_t OH, int64_t OW,
                          int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, float* hv,
                          int32_t* hi) {
  const RowSpan sp = row_span(W, OW, kw, sw, pw);
  int64_t next_row = 0;  // rows below this already have their row pass done
  const int64_t rows_used = imin(H, (OH - 1) * sh - ph + kh);
  if (kw == 2 && sw == 2 && pw == 0 && W == 2 * OW && rows_used * OW >= 8) {
    row_pass_flat2(x, rows_used * OW, hv, hi);
    next_row = rows_used;
  }
  for (int64_t i = 0; i < OH; ++i) {
    const int64_t r0 = i * sh - ph;
    const int64_t ra = imax(r0, 0), rb = imin(r0 + kh, H);
    for (int64_t r = imax(ra, next_row); r < rb; ++r) row_pass(x + r * W, r, W, OW, kw, sw, pw, sp, hv + r * OW, hi + r * OW);
    next_row = imax(next_row, rb);
    float* yi = y + i * OW;
    int64_t* ii = idx + i * OW;
    if (OW >= 8) {
      int64_t j = 0;
      for (; j + 8 <= OW; j += 8) col_vec8(hv, hi, OW, ra, rb, j, yi, ii);
      if (j < OW) col_vec8(hv, hi, OW, ra, rb, OW - 8, yi, ii);  // overlapping last block
    } else {
      // rows i + 1 .. take the spill when the 8 values stay inside the plane
      col_narrow(hv, hi, OW, ra, rb, OW, (OH - i) * OW >= 8, yi, ii);
    }
  }
}

}  // namespace avx2
}  // namespace convkit
