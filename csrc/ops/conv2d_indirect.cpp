// conv2d_indirect.cpp: forward convolution as an indirect (implicit) GEMM for float on AVX2, the
// baseline half of conv2d_indirect_avx2.cpp's tile: shape choice, the weights' and the input's
// layouts, threads.
//
// Why: the GEMM path packs every input value KH * KW times into the microkernel's B panels (an
// im2col per image, 8% of AlexNet conv2's forward time), and with the weights as its A operand a
// layer whose weights exceed L2 (AlexNet conv2: 1.2 MB) streams them from memory again for every
// few 16-pixel strips, the first strip of each block running up to 1.5x slower. Here the output is
// computed pixel-major instead: a tile is 6 output pixels x 16 output channels; its A values are
// read in place from a channel-last, zero-bordered copy of the image-group (one copy, not KH * KW),
// six pixels through six pointers, and its B values are the 16 channels' weights packed once per
// call, [tap][channel][16], which stay in L2 while every pixel tile of the image passes by. Each
// tile sums all taps and channels in registers and is written once, transposed, to the NCHW output.
//
// Threads: images split over threads (each with its own channel-last copy); the images left over
// run one at a time with their 16-channel strips split over all threads. Every output value is
// computed by one tile call in a fixed order, so results do not depend on the thread count.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "convkit/runtime.h"
#include "ops/conv2d_impl.h"
#include "ops/conv2d_indirect.h"

namespace convkit {
namespace conv2d_detail {
namespace {

constexpr int kSlotPackedW = 3;  // the weights, [group][strip][tap][channel][16]
constexpr int kSlotImage = 4;    // the thread's channel-last copy of one image-group
constexpr int kSlotTaps = 1;     // the taps' offsets in that copy
constexpr std::size_t kMaxImageBytes = std::size_t(64) << 20;  // per thread; beyond it, decline
constexpr int kTileRows = 6, kTileCols = 16;

}  // namespace

// CONVKIT_CONV_INDIRECT=0 / 1: never / whenever the shape allows (the tests run both ways).
bool indirect_takes(const Dims& d, const Conv2dParams& p, DType dtype) {
#if defined(__x86_64__) || defined(_M_X64)
  if (dtype != DType::Float32 || cpu_isa() != Isa::Avx2 || route_isa() != Isa::Avx2) return false;
  const char* e = std::getenv("CONVKIT_CONV_INDIRECT");
  const bool forced = e && e[0] == '1';
  if (e && e[0] == '0') return false;
  // the tile's 16 output channels must all belong to one group
  if (d.OCg % kTileCols != 0) return false;
  const int64_t KK = d.KH * d.KW, P = d.OH * d.OW;
  // auto: kernels of 25 taps or more (5 x 5, 7 x 7), where the GEMM path's packer copies every input
  // value 25+ times; channels enough per tap for the k loop to run long; one strip's weights
  // (KK * Cg * 16 floats) within about half of L2; and more than a couple of pixel tiles.
  // Interleaved against the GEMM path (1 thread; 2 threads alike): 5 x 5 layers with 32-128
  // channels per group 0.85-0.94 of the time (AlexNet conv2 0.88-0.95), 7 x 7 with 32 0.77-0.83;
  // 3 x 3 layers 0.95-1.04 and AlexNet conv3-conv5 1.01-1.04, so they keep the GEMM path.
  if (!forced && (KK < 25 || d.Cg < 16 || d.Cg * KK > 4096 || P < 2 * kTileRows)) return false;
  const ChannelLast L = channel_last_layout(d, p);
  return double(L.Hp) * double(L.Wp) * double(L.cs) * sizeof(float) <= double(kMaxImageBytes);
#else
  (void)d, (void)p, (void)dtype;
  return false;
#endif
}

bool forward_indirect(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p) {
#if defined(__x86_64__) || defined(_M_X64)
  const Dims d = dims_of(x, w, y, p);
  if (!indirect_takes(d, p, x.dtype)) return false;
  const int64_t KK = d.KH * d.KW, P = d.OH * d.OW;
  const ChannelLast L = channel_last_layout(d, p);

  const float* xs = x.ptr<float>();
  const float* ws = w.ptr<float>();
  const float* bs = b ? b->ptr<float>() : nullptr;
  float* ys = y.ptr<float>();
  const int64_t strips = d.OCg / kTileCols, per_strip = KK * d.Cg * kTileCols;
  const int nt = threads_for(double(d.N) * double(d.OC) * double(P) * double(d.Cg) * double(KK));

  // weights: wp[(g * strips + s) * per_strip + (t * Cg + c) * 16 + j] = w[g * OCg + s * 16 + j][c][t]
  float* wp = workspace_as<float>(static_cast<std::size_t>(d.G * strips * per_strip), kSlotPackedW);
  maybe_parallel(d.G * strips, nt, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* dst = wp + r * per_strip;
      const float* src = ws + r * kTileCols * d.Cg * KK;  // output channel r * 16 of all OC
      for (int64_t t = 0; t < KK; ++t)
        for (int64_t c = 0; c < d.Cg; ++c, dst += kTileCols)
          for (int64_t j = 0; j < kTileCols; ++j) dst[j] = src[(j * d.Cg + c) * KK + t];
    }
  });

