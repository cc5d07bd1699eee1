// conv2d_indirect.h: what conv2d_indirect.cpp (baseline code: shape choice, layouts, threads) and its
// AVX2 kernel conv2d_indirect_avx2.cpp share. Internal; deliberately free of inline code.
#pragma once

#include <cstdint>

namespace convkit {
namespace conv2d_detail {

// One tile of an indirect (implicit-GEMM) forward convolution: 6 output pixels x 16 output channels
// of one image-group, summed over every kernel tap and input channel in registers:
//   acc[i][j] = sum over t < taps, c < cg of base[i][toff[t] + c] * w[(t * cg + c) * 16 + j]
// base[i]: pixel i's window origin in a channel-last, zero-bordered copy of the input (its taps'
// channel vectors at base[i] + toff[t]); w: the 16 channels' weights packed [tap][channel][16].
// Written to y[j * ldy + i] = acc[i][j] (+ bias[j] when bias is not null) for j < 16, i < rows
// (1 .. 6): the output is channel-major, so each tile is transposed on its way out. x86-64 with
// AVX2 only.
void conv2d_indirect_tile_avx2(const float* const* base, const int64_t* toff, int64_t taps, int64_t cg,
                               const float* w, const float* bias, float* y, int64_t ldy, int rows);

}  // namespace conv2d_detail
}  // namespace convkit
