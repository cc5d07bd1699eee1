// conv2d_direct.h: what conv2d_direct.cpp (baseline code: checks, padding, threads) and the AVX2
// kernel conv2d_direct_avx2.cpp share. Internal; deliberately free of inline code.
#pragma once

#include <cstdint>

namespace convkit {
namespace conv2d_detail {

// One image-group's output rows for a stride-1 float conv, from a zero-padded copy of its input.
struct DirectRows {
  const float* xpad;  // [Cg, R, Wp]: buffer row r of channel c = padded input row row0 + r
  int64_t Wp, R, row0;
  const float* w;     // [OCg, Cg, KH, KW] the group's weights
  const float* b;     // [OCg] the group's bias, or null
  float* y;           // [OCg, OH, OW] the image-group's output
  int64_t Cg, OCg, KH, KW, dh, dw, OH, OW;
};

// Writes y rows [i0, i1) (output row i reads buffer rows i - row0 + p*dh). Wp must be at least
// round_up(OW, 16) + (KW - 1) * dw: the kernel reads whole 16-pixel tiles.
void conv2d_direct_rows_avx2(const DirectRows& a, int64_t i0, int64_t i1);

}  // namespace conv2d_detail
}  // namespace convkit