  // tap t = (kh, kw): its offset from a pixel's window origin in the copy (the calling thread's
  // table, read by all)
  int64_t* toff = workspace_as<int64_t>(static_cast<std::size_t>(KK), kSlotTaps);
  channel_last_taps(d, p, L, toff);
  // strips [s0, s1) of image n, group g, from the copy xt
  auto run_strips = [&](const float* xt, const int64_t* toff, int64_t n, int64_t g, int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const float* wsp = wp + (g * strips + s) * per_strip;
      const int64_t oc0 = g * d.OCg + s * kTileCols;
      const float* bias = bs ? bs + oc0 : nullptr;
      float* yo = ys + (n * d.OC + oc0) * P;
      int64_t oh = 0, ow = 0;  // the tile's first pixel, without a division per tile
      for (int64_t p0 = 0; p0 < P; p0 += kTileRows) {
        const int rows = static_cast<int>(std::min<int64_t>(kTileRows, P - p0));
        const float* base[kTileRows];
        for (int64_t i = 0, h = oh, w = ow; i < kTileRows; ++i) {  // lanes past the last pixel repeat it
          base[i] = xt + (h * p.stride_h * L.Wp + w * p.stride_w) * L.cs;
          if (i + 1 < rows && ++w == d.OW) w = 0, ++h;
        }
        conv2d_indirect_tile_avx2(base, toff, KK, d.Cg, wsp, bias, yo + p0, P, rows);
        for (ow += kTileRows; ow >= d.OW;) ow -= d.OW, ++oh;
      }
    }
  };
  const std::size_t image_elems = static_cast<std::size_t>(L.elems());
  auto xg_of = [&](int64_t n, int64_t g) { return xs + (n * d.C + g * d.Cg) * d.H * d.W; };
  const int64_t n_split = nt > 1 ? d.N / nt * nt : d.N;
  if (n_split > 0) {
    std::atomic<int64_t> next{0};
    run_threads(nt, [&](int, int) {
      float* xt = workspace_as<float>(image_elems, kSlotImage);
      for (int64_t n; (n = next.fetch_add(1, std::memory_order_relaxed)) < n_split;)
        for (int64_t g = 0; g < d.G; ++g) {
          channel_last(d, p, L.cs, xg_of(n, g), xt);
          run_strips(xt, toff, n, g, 0, strips);
        }
    });
  }
  if (n_split < d.N) {  // one image at a time, its strips over all threads
    float* xt = workspace_as<float>(image_elems, kSlotImage);
    for (int64_t n = n_split; n < d.N; ++n)
      for (int64_t g = 0; g < d.G; ++g) {
        channel_last(d, p, L.cs, xg_of(n, g), xt);
        run_threads(nt, [&](int t, int T) {
          const int64_t chunk = (strips + T - 1) / T, s0 = t * chunk, s1 = std::min(strips, s0 + chunk);
          run_strips(xt, toff, n, g, s0, s1);
        });
      }
  }
  return true;
#else
  (void)x, (void)w, (void)b, (void)y, (void)p;
  return false;
#endif
}

}  // namespace conv2d_detail
}  // namespace convkit
