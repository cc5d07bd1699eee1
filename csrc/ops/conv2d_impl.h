// conv2d_impl.h: conv2d's CPU implementations, internal to csrc/ops/conv2d*.cpp.
//
// Implementations in order of preference; conv2d.cpp tries them in this order, each returning false
// (declining, having written nothing) for shapes it cannot or should not take:
//   conv2d_winograd.cpp all three passes of 3 x 3 stride-1 convs with 32+ channels per group (auto
//                      mode only): Winograd's F(2 x 2, 3 x 3), 16 GEMMs over the channels doing
//                      2.25 times fewer multiply-adds; CONVKIT_CONV_WINOGRAD=0 / 1 forces it off / on.
//   conv2d_winograd_rows.cpp the same for 5-wide stride-1 kernels (AlexNet conv2's 5 x 5): F(2, 5)
//                      along the rows, the kernel's rows summed directly; 6 GEMMs over (kernel row,
//                      channel) doing 1.67 times fewer multiply-adds. The same switch.
//   conv2d_direct.cpp  forward, backward data and weight: register-blocked direct convolution (AVX2
//                      kernels in conv2d_direct_avx2.cpp) for float, stride-1 convs with few output
//                      channels per group, where im2col + GEMM would spend most of its time copying.
//   conv2d_indirect.cpp forward only: an indirect GEMM (6-pixel x 16-channel AVX2 tiles reading the
//                      input in place from a channel-last copy) for float32 kernels of 25+ taps; the
//                      GEMM path's data gradient also runs through it when it takes the flipped problem.
//   conv2d_gemm.cpp    im2col (skipped for 1x1 stride-1 unpadded convs) + convkit::gemm; declines
//                      only when its scratch would be unreasonably large.
//   conv2d_ref.cpp     plain loops straight from the formula in conv2d.h. Handles every shape; it is
//                      the specification the others are tested against (CONVKIT_CONV_IMPL=ref).
// All arguments are already checked (conv2d_check) when these run; every function overwrites its
// output. Helpers shared by the baseline (non-ISA) files are at the end.
#pragma once

#include <algorithm>
#include <exception>
#include <vector>

#include "convkit/parallel.h"
#include "ops/conv2d.h"

namespace convkit {
namespace conv2d_detail {

// Sizes of one checked problem, read from the tensors.
struct Dims {
  int64_t N, C, H, W;      // input  [N, C, H, W]
  int64_t OC, KH, KW;      // weight [OC, C/groups, KH, KW]
  int64_t OH, OW;          // output [N, OC, OH, OW]
  int64_t G, Cg, OCg;      // groups, input and output channels per group
};
Dims dims_of(const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dParams& p);

void forward_ref(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p);
void backward_data_ref(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p);
void backward_weight_ref(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p);

// The direct path (conv2d_direct.cpp): float, stride 1, AVX2. `forced`: CONVKIT_CONV_IMPL=direct,
// take every shape the kernel supports, not only those where it beats the GEMM path.
bool forward_direct(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p,
                    bool forced);
// Backward weight, direct (float, stride 1, AVX2, kernel width <= 7): per (input channel, kernel
// row) the taps' sums over the batch in vector registers, from one zero-padded copy of x. For small
// convs (LeNet conv1: 25 weights per channel, 784 pixels per image) the GEMM path's per-image
// products are too small to amortize their packing.
bool backward_weight_direct(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p, bool forced);
// Backward data, direct (stride 1, padding <= dilation * (kernel - 1)): the forward direct kernel on
// dy with the weights flipped and transposed (a "full" convolution); declines as forward_direct does.
bool backward_data_direct(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p, bool forced);

// Forward as an indirect GEMM (conv2d_indirect.cpp): float on AVX2, output channels per group a
// multiple of 16; in auto mode only where it beats the GEMM path's im2col (see the file). Declines
// (false, nothing written) otherwise; CONVKIT_CONV_INDIRECT=0 / 1 forces it off / on where it can.
bool forward_indirect(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p);
// Whether forward_indirect takes a problem of these sizes (the data gradient's choice asks it).
bool indirect_takes(const Dims& d, const Conv2dParams& p, DType dtype);

// Winograd F(2 x 2, 3 x 3) (conv2d_winograd.cpp): 3 x 3 kernels, stride and dilation 1, padding
// <= 2; in auto mode float32 with 32+ input and output channels per group and at least as many
// images as threads. Declines (false, nothing written) otherwise.
bool forward_winograd(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p);
bool backward_data_winograd(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p);
bool backward_weight_winograd(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p);

// CONVKIT_CONV_WINOGRAD, read by both Winograd routes: 0 = never, 1 = wherever the shape allows
// (the tests run both ways), -1 (unset or anything else) = auto mode's choice.
int winograd_setting();
// The Winograd weight gradients' per-thread partial sums (null where a thread had no images), added
// up in thread order into the first one's, which is returned: the same order whatever the timing.
template <class T>
T* sum_in_thread_order(const std::vector<T*>& partial, int64_t size, int nt) {
  T* total = nullptr;
  for (T* p : partial) {
    if (!p) continue;
    if (!total) {
      total = p;
      continue;
    }
    maybe_parallel(size, nt, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) total[i] += p[i];
    });
  }
  return total;
}

