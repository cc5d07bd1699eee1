// conv2d reference: plain loops straight from the formula in conv2d.h, float and double. The
// specification the fast paths are tested against, and the fallback for any shape they decline.
//
// Parallel decomposition: one task per output plane, so every output element is computed by one
// thread, in one fixed order (results do not depend on the thread count):
//   forward          one task per (n, o) plane of y, summing over c, p, q for each (i, j);
//   backward data    one task per (n, c) plane of dx, gathering every (o, p, q) whose window covers
//                    the pixel (a gather, not a scatter, so no two tasks write one element);
//   backward weight  one task per (o, c') filter, summing over n, i, j for each (p, q).
#include "convkit/parallel.h"
#include "ops/conv2d_impl.h"

namespace convkit {
namespace conv2d_detail {

Dims dims_of(const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dParams& p) {
  Dims d;
  d.N = x.shape[0], d.C = x.shape[1], d.H = x.shape[2], d.W = x.shape[3];
  d.OC = w.shape[0], d.KH = w.shape[2], d.KW = w.shape[3];
  d.OH = y.shape[2], d.OW = y.shape[3];
  d.G = p.groups, d.Cg = d.C / d.G, d.OCg = d.OC / d.G;
  return d;
}

namespace {

// y[n, o, i, j] = b[o] + sum_{c', p, q} x[n, g*Cg + c', i*sh - ph + p*dh, j*sw - pw + q*dw] * w[o, c', p, q]
template <class T>
void forward_ref_t(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p) {
  const Dims d = dims_of(x, w, y, p);
  const T* xs = x.ptr<T>();
  const T* ws = w.ptr<T>();
  const T* bs = b ? b->ptr<T>() : nullptr;
  T* ys = y.ptr<T>();
  parallel_for(d.N * d.OC, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / d.OC, o = t % d.OC, g = o / d.OCg;
      const T* wo = ws + o * d.Cg * d.KH * d.KW;
      T* yo = ys + t * d.OH * d.OW;
      for (int64_t i = 0; i < d.OH; ++i) {
        for (int64_t j = 0; j < d.OW; ++j) {
          T acc = bs ? bs[o] : T(0);
          for (int64_t c = 0; c < d.Cg; ++c) {
            const T* xc = xs + (n * d.C + g * d.Cg + c) * d.H * d.W;
            for (int64_t kp = 0; kp < d.KH; ++kp) {
              const int64_t h = i * p.stride_h - p.pad_h + kp * p.dil_h;
              if (h < 0 || h >= d.H) continue;  // zero padding
              for (int64_t kq = 0; kq < d.KW; ++kq) {
                const int64_t v = j * p.stride_w - p.pad_w + kq * p.dil_w;
                if (v < 0 || v >= d.W) continue;
                acc += xc[h * d.W + v] * wo[(c * d.KH + kp) * d.KW + kq];
              }
            }
          }
          yo[i * d.OW + j] = acc;
        }
      }
    }
  });
}

// dx[n, c, h, v] = sum over o in c's group and (p, q) with h = i*sh - ph + p*dh, v = j*sw - pw + q*dw
// for some output position (i, j) of dy[n, o, i, j] * w[o, c', p, q].
template <class T>
void backward_data_ref_t(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p) {
  const Dims d = dims_of(dx, w, dy, p);
  const T* gs = dy.ptr<T>();
  const T* ws = w.ptr<T>();
  T* dxs = dx.ptr<T>();
  parallel_for(d.N * d.C, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n = t / d.C, c = t % d.C, g = c / d.Cg, cg = c % d.Cg;
      T* dxc = dxs + t * d.H * d.W;
      for (int64_t h = 0; h < d.H; ++h) {
        for (int64_t v = 0; v < d.W; ++v) {
          T acc = T(0);
          for (int64_t o = g * d.OCg; o < (g + 1) * d.OCg; ++o) {
            const T* go = gs + (n * d.OC + o) * d.OH * d.OW;
            const T* wo = ws + (o * d.Cg + cg) * d.KH * d.KW;
            for (int64_t kp = 0; kp < d.KH; ++kp) {
              const int64_t hi = h + p.pad_h - kp * p.dil_h;  // = i * stride_h
              if (hi < 0 || hi % p.stride_h != 0 || hi / p.stride_h >= d.OH) continue;
              const int64_t i = hi / p.stride_h;
              for (int64_t kq = 0; kq < d.KW; ++kq) {
                const int64_t vj = v + p.pad_w - kq * p.dil_w;  // = j * stride_w
                if (vj < 0 || vj % p.stride_w != 0 || vj / p.stride_w >= d.OW) continue;
                const int64_t j = vj / p.stride_w;
                acc += go[i * d.OW + j] * wo[kp * d.KW + kq];
              }
            }
          }
          dxc[h * d.W + v] = acc;
        }
      }
    }
  });
}

// dw[o, c', p, q] = sum_{n, i, j} dy[n, o, i, j] * x[n, g*Cg + c', i*sh - ph + p*dh, j*sw - pw + q*dw]
template <class T>
void backward_weight_ref_t(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p) {
  const Dims d = dims_of(x, dw, dy, p);
  const T* xs = x.ptr<T>();
  const T* gs = dy.ptr<T>();
  T* dws = dw.ptr<T>();
  parallel_for(d.OC * d.Cg, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t o = t / d.Cg, cg = t % d.Cg, c = o / d.OCg * d.Cg + cg;
      for (int64_t kp = 0; kp < d.KH; ++kp) {
        for (int64_t kq = 0; kq < d.KW; ++kq) {
          T acc = T(0);
          for (int64_t n = 0; n < d.N; ++n) {
            const T* go = gs + (n * d.OC + o) * d.OH * d.OW;
            const T* xc = xs + (n * d.C + c) * d.H * d.W;
            for (int64_t i = 0; i < d.OH; ++i) {
              const int64_t h = i * p.stride_h - p.pad_h + kp * p.dil_h;
              if (h < 0 || h >= d.H) continue;
              for (int64_t j = 0; j < d.OW; ++j) {
                const int64_t v = j * p.stride_w - p.pad_w + kq * p.dil_w;
                if (v < 0 || v >= d.W) continue;
                acc += go[i * d.OW + j] * xc[h * d.W + v];
              }
            }
          }
          dws[(t * d.KH + kp) * d.KW + kq] = acc;
        }
      }
    }
  });
}

}  // namespace

void forward_ref(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p) {
  CONVKIT_DISPATCH_FLOAT(x.dtype, "conv2d_forward", [&] { forward_ref_t<scalar_t>(x, w, b, y, p); });
}

void backward_data_ref(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p) {
  CONVKIT_DISPATCH_FLOAT(dy.dtype, "conv2d_backward_data", [&] { backward_data_ref_t<scalar_t>(dy, w, dx, p); });
}

void backward_weight_ref(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p) {
  CONVKIT_DISPATCH_FLOAT(x.dtype, "conv2d_backward_weight", [&] { backward_weight_ref_t<scalar_t>(x, dy, dw, p); });
}

}  // namespace conv2d_detail
}  // namespace convkit
