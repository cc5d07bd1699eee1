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