// Winograd F(2, 5) along the rows (conv2d_winograd_rows.cpp): 5-wide kernels of any height, stride
// and dilation 1, padding <= 4 across and < the kernel's height down; in auto mode float32 5 x 5
// with 32+ input and 64+ output channels per group. Declines (false, nothing written) otherwise.
bool forward_winograd_rows(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y,
                           const Conv2dParams& p);
bool backward_data_winograd_rows(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p);
bool backward_weight_winograd_rows(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p);

// The GEMM path: returns false (and writes nothing) when it declines the shape.
bool forward_gemm(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p);
bool backward_data_gemm(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p);
bool backward_weight_gemm(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p);

// The channel-last, zero-bordered copy of one image-group that the indirect forward reads and the
// weight gradient's tap-major packer copies from: xt[((h + pad_h) * Wp + w + pad_w) * cs + c] =
// xg[c][h][w] for c < Cg (Wp = W + 2 pad_w; the border pixels zero, the channels past Cg unset).
// cs: channel_last_stride(Cg), Cg rounded up to whole 64-byte lines, and to an odd number of them
// (rows one pixel apart then spread over L1's sets).
inline int64_t channel_last_stride(int64_t cg) {
  const int64_t lines = (cg + 15) / 16;
  return (lines % 2 ? lines : lines + 1) * 16;
}
struct ChannelLast {
  int64_t Hp, Wp, cs;  // the copy: [Hp][Wp][cs]
  int64_t elems() const { return Hp * Wp * cs; }
};
inline ChannelLast channel_last_layout(const Dims& d, const Conv2dParams& p) {
  return {d.H + 2 * p.pad_h, d.W + 2 * p.pad_w, channel_last_stride(d.Cg)};
}
// toff[kh * KW + kw]: kernel tap (kh, kw)'s offset in the copy from a pixel's window origin.
inline void channel_last_taps(const Dims& d, const Conv2dParams& p, const ChannelLast& L, int64_t* toff) {
  for (int64_t kh = 0; kh < d.KH; ++kh)
    for (int64_t kw = 0; kw < d.KW; ++kw) toff[kh * d.KW + kw] = (kh * p.dil_h * L.Wp + kw * p.dil_w) * L.cs;
}
template <class T>
void channel_last(const Dims& d, const Conv2dParams& p, int64_t cs, const T* xg, T* xt) {
  const int64_t ph = p.pad_h, pw = p.pad_w, Hp = d.H + 2 * ph, Wp = d.W + 2 * pw;
  for (int64_t h = 0; h < Hp; ++h) {
    const bool inside = h >= ph && h < ph + d.H;
    for (int64_t w = 0; w < Wp; ++w)
      if (!inside || w < pw || w >= pw + d.W) std::fill(xt + (h * Wp + w) * cs, xt + (h * Wp + w) * cs + d.Cg, T(0));
  }
  // 8 channels at a time: 8 source rows read side by side, each destination pixel written 8
  // channels at a time
  const int64_t HW = d.H * d.W;
  for (int64_t c0 = 0; c0 < d.Cg; c0 += 8) {
    const int64_t cn = std::min<int64_t>(8, d.Cg - c0);
    for (int64_t h = 0; h < d.H; ++h) {
      T* row = xt + ((h + ph) * Wp + pw) * cs + c0;
      const T* src = xg + c0 * HW + h * d.W;
      for (int64_t w = 0; w < d.W; ++w) {
        T* dst = row + w * cs;
        for (int64_t c = 0; c < cn; ++c) dst[c] = src[c * HW + w];
      }
    }
  }
}

