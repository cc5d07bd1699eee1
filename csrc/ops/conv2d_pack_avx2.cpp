// conv2d_pack_avx2.cpp: the forward packer's row copy and col2im's masked add (conv2d_pack.h) in
// 32-byte AVX2 vectors.
// Compiled with -mavx2 -mfma and only called when convkit::cpu_isa() reports avx2 or better; the
// functions declared in conv2d_pack.h are the file's only external names (nothing inline is shared with baseline code).
//
// Why a file of its own: packing the im2col strips was 11-13% of AlexNet conv5's forward time with
// 16-byte SSE2 copies whose loads waited on L2 (perf annotate: the AND after each load). 32-byte
// loads halve the memory operations, and a prefetch two strips ahead in the same channel row
// brings the next strip's source lines in while this one is copied.
#include <immintrin.h>

#include "ops/conv2d_pack.h"
#include "ops/transpose8_avx2.h"

namespace convkit {
namespace conv2d_detail {

void conv2d_mask_rows16_avx2(float* dst, int64_t dst_step, const float* src, int64_t src_step, int64_t rows,
                             const std::uint32_t* mask) {
  const __m256 m0 = _mm256_loadu_ps(reinterpret_cast<const float*>(mask));
  const __m256 m1 = _mm256_loadu_ps(reinterpret_cast<const float*>(mask) + 8);
  for (int64_t r = 0; r < rows; ++r, dst += dst_step, src += src_step) {
    _mm_prefetch(reinterpret_cast<const char*>(src + 32), _MM_HINT_T0);
    _mm256_storeu_ps(dst, _mm256_and_ps(_mm256_loadu_ps(src), m0));
    _mm256_storeu_ps(dst + 8, _mm256_and_ps(_mm256_loadu_ps(src + 8), m1));
  }
}

void conv2d_copy_taps16_avx2(float* dst, const float* src, const int64_t* tap_k, const int64_t* tap_off, int64_t taps,
                             int64_t kc, int64_t step, int64_t plane, const std::uint32_t* two_runs, int64_t gap) {
  if (!two_runs) {
    for (int64_t t = 0; t < taps; ++t) {
      const float* s = src + tap_off[t];
      float* d = dst + tap_k[t] * 16;
      for (int64_t k = tap_k[t]; k < kc; k += step, s += plane, d += step * 16) {
        _mm_prefetch(reinterpret_cast<const char*>(s + 32), _MM_HINT_T0);  // as conv2d_mask_rows16_avx2
        const __m256 a = _mm256_loadu_ps(s), b = _mm256_loadu_ps(s + 8);
        _mm256_storeu_ps(d, a);
        _mm256_storeu_ps(d + 8, b);
      }
    }
    return;
  }
  const __m256 m0 = _mm256_loadu_ps(reinterpret_cast<const float*>(two_runs));
  const __m256 m1 = _mm256_loadu_ps(reinterpret_cast<const float*>(two_runs) + 8);
  for (int64_t t = 0; t < taps; ++t) {
    const float* s = src + tap_off[t];
    float* d = dst + tap_k[t] * 16;
    for (int64_t k = tap_k[t]; k < kc; k += step, s += plane, d += step * 16) {
      _mm_prefetch(reinterpret_cast<const char*>(s + gap + 32), _MM_HINT_T0);
      _mm256_storeu_ps(d, _mm256_blendv_ps(_mm256_loadu_ps(s), _mm256_loadu_ps(s + gap), m0));
      _mm256_storeu_ps(d + 8, _mm256_blendv_ps(_mm256_loadu_ps(s + 8), _mm256_loadu_ps(s + gap + 8), m1));
    }
  }
}

void conv2d_add_masked_avx2(float* dst, const float* src, const std::uint32_t* mask, int64_t n) {
  int64_t q = 0;
  for (; q + 8 <= n; q += 8) {
    const __m256 m = _mm256_loadu_ps(reinterpret_cast<const float*>(mask + q));
    _mm256_storeu_ps(dst + q, _mm256_add_ps(_mm256_loadu_ps(dst + q), _mm256_and_ps(_mm256_loadu_ps(src + q), m)));
  }
  if (q < n) {  // the last 1..7 values: masked loads and store touch only [q, n)
    const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - q)),
                                             _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 m = _mm256_and_ps(_mm256_castsi256_ps(lanes), _mm256_castsi256_ps(_mm256_maskload_epi32(
                                                                   reinterpret_cast<const int*>(mask + q), lanes)));
    const __m256 v = _mm256_and_ps(_mm256_maskload_ps(src + q, lanes), m);
    _mm256_maskstore_ps(dst + q, lanes, _mm256_add_ps(_mm256_maskload_ps(dst + q, lanes), v));
  }
}

void conv2d_mask_transpose8_avx2(float* dst, int64_t dst_step, const float* const* src,
                                 const std::uint32_t* const* mask, int64_t n) {
  for (int64_t k = 0; k < n; k += 8, dst += 8 * dst_step) {
    __m256 r[8];
    for (int u = 0; u < 8; ++u)
      r[u] = _mm256_and_ps(_mm256_loadu_ps(src[u] + k), _mm256_loadu_ps(reinterpret_cast<const float*>(mask[u] + k)));
    // rows u, lanes k -> rows k, lanes u: pairs, then quads within 128-bit halves, then the halves
    __m256 q[8];
    transpose8_quads(r, q);
    for (int c = 0; c < 4; ++c) {
      _mm256_storeu_ps(dst + c * dst_step, _mm256_permute2f128_ps(q[c], q[4 + c], 0x20));
      _mm256_storeu_ps(dst + (c + 4) * dst_step, _mm256_permute2f128_ps(q[c], q[4 + c], 0x31));
    }
  }
}

}  // namespace conv2d_detail
}  // namespace convkit
