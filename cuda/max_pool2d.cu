// max_pool2d on CUDA (conventions in csrc/ops/max_pool2d.h: -inf padding, ceil_mode, int64 argmax as
// row * W + col within the plane, ties to the first element in row-major window order).
//
// Forward: one thread per output element (n, c, oh, ow), ow fastest so a warp's loads and stores are
// coalesced; the window is clamped to the image (padding is never chosen). A NaN in the window wins
// (PyTorch's rule: max is NaN and its index is the last NaN).
//
// Backward, deterministic gather: one thread per input element (n, c, ih, iw) visits the output
// windows that contain it, in increasing (oh, ow) order, and adds dy where the recorded argmax is this
// element. No atomics, so the sum order is fixed (the same order a scatter over the outputs in
// row-major order uses). Indices a user passes are only compared, never used to address memory, so a
// corrupt index cannot write out of bounds (it just routes no gradient).
#include "common.cuh"
#include "ops/max_pool2d.h"

namespace convkit {
namespace {

struct PoolShape {
  int H, W, OH, OW, kh, kw, sh, sw, ph, pw;
};

// The max of a KH x KW window at (hs, ws), in the same row-major order and with the same NaN and tie
// rules as the general loop below; the loads are issued together instead of one per iteration (with
// one load in flight per thread the forward ran at 45% of the copy bandwidth on an H200).
template <int KH, int KW, class T>
__device__ __forceinline__ void window_max(const T* __restrict__ xp, int W, int hs, int ws, T* best, int* best_i) {
  T v[KH][KW];
#pragma unroll
  for (int a = 0; a < KH; ++a)
#pragma unroll
    for (int b = 0; b < KW; ++b) v[a][b] = xp[(hs + a) * W + ws + b];
  T m = v[0][0];
  int mi = 0;
#pragma unroll
  for (int a = 0; a < KH; ++a)
#pragma unroll
    for (int b = 0; b < KW; ++b)
      if ((a | b) && (v[a][b] > m || v[a][b] != v[a][b])) {
        m = v[a][b];
        mi = a * W + b;
      }
  *best = m;
  *best_i = hs * W + ws + mi;
}

template <class T>
__global__ void max_pool_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t* __restrict__ idx, int64_t total,
                                    PoolShape s) {
  const int ohw = s.OH * s.OW;
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    const int64_t nc = i / ohw;
    const int p = static_cast<int>(i - nc * ohw);
    const int oh = p / s.OW, ow = p - oh * s.OW;
    const int h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
    const int hs = dmax(h0, 0), ws = dmax(w0, 0);
    const int he = dmin(h0 + s.kh, s.H), we = dmin(w0 + s.kw, s.W);
    const T* xp = x + nc * s.H * s.W;
    if (hs >= he || ws >= we) {  // cannot happen for shapes the entry point accepts; never read outside
      y[i] = T(-INFINITY);
      idx[i] = -1;
      continue;
    }
    int best_i = hs * s.W + ws;
    T best;
    if (he - hs == 3 && we - ws == 3) {  // AlexNet's 3x3 windows away from the border: all 9 loads in flight
      window_max<3, 3>(xp, s.W, hs, ws, &best, &best_i);
    } else if (he - hs == 2 && we - ws == 2) {  // LeNet's 2x2
      window_max<2, 2>(xp, s.W, hs, ws, &best, &best_i);
    } else {
      best = xp[best_i];
      for (int ih = hs; ih < he; ++ih) {
        const T* row = xp + ih * s.W;
        for (int iw = ws; iw < we; ++iw) {
          const T v = row[iw];
          if (v > best || v != v) {
            best = v;
            best_i = ih * s.W + iw;
          }
        }
      }
    }
    y[i] = best;
    idx[i] = best_i;
  }
}