// Runs f(t, T) on up to nt threads; an exception in any thread is rethrown here (an exception must
// not leave an OpenMP region).
template <class F>
void run_threads(int nt, F&& f) {
  if (nt <= 1) {
    f(0, 1);
    return;
  }
  std::exception_ptr err;
#pragma omp parallel num_threads(nt)
  {
    int t = 0, T = 1;
#ifdef _OPENMP
    t = omp_get_thread_num();
    T = omp_get_num_threads();
#endif
    try {
      f(t, T);
    } catch (...) {
#pragma omp critical(convkit_conv2d_error)
      if (!err) err = std::current_exception();
    }
  }
  if (err) std::rethrow_exception(err);
}

// Calls f(begin, end) over [0, n) on `threads` threads (1: inline; 0: all), in contiguous chunks.
template <class F>
void maybe_parallel(int64_t n, int threads, F&& f) {
  if (threads == 1 || n <= 1) {
    f(int64_t(0), n);
    return;
  }
  run_threads(threads > 0 ? threads : num_threads(), [&](int t, int T) {
    const int64_t chunk = (n + T - 1) / T, b = t * chunk, e = std::min(n, b + chunk);
    if (b < e) f(b, e);
  });
}

// Stride 1: the data gradient is a forward convolution of dy with the filters flipped in space and
// their in/out channels swapped per group, wt[g*Cg + c, o, KH-1-p, KW-1-q] = w[g*OCg + o, c, p, q]
// (wt has d.OC * d.Cg * KH * KW values), padded by dil*(K-1) - pad. Used by the direct path and by
// the GEMM path's data_grad_as_forward. Rows of wt split over `threads` (as maybe_parallel).
template <class T>
void flip_for_data_grad(const Dims& d, const T* w, T* wt, int threads) {
  const int64_t KK = d.KH * d.KW;
  maybe_parallel(d.G * d.OCg, threads, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {  // r = g * OCg + o: one output channel's filters
      const int64_t g = r / d.OCg, o = r % d.OCg;
      for (int64_t c = 0; c < d.Cg; ++c) {
        const T* src = w + (r * d.Cg + c) * KK;
        T* dst = wt + ((g * d.Cg + c) * d.OCg + o) * KK;
        for (int64_t k = 0; k < KK; ++k) dst[KK - 1 - k] = src[k];  // (p, q) -> (KH-1-p, KW-1-q)
      }
    }
  });
}

inline Conv2dParams data_grad_as_forward_params(const Dims& d, const Conv2dParams& p) {
  Conv2dParams q = p;
  q.pad_h = p.dil_h * (d.KH - 1) - p.pad_h;
  q.pad_w = p.dil_w * (d.KW - 1) - p.pad_w;
  return q;
}

// Threads for a call of `macs` multiply-adds: one per kMinMacsPerThread (waking a team for less
// costs more than it saves), at most convkit::num_threads().
constexpr double kMinMacsPerThread = 1 << 16;
inline int threads_for(double macs) {
  return static_cast<int>(std::clamp(macs / kMinMacsPerThread, 1.0, double(num_threads())));
}

}  // namespace conv2d_detail
}  // namespace convkit
