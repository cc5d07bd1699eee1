// transpose8_avx2.h: the first two stages of an 8 x 8 float transpose in AVX2 registers, shared by
// the AVX2 files of csrc/ops (include it only from *_avx2.cpp files: it has internal linkage, so the
// AVX-encoded copies never merge with code that runs on a plain x86-64).
#pragma once

#include <immintrin.h>

namespace {

// Rows r[0..7] -> q[0..7] with q[c] holding column c of rows 0-3 in its low 128-bit half and column
// c + 4 of rows 0-3 in its high half, q[4 + c] the same for rows 4-7 (c < 4): pairs, then quads
// within the 128-bit halves. _mm256_permute2f128_ps(q[c], q[4 + c], 0x20 / 0x31) then gives the
// whole columns c and c + 4.
inline void transpose8_quads(const __m256* r, __m256* q) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  q[0] = _mm256_shuffle_ps(t0, t2, 0x44), q[1] = _mm256_shuffle_ps(t0, t2, 0xEE);
  q[2] = _mm256_shuffle_ps(t1, t3, 0x44), q[3] = _mm256_shuffle_ps(t1, t3, 0xEE);
  q[4] = _mm256_shuffle_ps(t4, t6, 0x44), q[5] = _mm256_shuffle_ps(t4, t6, 0xEE);
  q[6] = _mm256_shuffle_ps(t5, t7, 0x44), q[7] = _mm256_shuffle_ps(t5, t7, 0xEE);
}

}  // namespace
