// max_pool2d: checks, device dispatch and the CPU kernels (formula and conventions in max_pool2d.h).
//
// CPU decomposition: one task per (n, c) plane, split over the threads by parallel_for. A plane is
// read, and its outputs written, by one thread only, so results are identical for every thread
// count.
//
// Per plane the max is separable and computed in two passes, each input read once:
//   1. row pass:    h[r, j] = max over the kw columns of window column j in input row r (and that
//                   column), for every row r that some window uses;
//   2. column pass: y[i, j] = max over the kh rows of window row i of h[r, j].
// Ties: both passes keep the FIRST maximum (strict >), so the column pass picks the first row that
// holds the window's maximum and the row pass the first column in that row: the first maximum in
// row-major window order, as a direct scan would. NaN: a NaN always replaces the running maximum
// (PyTorch's rule `val > max || isnan(val)`), so a window with a NaN yields NaN and the index of its
// last NaN in row-major order, again the same as a direct scan. Padded cells are never visited:
// every window overlaps the input (padding <= k/2 and, in ceil mode, the last window starts inside
// the input or the left padding), and the running max starts at the first real element, so an
// all -inf window returns -inf at its first element (as PyTorch).
//
// Implementations, best first: max_pool2d_avx2.cpp (float32, AVX2; vectorized over 8 output
// columns, stride-2 rows deinterleaved), then the generic template below (float32 and float64).
// Both compute the same comparisons, so they agree bit for bit.
//
// Backward: dx is zeroed plane by plane and dy scattered with += at the recorded indices (windows
// may overlap), in output order; indices outside [0, H*W) raise instead of writing out of bounds.
#include "ops/max_pool2d.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <type_traits>

#include "convkit/parallel.h"
#include "convkit/runtime.h"

