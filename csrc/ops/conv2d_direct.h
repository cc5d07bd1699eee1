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
  // For the channel-vectorized kernel only: the weights as [Cg, KH, KW, OCp] and the bias as [OCp]
  // (zero when there is none), OCp = OCg rounded up to 8, zero padded.
  const float* wt;
  const float* bt;
  int64_t OCp;
};

// Both write y rows [i0, i1) (output row i reads buffer rows i - row0 + p*dh).
// Pixel-vectorized: 8-pixel vectors along the output row, up to 6 channels x 16 pixels per tile.
// Wp must be at least round_up(OW, 16) + (KW - 1) * dw (it reads whole 16-pixel tiles).
void conv2d_direct_rows_avx2(const DirectRows& a, int64_t i0, int64_t i1);
// Channel-vectorized: 8-channel vectors, up to 16 channels x 6 pixels (or 8 x 12) per tile; for
// narrow outputs. Wp must be at least OW + (KW - 1) * dw.
void conv2d_direct_rows_oc_avx2(const DirectRows& a, int64_t i0, int64_t i1);

}  // namespace conv2d_detail
}  // namespace convkit
