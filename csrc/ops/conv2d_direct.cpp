// conv2d_direct.cpp: direct convolution for float, stride-1 convs with few output channels per group
// (LeNet's first layers), forward and backward weight: the baseline half (shape choice, zero-padded
// input rows, threads) of the kernels in conv2d_direct_avx2.cpp.
//
// Why: im2col + GEMM copies every input value KH*KW times into cols and the GEMM copies cols once
// more into its packed panels, then does only OCg multiply-adds per copied value. With OCg = 6 (LeNet
// conv1) the copies cost more than the arithmetic. The direct kernel reads a zero-padded copy of
// the input rows (one copy, not KH*KW) straight from L1 and keeps an output tile in registers:
// channels x 16 pixels, or for narrow outputs 16 channels x pixels (see conv2d_direct_avx2.cpp).
//
// Threads: tasks are (image, group, band of output rows); contiguous task ranges per thread. Each
// task pads the input rows its band reads into the thread's scratch and writes its own outputs, so
// results do not depend on the thread count at all.
#include "convkit/runtime.h"
#include "ops/conv2d_direct.h"
#include "ops/conv2d_impl.h"

namespace convkit {
namespace conv2d_detail {
namespace {

constexpr int kSlotPad = 4;                                  // scratch slot for the padded rows
constexpr int kSlotPacked = 3;                               // the packed weights (channel-vectorized)
constexpr int kSlotFlipped = 2;                              // backward data: the flipped weights
constexpr int kSlotOffsets = 5;                              // the kernel taps' input offsets (toff)
constexpr std::size_t kMaxPadBytes = std::size_t(64) << 20;  // per task; beyond it, decline
// auto mode: above kMaxDirectOCg the GEMM path's copies are amortized; below kMinLaneFill of the
// vector lanes doing useful work the GEMM path's denser tiles win.
constexpr int64_t kMaxDirectOCg = 32;
constexpr double kMinLaneFill = 0.6;
constexpr int64_t kMaxWeightKW = 7;  // the backward-weight kernel's widest kernel row
// Backward weight in auto mode: most of the vector lanes must be busy (measured with the pixel
// kernel: LeNet conv1, OW = 28 of 32 lanes, 3.8x faster than the GEMM path; OW = 10 of 16, 1.3x
// slower).
constexpr double kMinWeightLaneFill = 0.75;
constexpr int64_t kMinDataChannels = 4;  // backward data in auto mode: input channels per group

bool have_kernel() {
#if defined(__x86_64__) || defined(_M_X64)
  return cpu_isa() >= Isa::Avx2;
#else
  return false;
#endif
}

}  // namespace

#if defined(__x86_64__) || defined(_M_X64)
// The direct kernel's own rule (unless forced): too many output channels per group for its
// register blocks, or too few vector lanes filled by either the pixels or the channels.
inline bool direct_declines(int64_t OW, int64_t OCg) {
  const int64_t OW8 = (OW + 7) / 8 * 8, OCp = (OCg + 7) / 8 * 8;
  const double fill_px = double(OW) / double(OW8), fill_oc = double(OCg) / double(OCp);
  return OCg > kMaxDirectOCg || std::max(fill_px, fill_oc) < kMinLaneFill;
}
#endif

bool forward_direct(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p,
                    bool forced) {
  if (x.dtype != DType::Float32 || p.stride_h != 1 || p.stride_w != 1 || !have_kernel()) return false;
  const Dims d = dims_of(x, w, y, p);
#if defined(__x86_64__) || defined(_M_X64)
  // Pixel- or channel-vectorized kernel: whichever fills more vector lanes (ties: pixels).
  const int64_t OW8 = (d.OW + 7) / 8 * 8, OCp = (d.OCg + 7) / 8 * 8;
  const double fill_px = double(d.OW) / double(OW8), fill_oc = double(d.OCg) / double(OCp);
  const bool by_channel = fill_oc > fill_px;
  if (!forced && direct_declines(d.OW, d.OCg)) return false;
  const int64_t OW16 = (d.OW + 15) / 16 * 16;
  const int64_t Wp = OW16 + (d.KW - 1) * p.dil_w;  // >= W + 2 * pad_w (stride 1)
  const int64_t halo = (d.KH - 1) * p.dil_h;       // extra input rows a band of output rows reads

  // Tasks: (n, g, band). Bands only when there are too few image-groups to go round the threads.
  const double macs = double(d.N) * double(d.OC) * double(d.OH * d.OW) * double(d.Cg * d.KH * d.KW);
  const int nt = threads_for(macs);
  const int64_t groups_total = d.N * d.G;
  const int64_t bands = std::clamp<int64_t>((4 * int64_t(nt) + groups_total - 1) / groups_total, 1, d.OH);
  const int64_t band_rows = (d.OH + bands - 1) / bands;
  const int64_t R = band_rows + halo;
  const double pad_bytes = double(d.Cg) * double(R) * double(Wp) * sizeof(float);
  if (pad_bytes > double(kMaxPadBytes)) return false;
  const std::size_t pad_elems = static_cast<std::size_t>(d.Cg * R * Wp);

  const float* xs = x.ptr<float>();
  const float* ws = w.ptr<float>();
  const float* bs = b ? b->ptr<float>() : nullptr;
  float* ys = y.ptr<float>();
  const int64_t CKK = d.Cg * d.KH * d.KW;
  float* packed = nullptr;  // channel-vectorized, per group: weights [CKK, OCp], then the bias [OCp]
  // each kernel tap's input offset within a channel (DirectRows::toff)
  int64_t* toff = workspace_as<int64_t>(static_cast<std::size_t>(d.KH * d.KW), kSlotOffsets);
  for (int64_t kp = 0, t = 0; kp < d.KH; ++kp)
    for (int64_t q = 0; q < d.KW; ++q, ++t) toff[t] = kp * p.dil_h * Wp + q * p.dil_w;
  if (by_channel) {
    if (double(d.G) * double(CKK + 1) * double(OCp) * sizeof(float) > double(kMaxPadBytes)) return false;
    packed = workspace_as<float>(static_cast<std::size_t>(d.G * (CKK + 1) * OCp), kSlotPacked);
    for (int64_t g = 0; g < d.G; ++g) {
      float* wt = packed + g * (CKK + 1) * OCp;
      for (int64_t k = 0; k < CKK; ++k)
        for (int64_t o = 0; o < OCp; ++o) wt[k * OCp + o] = o < d.OCg ? ws[(g * d.OCg + o) * CKK + k] : 0.0f;
      for (int64_t o = 0; o < OCp; ++o) wt[CKK * OCp + o] = bs && o < d.OCg ? bs[g * d.OCg + o] : 0.0f;
    }
  }
  // Pixel-vectorized: per group, blocks of 6 output channels as [CKK][6] (zero padded), so a tile's
  // weights for one tap are 6 consecutive floats from one pointer, where they were 6 rows CKK apart
  // (LeNet conv2's data gradient 0.96, conv1 forward 0.92 of the time, 1 thread, interleaved).
  const int64_t nblk = (d.OCg + 5) / 6;
  if (!by_channel) {
    if (double(d.G) * double(nblk * 6) * double(CKK) * sizeof(float) > double(kMaxPadBytes)) return false;
    packed = workspace_as<float>(static_cast<std::size_t>(d.G * nblk * 6 * CKK), kSlotPacked);
    for (int64_t g = 0; g < d.G; ++g)
      for (int64_t blk = 0; blk < nblk; ++blk) {
        float* dst = packed + (g * nblk + blk) * 6 * CKK;
        for (int64_t k = 0; k < CKK; ++k)
          for (int64_t o = 0; o < 6; ++o) {
            const int64_t oc = blk * 6 + o;
            dst[k * 6 + o] = oc < d.OCg ? ws[(g * d.OCg + oc) * CKK + k] : 0.0f;
          }
      }
  }
  const int64_t tasks = groups_total * bands;
  run_threads(nt, [&](int t, int T) {
    const int64_t chunk = (tasks + T - 1) / T, t0 = t * chunk, t1 = std::min(tasks, t0 + chunk);
    if (t0 >= t1) return;
    float* buf = workspace_as<float>(pad_elems, kSlotPad);
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t ng = task / bands, band = task % bands, n = ng / d.G, g = ng % d.G;
      const int64_t i0 = band * band_rows, i1 = std::min(d.OH, i0 + band_rows);
      if (i0 >= i1) continue;
      // buffer row r of channel c = padded row i0 + r = input row i0 + r - pad_h
      const int64_t rows = (i1 - i0) + halo;
      for (int64_t c = 0; c < d.Cg; ++c) {
        const float* xc = xs + ((n * d.C) + g * d.Cg + c) * d.H * d.W;
        for (int64_t r = 0; r < rows; ++r) {
          float* dst = buf + (c * R + r) * Wp;
          const int64_t h = i0 + r - p.pad_h;
          if (h < 0 || h >= d.H) {
            std::fill(dst, dst + Wp, 0.0f);
            continue;
          }
          std::fill(dst, dst + p.pad_w, 0.0f);
          std::copy(xc + h * d.W, xc + (h + 1) * d.W, dst + p.pad_w);
          std::fill(dst + p.pad_w + d.W, dst + Wp, 0.0f);
        }
      }
      DirectRows a;
      a.xpad = buf, a.Wp = Wp, a.R = R, a.row0 = i0;
      a.b = bs ? bs + g * d.OCg : nullptr;
      a.y = ys + (n * d.OC + g * d.OCg) * d.OH * d.OW;
      a.Cg = d.Cg, a.OCg = d.OCg, a.KH = d.KH, a.KW = d.KW, a.dh = p.dil_h, a.dw = p.dil_w;
      a.OH = d.OH, a.OW = d.OW;
      a.H = d.H, a.ph = p.pad_h;
      a.toff = toff;
      if (by_channel) {
        a.wt = packed + g * (CKK + 1) * OCp;
        a.bt = a.wt + CKK * OCp;
        a.OCp = OCp;
        conv2d_direct_rows_oc_avx2(a, i0, i1);
      } else {
        a.wt = packed + g * nblk * 6 * CKK;
        a.bt = nullptr;
        a.OCp = 0;
        conv2d_direct_rows_avx2(a, i0, i1);
      }
    }
  });
  return true;
#else
  return false;
#endif
}

// Stride 1: dx[n, c] = sum over o, p, q of dy[n, o, h + ph - p*dh, w + pw - q*dw] * w[o, c, p, q], a
// forward convolution of dy with the flipped filters (flip_for_data_grad, conv2d_impl.h). The
// forward direct kernel computes it (and decides, by its own rules, whether it should).
bool backward_data_direct(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p, bool forced) {
  if (dy.dtype != DType::Float32 || p.stride_h != 1 || p.stride_w != 1 || !have_kernel()) return false;
  const Dims d = dims_of(dx, w, dy, p);
  const Conv2dParams q = data_grad_as_forward_params(d, p);
  if (q.pad_h < 0 || q.pad_w < 0) return false;  // padding wider than the dilated kernel
  // auto: the flipped problem has Cg output channels; with very few, each input load feeds too few
  // FMAs (measured: LeNet conv1, Cg = 1, 7% slower than the GEMM path; conv2, Cg = 6, 15% faster)
  if (!forced && d.Cg < kMinDataChannels) return false;
#if defined(__x86_64__) || defined(_M_X64)
  // the flipped problem's output is dx (width W, Cg channels per group): decline before flipping
  if (!forced && direct_declines(d.W, d.Cg)) return false;
#endif
  if (double(d.C) * double(d.OCg * d.KH * d.KW) * sizeof(float) > double(kMaxPadBytes)) return false;
  float* wt = workspace_as<float>(static_cast<std::size_t>(d.C * d.OCg * d.KH * d.KW), kSlotFlipped);
  flip_for_data_grad(d, w.ptr<float>(), wt, 1);
  Tensor tw;
  tw.data = wt, tw.dtype = DType::Float32, tw.device = Device::CPU, tw.ndim = 4;
  tw.shape[0] = d.C, tw.shape[1] = d.OCg, tw.shape[2] = d.KH, tw.shape[3] = d.KW;
  return forward_direct(dy, tw, nullptr, dx, q, forced);
}

bool backward_weight_direct(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p, bool forced) {
  if (x.dtype != DType::Float32 || p.stride_h != 1 || p.stride_w != 1 || !have_kernel()) return false;
  const Dims d = dims_of(x, dw, dy, p);
  if (d.KW > kMaxWeightKW) return false;
#if defined(__x86_64__) || defined(_M_X64)
  // Pixel- or channel-vectorized kernel: whichever fills more vector lanes (ties: pixels).
  const int64_t OW8 = (d.OW + 7) / 8 * 8, OCp = (d.OCg + 7) / 8 * 8;
  const double fill_px = double(d.OW) / double(OW8), fill_oc = double(d.OCg) / double(OCp);
  const bool by_channel = fill_oc > fill_px;
  if (!forced && (d.OCg > kMaxDirectOCg || std::max(fill_px, fill_oc) < kMinWeightLaneFill)) return false;
  // The zero-padded input, shared by all threads: [N, C, Hp, Wp], wide enough for whole 8-pixel
  // vectors at every tap (the last vector of a row is masked in the kernel).
  const int64_t Hp = d.H + 2 * p.pad_h;
  const int64_t Wp = std::max(d.W + 2 * p.pad_w, OW8 + (d.KW - 1) * p.dil_w);
  if (double(d.N) * double(d.C) * double(Hp) * double(Wp) * sizeof(float) > double(kMaxPadBytes)) return false;
  float* xpad = workspace_as<float>(static_cast<std::size_t>(d.N * d.C * Hp * Wp), kSlotPad);
  const float* xs = x.ptr<float>();
  const double macs = double(d.N) * double(d.OC) * double(d.OH * d.OW) * double(d.Cg * d.KH * d.KW);
  const int nt = threads_for(macs);
  maybe_parallel(d.N * d.C, nt, [&](int64_t b, int64_t e) {
    for (int64_t plane = b; plane < e; ++plane) {
      float* dst = xpad + plane * Hp * Wp;
      const float* src = xs + plane * d.H * d.W;
      std::fill(dst, dst + p.pad_h * Wp, 0.0f);
      for (int64_t h = 0; h < d.H; ++h) {
        float* row = dst + (p.pad_h + h) * Wp;
        std::fill(row, row + p.pad_w, 0.0f);
        std::copy(src + h * d.W, src + (h + 1) * d.W, row + p.pad_w);
        std::fill(row + p.pad_w + d.W, row + Wp, 0.0f);
      }
      std::fill(dst + (p.pad_h + d.H) * Wp, dst + Hp * Wp, 0.0f);
    }
  });
  DirectWeightRows a;
  a.xpad = xpad, a.C = d.C, a.Hp = Hp, a.Wp = Wp;
  a.dy = dy.ptr<float>(), a.N = d.N, a.OC = d.OC, a.OH = d.OH, a.OW = d.OW;
  a.dw = dw.ptr<float>(), a.Cg = d.Cg, a.KH = d.KH, a.KW = d.KW, a.dh = p.dil_h, a.dw_dil = p.dil_w;
  a.dyt = nullptr, a.OCg = d.OCg, a.OCp = OCp;
  if (by_channel) {  // dy as [G, N, OH, OW, OCp]: one vector load per pixel and 8 channels
    const int64_t P = d.OH * d.OW;
    if (double(d.G) * double(d.N) * double(P) * double(OCp) * sizeof(float) > double(kMaxPadBytes)) return false;
    float* dyt = workspace_as<float>(static_cast<std::size_t>(d.G * d.N * P * OCp), kSlotPacked);
    const float* gs = dy.ptr<float>();
    maybe_parallel(d.G * d.N, nt, [&](int64_t b, int64_t e) {
      for (int64_t gn = b; gn < e; ++gn) {
        const int64_t g = gn / d.N, n = gn % d.N;
        float* dst = dyt + gn * P * OCp;
        const float* src = gs + (n * d.OC + g * d.OCg) * P;
        for (int64_t px = 0; px < P; ++px)
          for (int64_t o = 0; o < OCp; ++o) dst[px * OCp + o] = o < d.OCg ? src[o * P + px] : 0.0f;
      }
    });
    a.dyt = dyt;
    const int64_t rows = d.G * d.Cg * d.KH;
    maybe_parallel(rows, nt, [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) {
        const int64_t g = row / (d.Cg * d.KH), cl = row / d.KH % d.Cg, kr = row % d.KH;
        conv2d_direct_weight_oc_avx2(a, g, cl, g * d.Cg + cl, kr);
      }
    });
    return true;
  }
  // Tasks: (group, input channel, kernel row, chunk of the group's output channels); the channels
  // are split only when there are too few tasks to go round the threads. Every task writes its own
  // dw entries, each summed in one fixed order: results do not depend on the thread count at all.
  const int64_t rows = d.G * d.Cg * d.KH;
  const int64_t chunks = std::clamp<int64_t>((4 * int64_t(nt) + rows - 1) / rows, 1, d.OCg);
  const int64_t per_chunk = (d.OCg + chunks - 1) / chunks;
  const int64_t tasks = rows * chunks;
  maybe_parallel(tasks, nt, [&](int64_t t0, int64_t t1) {
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t row = task / chunks, chunk = task % chunks;
      const int64_t g = row / (d.Cg * d.KH), cl = row / d.KH % d.Cg, kr = row % d.KH;
      const int64_t o0 = chunk * per_chunk, o1 = std::min(d.OCg, o0 + per_chunk);
      if (o0 < o1) conv2d_direct_weight_avx2(a, g * d.OCg + o0, o1 - o0, cl, g * d.Cg + cl, kr);
    }
  });
  return true;
#else
  (void)forced;
  return false;
#endif
}

}  // namespace conv2d_detail
}  // namespace convkit