namespace convkit {

#if defined(__x86_64__) || defined(_M_X64)
#define CONVKIT_POOL_HAVE_AVX2 1
namespace avx2 {
// max_pool2d_avx2.cpp: one float32 plane, same contract as pool_plane_generic below. hv holds
// H * OW floats, hi H * OW int32 (the plane must have H * W < 2^31).
void max_pool2d_plane_f32(const float* x, float* y, int64_t* idx, int64_t H, int64_t W, int64_t OH, int64_t OW,
                          int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, float* hv,
                          int32_t* hi);
}  // namespace avx2
#endif

namespace {

constexpr int64_t kMaxPoolDim = int64_t(1) << 40;  // sizes, kernels, strides: far beyond any image

// Collects the first exception thrown inside a parallel region (throwing out of an OpenMP region
// would terminate the process); rethrown after the region.
struct ErrorSlot {
  std::atomic<bool> set{false};
  std::exception_ptr error;
  void capture() {
    bool expected = false;
    if (set.compare_exchange_strong(expected, true)) error = std::current_exception();
  }
  void rethrow() {
    if (set.load()) std::rethrow_exception(error);
  }
};

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

// The output size along one axis (see max_pool2d.h), with every parameter checked. `axis` is "" for
// pool2d_out_size or "_h" / "_w" to name the Pool2dParams fields in messages, `in_name` the input size.
int64_t out_size_checked(const char* op, const char* axis, const char* in_name, int64_t in, int64_t k, int64_t stride,
                         int64_t pad, bool ceil_mode) {
  CONVKIT_CHECK(in >= 1, op, ": ", in_name, " must be >= 1, got ", in);
  CONVKIT_CHECK(k >= 1, op, ": kernel", axis, " must be >= 1, got ", k);
  CONVKIT_CHECK(stride >= 1, op, ": stride", axis, " must be >= 1, got ", stride);
  CONVKIT_CHECK(pad >= 0, op, ": pad", axis, " must be >= 0, got ", pad);
  CONVKIT_CHECK(in <= kMaxPoolDim && k <= kMaxPoolDim && stride <= kMaxPoolDim, op, ": ", in_name, " ", in,
                ", kernel ", k, " or stride ", stride, " exceeds 2^40");
  CONVKIT_CHECK(pad <= k / 2, op, ": pad", axis, " must be <= kernel / 2 = ", k / 2, ", got ", pad);
  const int64_t span = in + 2 * pad - k;
  int64_t out = (ceil_mode ? ceil_div(span, stride) : floor_div(span, stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;  // the last window must start inside
  CONVKIT_CHECK(out >= 1, op, ": output size", axis, " ", out, " <= 0 for ", in_name, " ", in, ", kernel ", k,
                ", stride ", stride, ", pad ", pad, ceil_mode ? ", ceil_mode" : "");
  return out;
}

// Checks (x, y, idx) for the op; returns nothing, throws std::invalid_argument.
void check_pool(const char* op, const Tensor& x, const char* nx, const Tensor& y, const char* ny, const Tensor& idx,
                const char* nidx, const Pool2dParams& p) {
  check_float(x, op, nx);
  check_ndim(x, 4, op, nx, "[N, C, H, W]");
  check_nonempty(x, op, nx);
  const int64_t oh = out_size_checked(op, "_h", "H", x.shape[2], p.kernel_h, p.stride_h, p.pad_h, p.ceil_mode);
  const int64_t ow = out_size_checked(op, "_w", "W", x.shape[3], p.kernel_w, p.stride_w, p.pad_w, p.ceil_mode);
  check_same_device(x, y, op, nx, ny);
  check_dtype(y, x.dtype, op, ny);
  check_shape(y, {x.shape[0], x.shape[1], oh, ow}, op, ny);
  check_same_device(x, idx, op, nx, nidx);
  check_dtype(idx, DType::Int64, op, nidx);
  check_shape(idx, {x.shape[0], x.shape[1], oh, ow}, op, nidx);
  CONVKIT_CHECK(y.data != nullptr && idx.data != nullptr, op, ": ", ny, " or ", nidx, " has no data");
}

struct PlaneGeom {
  int64_t H, W, OH, OW, kh, kw, sh, sw, ph, pw;
};

PlaneGeom geom_of(const Tensor& x, const Tensor& y, const Pool2dParams& p) {
  return {x.shape[2], x.shape[3], y.shape[2], y.shape[3], p.kernel_h, p.kernel_w,
          p.stride_h, p.stride_w, p.pad_h, p.pad_w};
}

// v replaces the running maximum m: strictly greater (first maximum wins) or NaN (PyTorch's rule).
template <class T>
inline bool takes_over(T v, T m) {
  return v > m || v != v;
}

// One plane, plain C++. hv: H * OW values, hi: H * OW flat indices (scratch).
template <class T>
void pool_plane_generic(const T* x, T* y, int64_t* idx, const PlaneGeom& g, T* hv, int64_t* hi) {
  int64_t next_row = 0;  // rows below this already have their row pass done
  for (int64_t i = 0; i < g.OH; ++i) {
    const int64_t r0 = i * g.sh - g.ph;
    const int64_t ra = std::max<int64_t>(r0, 0), rb = std::min(r0 + g.kh, g.H);
    // 1. row pass for the rows of this window not done yet (windows move down monotonically)
    for (int64_t r = std::max(ra, next_row); r < rb; ++r) {
      const T* xr = x + r * g.W;
      T* hr = hv + r * g.OW;
      int64_t* ir = hi + r * g.OW;
      for (int64_t j = 0; j < g.OW; ++j) {
        const int64_t c0 = j * g.sw - g.pw;
        const int64_t ca = std::max<int64_t>(c0, 0), cb = std::min(c0 + g.kw, g.W);
        T m = xr[ca];
        int64_t mi = ca;
        for (int64_t c = ca + 1; c < cb; ++c) {
          if (takes_over(xr[c], m)) m = xr[c], mi = c;
        }
        hr[j] = m;
        ir[j] = r * g.W + mi;
      }
    }
    next_row = std::max(next_row, rb);
    // 2. column pass
    T* yi = y + i * g.OW;
    int64_t* ii = idx + i * g.OW;
    std::memcpy(yi, hv + ra * g.OW, sizeof(T) * g.OW);
    std::memcpy(ii, hi + ra * g.OW, sizeof(int64_t) * g.OW);
    for (int64_t r = ra + 1; r < rb; ++r) {
      const T* hr = hv + r * g.OW;
      const int64_t* ir = hi + r * g.OW;
      for (int64_t j = 0; j < g.OW; ++j) {
        if (takes_over(hr[j], yi[j])) yi[j] = hr[j], ii[j] = ir[j];
      }
    }
  }
}

}  // namespace

// ---- sizes and checks ---------------------------------------------------------------------------

int64_t pool2d_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, bool ceil_mode) {
  return out_size_checked("pool2d_out_size", "", "size", in, k, stride, pad, ceil_mode);
}

void max_pool2d_check(const char* op, const Tensor& x, const Tensor& y, const Tensor& idx, const Pool2dParams& p) {
  check_pool(op, x, "x", y, "y", idx, "indices", p);
}

// ---- checked entry points -----------------------------------------------------------------------

void max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& idx, const Pool2dParams& p) {
  const char* op = "max_pool2d_forward";
  check_pool(op, x, "x", y, "y", idx, "indices", p);
  if (x.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, max_pool2d_forward_cuda(x, y, idx, p));
    return;
  }
  max_pool2d_forward_cpu(x, y, idx, p);
}

