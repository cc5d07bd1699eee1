// conv2d_indirect_avx2.cpp: the indirect convolution's 6 x 16 tile (conv2d_indirect.h) in AVX2.
// Compiled with -mavx2 -mfma and only called when convkit::cpu_isa() reports avx2; the function
// declared in conv2d_indirect.h is the file's only external name.
//
// Per (tap, channel): two vector loads of the 16 weights, six broadcasts (one per pixel, each from
// its own channel-last row: consecutive channels are consecutive floats) and twelve FMAs into the
// 6 x 2 accumulators: the GEMM microkernel's 6 x 16 step, with A read in place through six
// pointers instead of from a packed panel.
#include <immintrin.h>

#include "ops/conv2d_indirect.h"
#include "ops/transpose8_avx2.h"

namespace convkit {
namespace conv2d_detail {

void conv2d_indirect_tile_avx2(const float* const* base, const int64_t* toff, int64_t taps, int64_t cg,
                               const float* w, const float* bias, float* y, int64_t ldy, int rows) {
  __m256 acc[6][2];
#pragma GCC unroll 6
  for (int i = 0; i < 6; ++i) {
    acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  }
  const float *b0 = base[0], *b1 = base[1], *b2 = base[2], *b3 = base[3], *b4 = base[4], *b5 = base[5];
  for (int64_t t = 0; t < taps; ++t) {
    const int64_t o = toff[t];
    const float *p0 = b0 + o, *p1 = b1 + o, *p2 = b2 + o, *p3 = b3 + o, *p4 = b4 + o, *p5 = b5 + o;
#pragma GCC unroll 4
    for (int64_t c = 0; c < cg; ++c) {
      const __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
      __m256 a = _mm256_broadcast_ss(p0 + c);
      acc[0][0] = _mm256_fmadd_ps(a, w0, acc[0][0]), acc[0][1] = _mm256_fmadd_ps(a, w1, acc[0][1]);
      a = _mm256_broadcast_ss(p1 + c);
      acc[1][0] = _mm256_fmadd_ps(a, w0, acc[1][0]), acc[1][1] = _mm256_fmadd_ps(a, w1, acc[1][1]);
      a = _mm256_broadcast_ss(p2 + c);
      acc[2][0] = _mm256_fmadd_ps(a, w0, acc[2][0]), acc[2][1] = _mm256_fmadd_ps(a, w1, acc[2][1]);
      a = _mm256_broadcast_ss(p3 + c);
      acc[3][0] = _mm256_fmadd_ps(a, w0, acc[3][0]), acc[3][1] = _mm256_fmadd_ps(a, w1, acc[3][1]);
      a = _mm256_broadcast_ss(p4 + c);
      acc[4][0] = _mm256_fmadd_ps(a, w0, acc[4][0]), acc[4][1] = _mm256_fmadd_ps(a, w1, acc[4][1]);
      a = _mm256_broadcast_ss(p5 + c);
      acc[5][0] = _mm256_fmadd_ps(a, w0, acc[5][0]), acc[5][1] = _mm256_fmadd_ps(a, w1, acc[5][1]);
      w += 16;
    }
  }
  // Transposed out, 8 channels at a time: the 6 pixel rows (and two unused ones) of an 8 x 8 block
  // become 8 channel rows of 6 pixels, stored 4 + 2 floats each (fewer when rows < 6).
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    __m256 r[8];
#pragma GCC unroll 6
    for (int i = 0; i < 6; ++i) r[i] = bias ? _mm256_add_ps(acc[i][h], _mm256_loadu_ps(bias + 8 * h)) : acc[i][h];
    r[6] = r[7] = _mm256_setzero_ps();
    __m256 q[8];
    transpose8_quads(r, q);
    // channel c of the block: pixels 0-3 in the low half of q[c % 4] (c < 4) or its high half
    // (c >= 4); pixels 4-5 likewise in q[4 + c % 4]
    float* yb = y + 8 * h * ldy;
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      const __m128 a = c < 4 ? _mm256_castps256_ps128(q[c % 4]) : _mm256_extractf128_ps(q[c % 4], 1);
      const __m128 b = c < 4 ? _mm256_castps256_ps128(q[4 + c % 4]) : _mm256_extractf128_ps(q[4 + c % 4], 1);
      float* dst = yb + c * ldy;
      if (rows == 6) {
        _mm_storeu_ps(dst, a);
        _mm_storel_pi(reinterpret_cast<__m64*>(dst + 4), b);
      } else {
        alignas(16) float v[8];
        _mm_store_ps(v, a);
        _mm_store_ps(v + 4, b);
        for (int i = 0; i < rows; ++i) dst[i] = v[i];
      }
    }
  }
}

}  // namespace conv2d_detail
}  // namespace convkit
