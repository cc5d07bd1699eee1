// lrn: checks, device dispatch and the CPU kernels of local response normalization across channels.
//
// Forward (lrn.h; the Caffe / PyTorch convention, alpha divided by the window size n = `size`):
//   W(c)     = [c - n/2, c + (n-1)/2] ∩ [0, C)        (n/2 channels before c, (n-1)/2 after)
//   scale[c] = k + (alpha / n) * sum_{c' in W(c)} x[c']^2
//   y[c]     = x[c] * scale[c]^(-beta)
// PyTorch's local_response_norm computes the same: it pads the squares with n/2 zero channels in
// front and (n-1)/2 behind, averages n of them (the divisor stays n at the edges) and returns
// x / (k + alpha * average)^beta.
//
// Backward. Write s_c = scale[c]. y_c depends on x_j through x_c (j = c) and through s_c (j in W(c)):
//   dy_c/dx_j = [j == c] s_c^(-beta) + x_c * (-beta) s_c^(-beta-1) * (alpha/n) * 2 x_j * [j in W(c)]
// so, with L the loss and dy = dL/dy,
//   dx_j = sum_c dy_c dy_c/dx_j
//        = dy_j s_j^(-beta) - (2 alpha beta / n) x_j sum_{c : j in W(c)} dy_c x_c s_c^(-beta) / s_c
//        = dy_j s_j^(-beta) - (2 alpha beta / n) x_j sum_{c : j in W(c)} dy_c y_c / s_c
// and j in W(c) <=> c - n/2 <= j <= c + (n-1)/2 <=> c in [j - (n-1)/2, j + n/2] ∩ [0, C): the
// window mirrored (for even n it leans the other way).
//
// CPU decomposition: tasks are (image n, chunk of B pixels of the H*W plane); parallel_for splits
// the tasks over the threads. Every pixel is computed by the same arithmetic whatever task it falls
// in, so results do not depend on the thread count (nor on B). A task walks the channels once, reading
// each input once: channel c + (n-1)/2 is squared into a ring of min(n, C) rows of B values just
// before channel c needs it, and the window sum of channel c is added up directly from that ring
// (c' ascending). We do not keep a running sum (add the entering square, subtract the leaving one):
// after a large value leaves the window, the subtraction leaves a rounding error of the large
// value's size on the small sums that follow, far from PyTorch's result; for the common n = 5 the
// direct sum is 4 adds per element, cheaper than the power. The backward pass is one walk too: it
// computes t[c] = dy[c] y[c] / s[c] and s[c]^(-beta) for channel c + n/2 into two rings and then
// dx[c] from the mirrored window sum of t.
//
// The power s^(-beta), the cost of this op, has exact closed forms for the common betas
// (0.75: 1 / sqrt(s * sqrt(s)), 0.5, 1, 0), each a few correctly rounded operations; other betas use
// pow in double (generic path) or exp(-beta * log(s)) evaluated in double lanes (AVX2 path), so
// float results are within a few units in the last place of the exact value.
//
// Implementations, best first: lrn_avx2.cpp (float32, AVX2 + FMA, 8 pixels per vector), then the
// generic template below (float32 and float64).
#include "ops/lrn.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <type_traits>

#include "convkit/parallel.h"
#include "convkit/runtime.h"

