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
  const float* b;     // [OCg] the group's bias, or null
  float* y;           // [OCg, OH, OW] the image-group's output
  int64_t Cg, OCg, KH, KW, dh, dw, OH, OW;
  // The unpadded input's height and top padding: kernel rows that fall on padding rows for an output
  // row are skipped (they add 0 * w; half of LeNet conv2's backward data, run as a forward conv
  // padded by 4, was such rows and columns).
  int64_t H, ph;
  // The weights packed. Channel-vectorized kernel: [Cg, KH, KW, OCp] and the bias as [OCp] (zero
  // when there is none), OCp = OCg rounded up to 8, zero padded. Pixel-vectorized kernel: blocks of 6
  // output channels, each [Cg, KH, KW, 6] (the last zero padded); bt unused.
  const float* wt;
  const float* bt;
  int64_t OCp;
  // Per kernel tap t = p * KW + q, its input offset p * dh * Wp + q * dw within a channel: the
  // kernels run a channel's taps as one loop.
  const int64_t* toff;
};

// Both write y rows [i0, i1) (output row i reads buffer rows i - row0 + p*dh).
// Pixel-vectorized: 8-pixel vectors along the output row, up to 6 channels x 16 pixels per tile.
// Wp must be at least round_up(OW, 16) + (KW - 1) * dw (it reads whole 16-pixel tiles).
void conv2d_direct_rows_avx2(const DirectRows& a, int64_t i0, int64_t i1);
// Channel-vectorized: 8-channel vectors, up to 16 channels x 6 pixels (or 8 x 12) per tile; for
// narrow outputs. Wp must be at least OW + (KW - 1) * dw.
void conv2d_direct_rows_oc_avx2(const DirectRows& a, int64_t i0, int64_t i1);

// Backward weight, direct: dw[o, c, p, q] = sum over n, i, j of dy[n, o, i, j] * xpad[n, c, i + p*dh, j + q*dw]
// for the output channels [o0, o0 + nb) of one group, one input channel c and one kernel row p.
struct DirectWeightRows {
  const float* xpad;  // [N, C, Hp, Wp]: the zero-padded input (Hp = H + 2 pad_h, Wp as below)
  int64_t C, Hp, Wp;
  const float* dy;    // [N, OC, OH, OW]
  int64_t N, OC, OH, OW;
  float* dw;          // [OC, Cg, KH, KW]
  int64_t Cg, KH, KW, dh, dw_dil;
  // For the channel-vectorized kernel only: dy transposed per group to [G, N, OH, OW, OCp], OCp = OCg
  // rounded up to 8, zero padded.
  const float* dyt;
  int64_t OCg, OCp;
};
// Overwrites dw[o0 .. o0 + nb, c_local, p, 0 .. KW) (o0 counts from 0 over all OC; input channel
// c_global = group * Cg + c_local) with sums in (n, i, j-vector) order whose 8 lanes are added up at
// the end: the same operations whatever the thread count. Needs 1 <= KW <= 7 and
// Wp >= round_up(OW, 8) + (KW - 1) * dw_dil (it reads whole 8-pixel vectors, masking the last).
void conv2d_direct_weight_avx2(const DirectWeightRows& a, int64_t o0, int64_t nb, int64_t c_local, int64_t c_global,
                               int64_t p);
// The same sums, channel-vectorized (for narrow outputs): all of group g's output channels, 8 per
// vector, from a.dyt, one pixel at a time (the input value broadcast). Needs 1 <= KW <= 7 and
// Wp >= OW + (KW - 1) * dw_dil.
void conv2d_direct_weight_oc_avx2(const DirectWeightRows& a, int64_t g, int64_t c_local, int64_t c_global, int64_t p);

}  // namespace conv2d_detail
}  // namespace convkit
