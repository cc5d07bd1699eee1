// conv2d_pack.h: what the GEMM path's packers (conv2d_gemm.cpp, baseline code) and their AVX2 copy
// loop (conv2d_pack_avx2.cpp) share. Internal; deliberately free of inline code.
#pragma once

#include <cstdint>

namespace convkit {
namespace conv2d_detail {

// rows times: dst[0 .. 16) = src[0 .. 16) & mask[0 .. 16) (bitwise, as 32-bit lanes), then
// dst += dst_step, src += src_step. One strip of 16 pixels of the forward packer for every channel
// of one kernel tap (src one channel plane apart). x86-64 with AVX2 only (convkit::cpu_isa()).
void conv2d_mask_rows16_avx2(float* dst, int64_t dst_step, const float* src, int64_t src_step, int64_t rows,
                             const std::uint32_t* mask);

}  // namespace conv2d_detail
}  // namespace convkit