namespace convkit {

#if defined(__x86_64__) || defined(_M_X64)
#define CONVKIT_LRN_HAVE_AVX2 1
namespace avx2 {
// lrn_avx2.cpp. One task of the forward / backward pass in float32, same contract as the generic
// chunk kernels below; x, y, ... point at image n, the task covers pixels [p0, p0 + len); the rings
// hold min(size, C) rows of `stride` >= len floats (stride a multiple of 8).
void lrn_forward_chunk_f32(const float* x, float* y, float* scale, int64_t C, int64_t HW, int64_t p0, int64_t len,
                           int64_t size, float alpha_over_n, float k, int mode, double beta, float* ring,
                           int64_t stride);
void lrn_backward_chunk_f32(const float* x, const float* y, const float* scale, const float* dy, float* dx, int64_t C,
                            int64_t HW, int64_t p0, int64_t len, int64_t size, float coef, int mode, double beta,
                            float* tring, float* pring, int64_t stride);
}  // namespace avx2
#endif

namespace {

// How s^(-beta) is computed; lrn_avx2.cpp receives the same numbers.
enum LrnPowMode : int { kPowOne = 0, kPowInvSqrt = 1, kPow075 = 2, kPowInv = 3, kPowGeneral = 4 };

constexpr int64_t kMaxChunk = 2048;  // pixels per task at most: a ring row is then 8 KiB of float32
constexpr int64_t kMinChunk = 64;    // and at least this many, when the plane has them

struct ErrorSlot {  // first exception inside a parallel region, rethrown after it
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

void check_params(const char* op, const LrnParams& p) {
  CONVKIT_CHECK(p.size >= 1, op, ": size must be >= 1, got ", p.size);
  CONVKIT_CHECK(std::isfinite(p.alpha) && p.alpha >= 0, op, ": alpha must be finite and >= 0, got ", p.alpha);
  CONVKIT_CHECK(std::isfinite(p.beta) && p.beta >= 0, op, ": beta must be finite and >= 0, got ", p.beta);
  CONVKIT_CHECK(std::isfinite(p.k) && p.k > 0, op, ": k must be finite and > 0, got ", p.k);
}

void check_like(const char* op, const Tensor& x, const char* nx, const Tensor& t, const char* nt) {
  check_same_device(x, t, op, nx, nt);
  check_dtype(t, x.dtype, op, nt);
  check_shape(t, {x.shape[0], x.shape[1], x.shape[2], x.shape[3]}, op, nt);
  CONVKIT_CHECK(t.data != nullptr, op, ": ", nt, " has no data");
}

void check_all(const char* op, const Tensor& x, const Tensor& y, const Tensor& scale, const LrnParams& p) {
  check_float(x, op, "x");
  check_ndim(x, 4, op, "x", "[N, C, H, W]");
  check_nonempty(x, op, "x");
  check_like(op, x, "x", y, "y");
  check_like(op, x, "x", scale, "scale");
  check_params(op, p);
}

int pow_mode(double beta) {
  if (beta == 0.0) return kPowOne;
  if (beta == 0.5) return kPowInvSqrt;
  if (beta == 0.75) return kPow075;
  if (beta == 1.0) return kPowInv;
  return kPowGeneral;
}

// s^(-beta) from s (forward).
template <class T>
inline T pow_neg(T s, int mode, double beta) {
  switch (mode) {
    case kPowOne: return T(1);
    case kPowInvSqrt: return T(1) / std::sqrt(s);
    case kPow075: return T(1) / std::sqrt(s * std::sqrt(s));
    case kPowInv: return T(1) / s;
    default: return static_cast<T>(std::pow(static_cast<double>(s), -beta));
  }
}

// s^(-beta) given s and inv = 1 / s (backward, which needs inv anyway).
template <class T>
inline T pow_neg_inv(T s, T inv, int mode, double beta) {
  switch (mode) {
    case kPowOne: return T(1);
    case kPowInvSqrt: return std::sqrt(inv);
    case kPow075: return std::sqrt(inv * std::sqrt(inv));
    case kPowInv: return inv;
    default: return static_cast<T>(std::pow(static_cast<double>(s), -beta));
  }
}

// One forward task in plain C++: pixels [p0, p0 + len) of one image, all channels.
// ring: min(size, C) rows of len values; acc: len values.
template <class T>
void forward_chunk_generic(const T* x, T* y, T* scale, int64_t C, int64_t HW, int64_t p0, int64_t len, int64_t size,
                           T alpha_over_n, T k, int mode, double beta, T* ring, T* acc) {
  const int64_t before = size / 2, after = (size - 1) / 2, R = std::min(size, C);
  auto square_into_ring = [&](int64_t c) {
    const T* xc = x + c * HW + p0;
    T* r = ring + (c % R) * len;
    for (int64_t v = 0; v < len; ++v) r[v] = xc[v] * xc[v];
  };
  for (int64_t c = 0; c < std::min(after, C); ++c) square_into_ring(c);
  for (int64_t c = 0; c < C; ++c) {
    if (c + after < C) square_into_ring(c + after);
    const int64_t lo = std::max<int64_t>(c - before, 0), hi = std::min(c + after, C - 1);
    const T* first = ring + (lo % R) * len;
    for (int64_t v = 0; v < len; ++v) acc[v] = first[v];
    for (int64_t cc = lo + 1; cc <= hi; ++cc) {
      const T* r = ring + (cc % R) * len;
      for (int64_t v = 0; v < len; ++v) acc[v] += r[v];
    }
    const T* xc = x + c * HW + p0;
    T* yc = y + c * HW + p0;
    T* sc = scale + c * HW + p0;
    for (int64_t v = 0; v < len; ++v) {
      const T s = k + alpha_over_n * acc[v];
      sc[v] = s;
      yc[v] = xc[v] * pow_neg(s, mode, beta);
    }
  }
}

// One backward task in plain C++. tring, pring: min(size, C) rows of len values; acc: len values.
template <class T>
void backward_chunk_generic(const T* x, const T* y, const T* scale, const T* dy, T* dx, int64_t C, int64_t HW,
                            int64_t p0, int64_t len, int64_t size, T coef, int mode, double beta, T* tring, T* pring,
                            T* acc) {
  const int64_t before = size / 2, after = (size - 1) / 2, R = std::min(size, C);
  // t[c] = dy[c] y[c] / s[c] and p[c] = s[c]^(-beta) into the rings
  auto ratio_into_ring = [&](int64_t c) {
    const int64_t off = c * HW + p0;
    T* t = tring + (c % R) * len;
    T* pw = pring + (c % R) * len;
    for (int64_t v = 0; v < len; ++v) {
      const T s = scale[off + v], inv = T(1) / s;
      t[v] = dy[off + v] * y[off + v] * inv;
      pw[v] = pow_neg_inv(s, inv, mode, beta);
    }
  };
  for (int64_t c = 0; c < std::min(before, C); ++c) ratio_into_ring(c);
  for (int64_t c = 0; c < C; ++c) {
    if (c + before < C) ratio_into_ring(c + before);
    // the mirrored window: c' in [c - (n-1)/2, c + n/2]
    const int64_t lo = std::max<int64_t>(c - after, 0), hi = std::min(c + before, C - 1);
    const T* first = tring + (lo % R) * len;
    for (int64_t v = 0; v < len; ++v) acc[v] = first[v];
    for (int64_t cc = lo + 1; cc <= hi; ++cc) {
      const T* t = tring + (cc % R) * len;
      for (int64_t v = 0; v < len; ++v) acc[v] += t[v];
    }
    const int64_t off = c * HW + p0;
    const T* pw = pring + (c % R) * len;
    for (int64_t v = 0; v < len; ++v) dx[off + v] = dy[off + v] * pw[v] - coef * x[off + v] * acc[v];
  }
}

struct Tasks {
  int64_t N, C, HW, chunk, chunks;
  int64_t count() const { return N * chunks; }
};

Tasks tasks_of(const Tensor& x) {
  Tasks t;
  t.N = x.shape[0], t.C = x.shape[1], t.HW = checked_mul(x.shape[2], x.shape[3], "lrn");
  // Long contiguous runs per channel (the prefetchers lose track when every few hundred pixels jump
  // to the next channel), at most kMaxChunk so the rings stay in L1/L2, and enough tasks to keep
  // every thread busy at batch 1. The chunking never changes a result: every pixel's arithmetic is
  // the same whatever task it falls in.
  const int64_t nt = num_threads();
  int64_t chunks = std::max((t.HW + kMaxChunk - 1) / kMaxChunk, (2 * nt + t.N - 1) / t.N);
  chunks = std::max<int64_t>(1, std::min(chunks, (t.HW + kMinChunk - 1) / kMinChunk));
  t.chunk = ((t.HW + chunks - 1) / chunks + 7) / 8 * 8;
  t.chunk = std::min(t.chunk, t.HW);
  t.chunks = (t.HW + t.chunk - 1) / t.chunk;
  return t;
}

// Tasks per thread before threading pays off: about 64k elements.
int64_t grain_of(const Tasks& t) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, t.C * t.chunk)); }

}  // namespace

