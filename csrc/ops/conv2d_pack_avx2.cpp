// conv2d_pack_avx2.cpp: the forward packer's row copy (conv2d_pack.h) in 32-byte AVX2 vectors.
// Compiled with -mavx2 -mfma and only called when convkit::cpu_isa() reports avx2 or better; the
// one function here is the file's only external name (nothing inline is shared with baseline code).
//
// Why a file of its own: packing the im2col strips was 11-13% of AlexNet conv5's forward time with
// 16-byte SSE2 copies whose loads waited on L2 (perf annotate: the AND after each load). 32-byte
// loads halve the memory operations, and a prefetch two strips ahead in the same channel row
// brings the next strip's source lines in while this one is copied.
#include <immintrin.h>

#include "ops/conv2d_pack.h"

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

}  // namespace conv2d_detail
}  // namespace convkit