template <class T>
__global__ void max_pool_bwd_kernel(const T* __restrict__ dy, const int64_t* __restrict__ idx, T* __restrict__ dx,
                                    int64_t total, PoolShape s) {
  const int hw = s.H * s.W, ohw = s.OH * s.OW;
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    const int64_t nc = i / hw;
    const int p = static_cast<int>(i - nc * hw);
    const int ih = p / s.W, iw = p - ih * s.W;
    // windows oh with oh*sh - ph <= ih < oh*sh - ph + kh
    const int hp = ih + s.ph, wp = iw + s.pw;
    const int oh_lo = hp < s.kh ? 0 : (hp - s.kh) / s.sh + 1, oh_hi = dmin(hp / s.sh, s.OH - 1);
    const int ow_lo = wp < s.kw ? 0 : (wp - s.kw) / s.sw + 1, ow_hi = dmin(wp / s.sw, s.OW - 1);
    const int64_t base = nc * ohw;
    T acc = T(0);
    if (oh_hi - oh_lo <= 1 && ow_hi - ow_lo <= 1) {
      // At most 2 x 2 windows (kernel <= 2 x stride, as in 3x3/2 and 2x2/2 pooling): the four (idx, dy)
      // pairs are loaded together (rows and columns clamped into range, missing ones masked to +0,
      // which leaves the sum unchanged), then added in the same (oh, ow) order as the loop below.
      const int oh1 = dmax(oh_hi, oh_lo), ow1 = dmax(ow_hi, ow_lo);
      const int64_t o[4] = {base + oh_lo * s.OW + ow_lo, base + oh_lo * s.OW + ow1, base + oh1 * s.OW + ow_lo,
                            base + oh1 * s.OW + ow1};
      const bool in[4] = {oh_lo <= oh_hi && ow_lo <= ow_hi, oh_lo <= oh_hi && ow_lo < ow_hi,
                          oh_lo < oh_hi && ow_lo <= ow_hi, oh_lo < oh_hi && ow_lo < ow_hi};
      int64_t id[4];
      T d[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        id[e] = in[e] ? idx[o[e]] : -1;
        d[e] = in[e] ? dy[o[e]] : T(0);
      }
#pragma unroll
      for (int e = 0; e < 4; ++e) acc += id[e] == p ? d[e] : T(0);
      dx[i] = acc;
      continue;
    }
    for (int oh = oh_lo; oh <= oh_hi; ++oh)
      for (int ow = ow_lo; ow <= ow_hi; ++ow) {
        const int64_t o = base + oh * s.OW + ow;
        if (idx[o] == p) acc += dy[o];
      }
    dx[i] = acc;
  }
}

constexpr int kBlock = 256;

PoolShape make_shape(const char* op, const Tensor& x, const Tensor& y, const Pool2dParams& p) {
  auto i32 = [op](int64_t v, const char* what) {
    check_fits_int32(v, op, what);
    return static_cast<int>(v);
  };
  PoolShape s;
  s.H = i32(x.shape[2], "height");
  s.W = i32(x.shape[3], "width");
  s.OH = i32(y.shape[2], "output height");
  s.OW = i32(y.shape[3], "output width");
  s.kh = i32(p.kernel_h, "kernel");
  s.kw = i32(p.kernel_w, "kernel");
  s.sh = i32(p.stride_h, "stride");
  s.sw = i32(p.stride_w, "stride");
  s.ph = i32(p.pad_h, "padding");
  s.pw = i32(p.pad_w, "padding");
  i32(checked_mul(x.shape[2], x.shape[3], op), "H*W");
  i32(checked_mul(y.shape[2], y.shape[3], op), "OH*OW");
  i32(x.shape[2] + 2 * p.pad_h + p.kernel_h + p.stride_h, "padded height");
  i32(x.shape[3] + 2 * p.pad_w + p.kernel_w + p.stride_w, "padded width");
  return s;
}

}  // namespace

void max_pool2d_forward_cuda(const Tensor& x, const Tensor& y, const Tensor& idx, const Pool2dParams& p) {
  const char* op = "max_pool2d_forward";
  cuda_require(op);
  PoolShape s = make_shape(op, x, y, p);
  const int64_t total = y.numel();
  CONVKIT_DISPATCH_FLOAT(x.dtype, op, [&] {
    launch(op, max_pool_fwd_kernel<scalar_t>, grid_for(total, kBlock), kBlock, x.ptr<scalar_t>(), y.ptr<scalar_t>(),
           idx.ptr<int64_t>(), total, s);
  });
}

void max_pool2d_backward_cuda(const Tensor& dy, const Tensor& idx, const Tensor& dx, const Pool2dParams& p) {
  const char* op = "max_pool2d_backward";
  cuda_require(op);
  PoolShape s = make_shape(op, dx, dy, p);
  const int64_t total = dx.numel();
  CONVKIT_DISPATCH_FLOAT(dy.dtype, op, [&] {
    launch(op, max_pool_bwd_kernel<scalar_t>, grid_for(total, kBlock), kBlock, dy.ptr<scalar_t>(),
           idx.ptr<int64_t>(), dx.ptr<scalar_t>(), total, s);
  });
}

}  // namespace convkit