// ---- checks and checked entry points ------------------------------------------------------------

void lrn_check(const char* op, const Tensor& x, const Tensor& y, const Tensor& scale, const LrnParams& p) {
  check_all(op, x, y, scale, p);
}

void lrn_forward(const Tensor& x, const Tensor& y, const Tensor& scale, const LrnParams& p) {
  const char* op = "lrn_forward";
  check_all(op, x, y, scale, p);
  if (x.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, lrn_forward_cuda(x, y, scale, p));
    return;
  }
  lrn_forward_cpu(x, y, scale, p);
}

void lrn_backward(const Tensor& x, const Tensor& y, const Tensor& scale, const Tensor& dy, const Tensor& dx,
                  const LrnParams& p) {
  const char* op = "lrn_backward";
  check_all(op, x, y, scale, p);
  check_like(op, x, "x", dy, "dy");
  check_like(op, x, "x", dx, "dx");
  if (x.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, lrn_backward_cuda(x, y, scale, dy, dx, p));
    return;
  }
  lrn_backward_cpu(x, y, scale, dy, dx, p);
}

// ---- CPU kernels --------------------------------------------------------------------------------

void lrn_forward_cpu(const Tensor& x, const Tensor& y, const Tensor& scale, const LrnParams& p) {
  const Tasks tk = tasks_of(x);
  const int mode = pow_mode(p.beta);
  const int64_t R = std::min(p.size, tk.C);
  const int64_t stride = (tk.chunk + 7) / 8 * 8;
  const std::size_t ring_elems = static_cast<std::size_t>(checked_mul(R, stride, "lrn_forward"));
  ErrorSlot err;
  CONVKIT_DISPATCH_FLOAT(x.dtype, "lrn_forward", [&] {
    const scalar_t* xs = x.ptr<scalar_t>();
    scalar_t* ys = y.ptr<scalar_t>();
    scalar_t* ss = scale.ptr<scalar_t>();
    const scalar_t an = static_cast<scalar_t>(p.alpha / static_cast<double>(p.size));
    const scalar_t kk = static_cast<scalar_t>(p.k);
    bool use_avx2 = false;
#ifdef CONVKIT_LRN_HAVE_AVX2
    use_avx2 = std::is_same<scalar_t, float>::value && cpu_isa() >= Isa::Avx2;
#endif
    parallel_for(tk.count(), grain_of(tk), [&](int64_t b, int64_t e) {
      try {
        scalar_t* ring = static_cast<scalar_t*>(workspace(ring_elems * sizeof(scalar_t), 0));
        scalar_t* acc = static_cast<scalar_t*>(workspace(stride * sizeof(scalar_t), 1));
        for (int64_t t = b; t < e; ++t) {
          const int64_t n = t / tk.chunks, p0 = (t % tk.chunks) * tk.chunk;
          const int64_t len = std::min(tk.chunk, tk.HW - p0);
          const int64_t off = n * tk.C * tk.HW;
#ifdef CONVKIT_LRN_HAVE_AVX2
          if (use_avx2) {
            avx2::lrn_forward_chunk_f32(reinterpret_cast<const float*>(xs + off), reinterpret_cast<float*>(ys + off),
                                        reinterpret_cast<float*>(ss + off), tk.C, tk.HW, p0, len, p.size,
                                        static_cast<float>(an), static_cast<float>(kk), mode, p.beta,
                                        reinterpret_cast<float*>(ring), stride);
            continue;
          }
#endif
          forward_chunk_generic(xs + off, ys + off, ss + off, tk.C, tk.HW, p0, len, p.size, an, kk, mode, p.beta,
                                ring, acc);
        }
      } catch (...) {
        err.capture();
      }
    });
    (void)use_avx2;
  });
  err.rethrow();
}

