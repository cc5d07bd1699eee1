// conv2d_pack.h: what the GEMM path's packers and col2im (conv2d_gemm.cpp, baseline code) and their
// AVX2 loops (conv2d_pack_avx2.cpp) share. Internal; deliberately free of inline code.
#pragma once

#include <cstdint>

namespace convkit {
namespace conv2d_detail {

// rows times: dst[0 .. 16) = src[0 .. 16) & mask[0 .. 16) (bitwise, as 32-bit lanes), then
// dst += dst_step, src += src_step. One strip of 16 pixels of the forward packer for every channel
// of one kernel tap (src one channel plane apart). x86-64 with AVX2 only (convkit::cpu_isa()).
void conv2d_mask_rows16_avx2(float* dst, int64_t dst_step, const float* src, int64_t src_step, int64_t rows,
                             const std::uint32_t* mask);

// A whole strip of 16 pixels whose every tap reads inside the image (no lane masked): for each tap
// t < taps, the rows k = tap_k[t], tap_k[t] + step, ... < kc get dst[k * 16 .. + 16) = the 16 values
// at s = src + tap_off[t] + c * plane for the c-th of them: s[0 .. 16) for one contiguous run, or,
// for a strip in two runs (across the end of an output row), s[u] in the lanes u where two_runs[u]
// is 0 and s[gap + u] where it is all ones. One call per strip where the per-tap choice of the
// other copies cost more than the copying when a tap has few channels (AlexNet conv1: 121 taps of
// 3). x86-64 with AVX2 only.
void conv2d_copy_taps16_avx2(float* dst, const float* src, const int64_t* tap_k, const int64_t* tap_off, int64_t taps,
                             int64_t kc, int64_t step, int64_t plane, const std::uint32_t* two_runs, int64_t gap);

// dst[q] += src[q] & mask[q] (the mask bitwise, as 32-bit lanes) for q in [0, n): col2im's span
// of one kernel row (conv2d_gemm.cpp, col2im_add). x86-64 with AVX2 only.
void conv2d_add_masked_avx2(float* dst, const float* src, const std::uint32_t* mask, int64_t n);

// Eight streams transposed: dst[k * dst_step + u] = src[u][k] & mask[u][k] for u < 8 and k in
// [0, n), n a multiple of 8: pack_cols_t_same's blocks of the weight gradient's op(B) = cols^T
// (stream u a shifted channel plane of x, its lane masks clearing the pixels whose window hangs
// over the border), in 8 x 8 AVX2 transposes. x86-64 with AVX2 only.
void conv2d_mask_transpose8_avx2(float* dst, int64_t dst_step, const float* const* src,
                                 const std::uint32_t* const* mask, int64_t n);

}  // namespace conv2d_detail
}  // namespace convkit