void max_pool2d_backward(const Tensor& dy, const Tensor& idx, const Tensor& dx, const Pool2dParams& p) {
  const char* op = "max_pool2d_backward";
  // dx plays x's part: the output sizes follow from its shape and p.
  check_pool(op, dx, "dx", dy, "dy", idx, "indices", p);
  if (dy.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, max_pool2d_backward_cuda(dy, idx, dx, p));
    return;
  }
  max_pool2d_backward_cpu(dy, idx, dx, p);
}

// ---- CPU kernels --------------------------------------------------------------------------------

void max_pool2d_forward_cpu(const Tensor& x, const Tensor& y, const Tensor& idx, const Pool2dParams& p) {
  const PlaneGeom g = geom_of(x, y, p);
  const int64_t planes = x.shape[0] * x.shape[1];
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(in_plane, 1));
  ErrorSlot err;
  CONVKIT_DISPATCH_FLOAT(x.dtype, "max_pool2d_forward", [&] {
    const scalar_t* xs = x.ptr<scalar_t>();
    scalar_t* ys = y.ptr<scalar_t>();
    int64_t* is = idx.ptr<int64_t>();
    bool use_avx2 = false;
#ifdef CONVKIT_POOL_HAVE_AVX2
    use_avx2 = std::is_same<scalar_t, float>::value && cpu_isa() >= Isa::Avx2 &&
               in_plane <= std::numeric_limits<int32_t>::max();
#endif
    parallel_for(planes, grain, [&](int64_t b, int64_t e) {
      try {
        const std::size_t scratch = static_cast<std::size_t>(checked_mul(g.H, g.OW, "max_pool2d_forward"));
        scalar_t* hv = static_cast<scalar_t*>(workspace(scratch * sizeof(scalar_t), 0));
        for (int64_t pl = b; pl < e; ++pl) {
          const scalar_t* xp = xs + pl * in_plane;
          scalar_t* yp = ys + pl * out_plane;
          int64_t* ip = is + pl * out_plane;
#ifdef CONVKIT_POOL_HAVE_AVX2
          if (use_avx2) {
            int32_t* hi = static_cast<int32_t*>(workspace(scratch * sizeof(int32_t), 1));
            avx2::max_pool2d_plane_f32(reinterpret_cast<const float*>(xp), reinterpret_cast<float*>(yp), ip, g.H,
                                       g.W, g.OH, g.OW, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw,
                                       reinterpret_cast<float*>(hv), hi);
            continue;
          }
#endif
          int64_t* hi = static_cast<int64_t*>(workspace(scratch * sizeof(int64_t), 1));
          pool_plane_generic(xp, yp, ip, g, hv, hi);
        }
      } catch (...) {
        err.capture();
      }
    });
    (void)use_avx2;
  });
  err.rethrow();
}

void max_pool2d_backward_cpu(const Tensor& dy, const Tensor& idx, const Tensor& dx, const Pool2dParams& p) {
  const int64_t planes = dx.shape[0] * dx.shape[1];
  const int64_t in_plane = dx.shape[2] * dx.shape[3], out_plane = dy.shape[2] * dy.shape[3];
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(in_plane, 1));
  std::atomic<bool> bad{false};
  std::atomic<int64_t> bad_value{0};
  CONVKIT_DISPATCH_FLOAT(dy.dtype, "max_pool2d_backward", [&] {
    const scalar_t* g = dy.ptr<scalar_t>();
    const int64_t* is = idx.ptr<int64_t>();
    scalar_t* d = dx.ptr<scalar_t>();
    parallel_for(planes, grain, [&](int64_t b, int64_t e) {
      // locals, so the stores into dx need not be assumed to change them
      const int64_t n_in = in_plane, n_out = out_plane;
      for (int64_t pl = b; pl < e; ++pl) {
        scalar_t* dp = d + pl * n_in;
        const scalar_t* gp = g + pl * n_out;
        const int64_t* ip = is + pl * n_out;
        std::memset(dp, 0, sizeof(scalar_t) * n_in);
        for (int64_t o = 0; o < n_out; ++o) {
          const int64_t k = ip[o];
          if (static_cast<uint64_t>(k) < static_cast<uint64_t>(n_in)) {
            dp[k] += gp[o];
          } else if (!bad.exchange(true)) {
            bad_value.store(k);
          }
        }
      }
    });
  });
  CONVKIT_CHECK(!bad.load(), "max_pool2d_backward: indices must lie in [0, H*W) = [0, ", in_plane, "), got ",
                bad_value.load());
}

}  // namespace convkit