void lrn_backward_cpu(const Tensor& x, const Tensor& y, const Tensor& scale, const Tensor& dy, const Tensor& dx,
                      const LrnParams& p) {
  const Tasks tk = tasks_of(x);
  const int mode = pow_mode(p.beta);
  const int64_t R = std::min(p.size, tk.C);
  const int64_t stride = (tk.chunk + 7) / 8 * 8;
  const std::size_t ring_elems = static_cast<std::size_t>(checked_mul(R, stride, "lrn_backward"));
  ErrorSlot err;
  CONVKIT_DISPATCH_FLOAT(x.dtype, "lrn_backward", [&] {
    const scalar_t* xs = x.ptr<scalar_t>();
    const scalar_t* ys = y.ptr<scalar_t>();
    const scalar_t* ss = scale.ptr<scalar_t>();
    const scalar_t* gs = dy.ptr<scalar_t>();
    scalar_t* ds = dx.ptr<scalar_t>();
    const scalar_t coef = static_cast<scalar_t>(2.0 * p.alpha * p.beta / static_cast<double>(p.size));
    bool use_avx2 = false;
#ifdef CONVKIT_LRN_HAVE_AVX2
    use_avx2 = std::is_same<scalar_t, float>::value && cpu_isa() >= Isa::Avx2;
#endif
    parallel_for(tk.count(), grain_of(tk), [&](int64_t b, int64_t e) {
      try {
        scalar_t* tring = static_cast<scalar_t*>(workspace(ring_elems * sizeof(scalar_t), 0));
        scalar_t* pring = static_cast<scalar_t*>(workspace(ring_elems * sizeof(scalar_t), 1));
        scalar_t* acc = static_cast<scalar_t*>(workspace(stride * sizeof(scalar_t), 2));
        for (int64_t t = b; t < e; ++t) {
          const int64_t n = t / tk.chunks, p0 = (t % tk.chunks) * tk.chunk;
          const int64_t len = std::min(tk.chunk, tk.HW - p0);
          const int64_t off = n * tk.C * tk.HW;
#ifdef CONVKIT_LRN_HAVE_AVX2
          if (use_avx2) {
            avx2::lrn_backward_chunk_f32(reinterpret_cast<const float*>(xs + off),
                                         reinterpret_cast<const float*>(ys + off),
                                         reinterpret_cast<const float*>(ss + off),
                                         reinterpret_cast<const float*>(gs + off), reinterpret_cast<float*>(ds + off),
                                         tk.C, tk.HW, p0, len, p.size, static_cast<float>(coef), mode, p.beta,
                                         reinterpret_cast<float*>(tring), reinterpret_cast<float*>(pring), stride);
            continue;
          }
#endif
          backward_chunk_generic(xs + off, ys + off, ss + off, gs + off, ds + off, tk.C, tk.HW, p0, len, p.size,
                                 coef, mode, p.beta, tring, pring, acc);
        }
      } catch (...) {
        err.capture();
      }
    });
    (void)use_avx2;
  });
  err.rethrow();
}

}  // namespace convkit
