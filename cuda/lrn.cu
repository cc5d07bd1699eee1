// LRN on CUDA (formula and backward derivation in csrc/ops/lrn.h; alpha is divided by size, the window
// of c is [c - size/2, c + (size-1)/2], channels outside [0, C) contribute zero).
//
// Decomposition (Caffe's): one thread per pixel (n, h, w) slides along the channels, keeping the
// window's running sum; consecutive threads take consecutive w, so every load and store of a warp is
// coalesced. When N*H*W threads would not fill the device, the channels are cut into chunks and each
// thread starts its chunk by summing the window afresh (size extra reads per chunk).
// float: the running sums are kept in double: an entering square is added and a leaving one subtracted
// (in float the cancellation would drift along the channels; in double each float square is exact and
// the drift stays near 2^-53 of the largest window seen, far under float's rounding of the result).
// double: there is no wider type to absorb that drift (on an H200 a window after a much larger one
// came out a few ulps off), so each channel's window is summed afresh: size reads per output, which
// the thread read moments before (L1).
//
//   forward:  s(c) = sum_{c' in [c - size/2, c + (size-1)/2]} x[c']^2
//             scale[c] = k + alpha/size * s(c);  y[c] = x[c] * scale[c]^-beta
//   backward: t(c) = sum_{c' in [c - (size-1)/2, c + size/2]} dy[c'] y[c'] / scale[c']
//             dx[c] = dy[c] * scale[c]^-beta - (2 alpha beta / size) * x[c] * t(c)
#include "common.cuh"
#include "ops/lrn.h"

namespace convkit {
namespace {

__device__ __forceinline__ float pow_(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double pow_(double a, double b) { return pow(a, b); }

// Sum each window afresh instead of sliding it (see the top of the file).
template <class T> constexpr bool kFresh = sizeof(T) >= sizeof(double);

struct LrnShape {
  int C, HW, chunk, nchunks;
  int before, after;  // size/2 and (size-1)/2
  double alpha_over_n, beta, k;
};

// Thread i -> (image n, channel chunk, pixel hw), pixel fastest.
__device__ __forceinline__ void lrn_index(int64_t i, const LrnShape& s, int64_t* nc_base, int* c0, int* c1) {
  const int hw = static_cast<int>(i % s.HW);
  const int64_t r = i / s.HW;
  const int ck = static_cast<int>(r % s.nchunks);
  const int64_t n = r / s.nchunks;
  *nc_base = n * s.C * static_cast<int64_t>(s.HW) + hw;  // element (n, c, hw) is at nc_base + c*HW
  *c0 = ck * s.chunk;
  *c1 = dmin(s.C, *c0 + s.chunk);
}

template <class T>
__global__ void lrn_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ scale, int64_t total,
                               LrnShape s) {
  const T nbeta = static_cast<T>(-s.beta);
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    int64_t base;
    int c0, c1;
    lrn_index(i, s, &base, &c0, &c1);
    const T* xp = x + base;
    double sum = 0;
    if constexpr (!kFresh<T>) {  // sliding: start from the window of c0 without its last element
      for (int c = dmax(c0 - s.before, 0); c < dmin(c0 + s.after, s.C); ++c) {
        const double v = xp[static_cast<int64_t>(c) * s.HW];
        sum += v * v;
      }
    }
    for (int c = c0; c < c1; ++c) {
      const int cin = c + s.after, cout = c - s.before;
      if constexpr (kFresh<T>) {
        sum = 0;
        for (int cc = dmax(cout, 0); cc <= dmin(cin, s.C - 1); ++cc) {
          const double v = xp[static_cast<int64_t>(cc) * s.HW];
          sum += v * v;
        }
      } else if (cin < s.C) {
        const double v = xp[static_cast<int64_t>(cin) * s.HW];
        sum += v * v;
      }
      const T sc = static_cast<T>(s.k + s.alpha_over_n * sum);
      const int64_t o = base + static_cast<int64_t>(c) * s.HW;
      scale[o] = sc;
      y[o] = x[o] * pow_(sc, nbeta);
      if (!kFresh<T> && cout >= 0) {
        const double v = xp[static_cast<int64_t>(cout) * s.HW];
        sum -= v * v;
      }
    }
  }
}

template <class T>
__global__ void lrn_bwd_kernel(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ scale,
                               const T* __restrict__ dy, T* __restrict__ dx, int64_t total, LrnShape s) {
  const T nbeta = static_cast<T>(-s.beta);
  const double coef = 2.0 * s.alpha_over_n * s.beta;
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    int64_t base;
    int c0, c1;
    lrn_index(i, s, &base, &c0, &c1);
    auto ratio = [&](int c) {
      const int64_t o = base + static_cast<int64_t>(c) * s.HW;
      return static_cast<double>(dy[o] * y[o] / scale[o]);  // each term in T, the running sum in double
    };
    double t = 0;
    if constexpr (!kFresh<T>)  // sliding: start from window' of c0 without its last element
      for (int c = dmax(c0 - s.after, 0); c < dmin(c0 + s.before, s.C); ++c) t += ratio(c);
    for (int c = c0; c < c1; ++c) {
      const int cin = c + s.before, cout = c - s.after;
      if constexpr (kFresh<T>) {
        t = 0;
        for (int cc = dmax(cout, 0); cc <= dmin(cin, s.C - 1); ++cc) t += ratio(cc);
      } else if (cin < s.C) {
        t += ratio(cin);
      }
      const int64_t o = base + static_cast<int64_t>(c) * s.HW;
      dx[o] = static_cast<T>(static_cast<double>(dy[o] * pow_(scale[o], nbeta)) - coef * static_cast<double>(x[o]) * t);
      if (!kFresh<T> && cout >= 0) t -= ratio(cout);
    }
  }
}

constexpr int kBlock = 256;

LrnShape make_shape(const char* op, const Tensor& x, const LrnParams& p) {
  LrnShape s;
  check_fits_int32(x.shape[1], op, "channels");
  const int64_t hw = checked_mul(x.shape[2], x.shape[3], op);
  check_fits_int32(hw, op, "H*W");
  CONVKIT_CHECK(p.size >= 1 && p.size <= 1000000, op, ": size must be in [1, 1e6], got ", p.size);
  s.C = static_cast<int>(x.shape[1]);
  s.HW = static_cast<int>(hw);
  s.before = static_cast<int>(p.size / 2);
  s.after = static_cast<int>((p.size - 1) / 2);
  s.alpha_over_n = p.alpha / static_cast<double>(p.size);
  s.beta = p.beta;
  s.k = p.k;
  // enough threads for about 8 waves of 2048 per multiprocessor; chunks of at least 16 channels
  const int64_t pixels = checked_mul(x.shape[0], hw, op);
  const int64_t want = 8LL * 2048 * cuda_sm_count();
  int64_t nchunks = pixels >= want ? 1 : (want + pixels - 1) / pixels;
  const int64_t max_chunks = (s.C + 15) / 16;
  if (nchunks > max_chunks) nchunks = max_chunks;
  if (nchunks < 1) nchunks = 1;
  s.chunk = static_cast<int>((s.C + nchunks - 1) / nchunks);
  s.nchunks = static_cast<int>((s.C + s.chunk - 1) / s.chunk);
  return s;
}

}  // namespace

void lrn_forward_cuda(const Tensor& x, const Tensor& y, const Tensor& scale, const LrnParams& p) {
  const char* op = "lrn_forward";
  cuda_require(op);
  LrnShape s = make_shape(op, x, p);
  const int64_t total = checked_mul(checked_mul(x.shape[0], s.nchunks, op), s.HW, op);
  CONVKIT_DISPATCH_FLOAT(x.dtype, op, [&] {
    launch(op, lrn_fwd_kernel<scalar_t>, grid_for(total, kBlock), kBlock, x.ptr<scalar_t>(), y.ptr<scalar_t>(),
           scale.ptr<scalar_t>(), total, s);
  });
}

void lrn_backward_cuda(const Tensor& x, const Tensor& y, const Tensor& scale, const Tensor& dy, const Tensor& dx,
                       const LrnParams& p) {
  const char* op = "lrn_backward";
  cuda_require(op);
  LrnShape s = make_shape(op, x, p);
  const int64_t total = checked_mul(checked_mul(x.shape[0], s.nchunks, op), s.HW, op);
  CONVKIT_DISPATCH_FLOAT(x.dtype, op, [&] {
    launch(op, lrn_bwd_kernel<scalar_t>, grid_for(total, kBlock), kBlock, x.ptr<scalar_t>(), y.ptr<scalar_t>(),
           scale.ptr<scalar_t>(), dy.ptr<scalar_t>(), dx.ptr<scalar_t>(), total, s);
  });
}

}  // namespace convkit
