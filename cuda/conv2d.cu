// conv2d on CUDA (formula in csrc/ops/conv2d.h): implicit GEMM on the shared tiled main loop of
// igemm.cuh. No im2col buffer is ever written: each loader gathers its tile straight from the image.
//
//   forward        y[g]  (OCg x N*OH*OW)   = W[g] (OCg x Cg*KH*KW)  *  im2col(x)[g] (Cg*KH*KW x N*OH*OW)
//   backward data  dx[g] (Cg x N*H*W)      = W[g]^T                 *  col(dy)[g]
//   backward wt    dW[g] (OCg x Cg*KH*KW)  = dy[g] (OCg x N*OH*OW)  *  im2col(x)[g]^T
//
// Grid: x over tiles of the pixel (or weight-column) axis, y over tiles of the channel axis, z over
// groups (and stride phases, or K splits). Indices inside one image use 32 bits; image offsets use 64.
//
// Backward data by stride phases: with stride s > 1 most (input pixel, kernel tap) pairs touch no
// output pixel. Input rows ih with (ih + pad) % s == r (one "phase" r per residue) receive only from
// the taps kh with kh*dil = r (mod s), which form an arithmetic progression kh0, kh0 + step, ...
// (step = s / gcd(s, dil)); for those, oh = (ih + pad - kh*dil) / s is exact. So each phase is a dense
// GEMM with K = OCg * (taps in the phase) and no wasted multiplications; a phase with no taps (stride
// larger than the dilated kernel) writes zeros. gridDim.z enumerates (group, phase_h, phase_w).
//
// Backward weight reduces over N*OH*OW, long next to the small output: the reduction is split into
// chunks (split-K) written to scratch and summed by a second kernel in a fixed order (deterministic,
// no atomics). Backward bias: one block per output channel, a fixed-order tree sum in double.
#include "common.cuh"
#include "igemm.cuh"
#include "ops/conv2d.h"

namespace convkit {
namespace {

using igemm::Cfg;
using igemm::KFast;
using igemm::MFast;

struct ConvShape {
  int N, C, H, W, OC, OH, OW, KH, KW;
  int sh, sw, ph, pw, dh, dw;
  int G, Cg, OCg;
};

// ---- forward --------------------------------------------------------------------------------------------

// A = W[g]: [OCg, K] row-major, contiguous along k.
template <class T> struct FwdA {
  using C = Cfg<T>;
  using Map = KFast<C, C::BM>;
  static constexpr int L = Map::L;
  const T* w;
  int M, K, m0, k;
  __device__ FwdA(const T* w_, int M_, int K_, int m0_) : w(w_), M(M_), K(K_), m0(m0_), k(Map::k()) {}
  __device__ __forceinline__ void fetch(T (&r)[L]) {
#pragma unroll
    for (int e = 0; e < L; ++e) {
      const int m = m0 + Map::m(e);
      r[e] = (m < M && k < K) ? w[static_cast<int64_t>(m) * K + k] : T(0);
    }
    k += C::BK;
  }
  __device__ __forceinline__ void stash(T (*s)[C::BM + C::PAD], const T (&r)[L]) const {
#pragma unroll
    for (int e = 0; e < L; ++e) s[Map::k()][Map::m(e)] = r[e];
  }
};

// B = im2col(x)[g]: row k = (c, kh, kw), column n = (image, oh, ow), gathered from x. Each thread
// keeps one column (its pixel's window origin) and the (c, kh, kw) of its first row; its other rows
// are NT/BN apart and each k step advances by BK, both added with carries (no divisions in the loop).
struct KIndex {  // (c, kh, kw) with kw fastest
  int c, kh, kw;
  __device__ __forceinline__ void add(const KIndex& d, int KH, int KW) {
    kw += d.kw;
    if (kw >= KW) kw -= KW, ++kh;
    kh += d.kh;
    if (kh >= KH) kh -= KH, ++c;
    c += d.c;
  }
};
__device__ __forceinline__ KIndex kindex_of(int k, int KH, int KW) {
  KIndex r;
  r.c = k / (KH * KW);
  const int rr = k - r.c * KH * KW;
  r.kh = rr / KW;
  r.kw = rr - r.kh * KW;
  return r;
}

template <class T> struct FwdB {
  using C = Cfg<T>;
  using Map = MFast<C, C::BN>;
  static constexpr int L = Map::L;
  static constexpr int ROWSTEP = C::NT / C::BN;  // between a thread's rows
  const T* xb = nullptr;
  int ih0 = 0, iw0 = 0;
  bool nvalid;
  KIndex k0, dstep, drow;
  int H, W, HW, KH, KW, dh, dw, Cg;
  __device__ FwdB(const T* x, const ConvShape& s, int g, int64_t npix, int64_t n0)
      : H(s.H), W(s.W), HW(s.H * s.W), KH(s.KH), KW(s.KW), dh(s.dh), dw(s.dw), Cg(s.Cg) {
    const int64_t n = n0 + Map::m();
    nvalid = n < npix;
    if (nvalid) {
      const int ohw = s.OH * s.OW;
      const int nb = static_cast<int>(n / ohw), p = static_cast<int>(n - static_cast<int64_t>(nb) * ohw);
      const int oh = p / s.OW, ow = p - oh * s.OW;
      ih0 = oh * s.sh - s.ph;
      iw0 = ow * s.sw - s.pw;
      xb = x + (static_cast<int64_t>(nb) * s.C + static_cast<int64_t>(g) * s.Cg) * HW;
    }
    k0 = kindex_of(Map::k(0), KH, KW);
    dstep = kindex_of(C::BK, KH, KW);
    drow = kindex_of(ROWSTEP, KH, KW);
  }
  __device__ __forceinline__ void fetch(T (&r)[L]) {
    KIndex t = k0;
#pragma unroll
    for (int e = 0; e < L; ++e) {
      const int ih = ih0 + t.kh * dh, iw = iw0 + t.kw * dw;
      const bool ok = nvalid && t.c < Cg && static_cast<unsigned>(ih) < static_cast<unsigned>(H) &&
                      static_cast<unsigned>(iw) < static_cast<unsigned>(W);
      r[e] = ok ? xb[t.c * HW + ih * W + iw] : T(0);
      if (e + 1 < L) t.add(drow, KH, KW);
    }
    k0.add(dstep, KH, KW);
  }
  __device__ __forceinline__ void stash(T (*s)[C::BN + C::PAD], const T (&r)[L]) const {
#pragma unroll
    for (int e = 0; e < L; ++e) s[Map::k(e)][Map::m()] = r[e];
  }
};

template <class T>
__global__ void __launch_bounds__(igemm::kThreads, 2)
    conv_fwd_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias, T* __restrict__ y,
                    ConvShape s, int zoff) {
  using C = Cfg<T>;
  const int g = blockIdx.z + zoff;
  const int M = s.OCg, K = s.Cg * s.KH * s.KW;
  const int ohw = s.OH * s.OW;
  const int64_t npix = static_cast<int64_t>(s.N) * ohw;
  const int m0 = blockIdx.y * C::BM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * C::BN;
  FwdA<T> la(w + static_cast<int64_t>(g) * M * K, M, K, m0);
  FwdB<T> lb(x, s, g, npix, n0);
  T acc[C::TM][C::TN];
  igemm::mainloop<T>(la, lb, ceil_div(K, C::BK), acc);
#pragma unroll
  for (int j = 0; j < C::TN; ++j) {
    const int64_t n = n0 + igemm::col_of<C>(j);
    if (n >= npix) continue;
    const int nb = static_cast<int>(n / ohw), p = static_cast<int>(n - static_cast<int64_t>(nb) * ohw);
    T* yb = y + (static_cast<int64_t>(nb) * s.OC + static_cast<int64_t>(g) * s.OCg) * ohw + p;
#pragma unroll
    for (int i = 0; i < C::TM; ++i) {
      const int m = m0 + igemm::row_of<C>(i);
      if (m < M) yb[static_cast<int64_t>(m) * ohw] = acc[i][j] + (bias ? bias[g * s.OCg + m] : T(0));
    }
  }
}

// ---- backward data ---------------------------------------------------------------------------------------

// One axis of a stride phase (see the top of the file). Taps k0 + j*step (j < n); the input position
// of column t is r - pad + s*t for t in [t0, t0 + nt); the output position it reads for tap j is
// t - q0 - j*dq.
struct Phase {
  int k0, step, n, q0, dq, t0, nt;
};

__device__ __forceinline__ int gcd_int(int a, int b) {
  while (b) {
    int t = a % b;
    a = b;
    b = t;
  }
  return a;
}

__device__ Phase make_phase(int r, int s, int d, int K, int pad, int in) {
  Phase ph;
  ph.step = s / gcd_int(s, d);
  ph.k0 = -1;
  for (int k = 0; k < ph.step && k < K; ++k)
    if ((k * d - r) % s == 0) {
      ph.k0 = k;
      break;
    }
  if (ph.k0 < 0) {
    ph.k0 = 0;
    ph.n = 0;
  } else {
    ph.n = (K - 1 - ph.k0) / ph.step + 1;
  }
  ph.q0 = (ph.k0 * d - r) / s;  // >= 0 whenever n > 0
  ph.dq = ph.step * d / s;
  const int lo = pad - r;
  ph.t0 = lo <= 0 ? 0 : (lo + s - 1) / s;
  const int hi = in - 1 + pad - r;
  const int tmax = hi < 0 ? -1 : hi / s;
  ph.nt = tmax >= ph.t0 ? tmax - ph.t0 + 1 : 0;
  return ph;
}

// Steps a (o, jh, jw) index, o slowest, by a fixed amount given in the same mixed radix.
struct TapIndex {
  int o, jh, jw;
  __device__ __forceinline__ void add(int d_o, int d_jh, int d_jw, int nh, int nw) {
    jw += d_jw;
    if (jw >= nw) jw -= nw, ++jh;
    jh += d_jh;
    if (jh >= nh) jh -= nh, ++o;
    o += d_o;
  }
};

struct BwdDataGeom {
  Phase ph, pw;
  int K;                // OCg * ph.n * pw.n
  int d_o, d_jh, d_jw;  // BK in the (o, jh, jw) radix
};

__device__ __forceinline__ TapIndex tap_of(int k, const BwdDataGeom& g) {
  TapIndex t;
  const int per_o = g.ph.n * g.pw.n;
  t.o = k / per_o;
  const int rr = k - t.o * per_o;
  t.jh = rr / g.pw.n;
  t.jw = rr - t.jh * g.pw.n;
  return t;
}

// A = W[g]^T restricted to the phase's taps: row m = c, column k = (o, jh, jw).
template <class T, class C = Cfg<T>> struct BwdDataA {
  using Map = KFast<C, C::BM>;
  static constexpr int L = Map::L;
  const T* wg;
  const BwdDataGeom geo;  // a copy: kept in registers, not behind a pointer
  int Cg, OCg, KHW, KW, m0;
  TapIndex t;
  __device__ BwdDataA(const T* wg_, const BwdDataGeom& geo_, const ConvShape& s, int m0_)
      : wg(wg_), geo(geo_), Cg(s.Cg), OCg(s.OCg), KHW(s.KH * s.KW), KW(s.KW), m0(m0_) {
    t = geo.K > 0 ? tap_of(Map::k(), geo) : TapIndex{OCg, 0, 0};
  }
  __device__ __forceinline__ void fetch(T (&r)[L]) {
    const bool kvalid = t.o < OCg;
    const int kh = geo.ph.k0 + t.jh * geo.ph.step, kw = geo.pw.k0 + t.jw * geo.pw.step;
    const T* wk = wg + (static_cast<int64_t>(t.o) * Cg) * KHW + kh * KW + kw;
#pragma unroll
    for (int e = 0; e < L; ++e) {
      const int c = m0 + Map::m(e);
      r[e] = (kvalid && c < Cg) ? wk[static_cast<int64_t>(c) * KHW] : T(0);
    }
    t.add(geo.d_o, geo.d_jh, geo.d_jw, geo.ph.n, geo.pw.n);
  }
  __device__ __forceinline__ void stash(T (*s)[C::BM + C::PAD], const T (&r)[L]) const {
#pragma unroll
    for (int e = 0; e < L; ++e) s[Map::k()][Map::m(e)] = r[e];
  }
};

// B = dy gathered for the phase: row k = (o, jh, jw), column n = (image, th, tw).
template <class T, class C = Cfg<T>> struct BwdDataB {
  using Map = MFast<C, C::BN>;
  static constexpr int L = Map::L;
  const T* dyb = nullptr;
  const BwdDataGeom geo;
  int ohb = 0, owb = 0, OH, OW, OCg;
  bool nvalid;
  TapIndex t[L];
  __device__ BwdDataB(const T* dy, const BwdDataGeom& geo_, const ConvShape& s, int g, int64_t ncols, int64_t n0)
      : geo(geo_), OH(s.OH), OW(s.OW), OCg(s.OCg) {
    const int64_t n = n0 + Map::m();
    nvalid = n < ncols;
    if (nvalid) {
      const int per_img = geo.ph.nt * geo.pw.nt;
      const int nb = static_cast<int>(n / per_img), rr = static_cast<int>(n - static_cast<int64_t>(nb) * per_img);
      const int th = rr / geo.pw.nt, tw = rr - th * geo.pw.nt;
      ohb = geo.ph.t0 + th - geo.ph.q0;
      owb = geo.pw.t0 + tw - geo.pw.q0;
      dyb = dy + (static_cast<int64_t>(nb) * s.OC + static_cast<int64_t>(g) * s.OCg) * (OH * OW);
    }
#pragma unroll
    for (int e = 0; e < L; ++e) t[e] = geo.K > 0 ? tap_of(Map::k(e), geo) : TapIndex{OCg, 0, 0};
  }
  __device__ __forceinline__ void fetch(T (&r)[L]) {
#pragma unroll
    for (int e = 0; e < L; ++e) {
      const int oh = ohb - t[e].jh * geo.ph.dq, ow = owb - t[e].jw * geo.pw.dq;
      const bool ok = nvalid && t[e].o < OCg && static_cast<unsigned>(oh) < static_cast<unsigned>(OH) &&
                      static_cast<unsigned>(ow) < static_cast<unsigned>(OW);
      r[e] = ok ? dyb[static_cast<int64_t>(t[e].o) * (OH * OW) + oh * OW + ow] : T(0);
      t[e].add(geo.d_o, geo.d_jh, geo.d_jw, geo.ph.n, geo.pw.n);
    }
  }
  __device__ __forceinline__ void stash(T (*s)[C::BN + C::PAD], const T (&r)[L]) const {
#pragma unroll
    for (int e = 0; e < L; ++e) s[Map::k(e)][Map::m()] = r[e];
  }
};

template <class T, class C>
__global__ void __launch_bounds__(igemm::kThreads, 2)
    conv_bwd_data_kernel(const T* __restrict__ dy, const T* __restrict__ w, T* __restrict__ dx, ConvShape s, int zoff) {
  const int z = blockIdx.z + zoff;
  const int nph = s.sh * s.sw;
  const int g = z / nph, phi = z - g * nph;
  const int rh = phi / s.sw, rw = phi - rh * s.sw;
  BwdDataGeom geo;
  geo.ph = make_phase(rh, s.sh, s.dh, s.KH, s.ph, s.H);
  geo.pw = make_phase(rw, s.sw, s.dw, s.KW, s.pw, s.W);
  geo.K = s.OCg * geo.ph.n * geo.pw.n;
  if (geo.K > 0) {
    const int per_o = geo.ph.n * geo.pw.n;
    geo.d_o = C::BK / per_o;
    geo.d_jh = (C::BK / geo.pw.n) % geo.ph.n;
    geo.d_jw = C::BK % geo.pw.n;
  } else {
    geo.d_o = geo.d_jh = geo.d_jw = 0;
  }
  const int M = s.Cg;
  const int64_t ncols = static_cast<int64_t>(s.N) * geo.ph.nt * geo.pw.nt;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * C::BN;
  if (n0 >= ncols) return;  // the grid is sized for the largest phase; the whole block leaves together
  const int m0 = blockIdx.y * C::BM;
  BwdDataA<T, C> la(w + static_cast<int64_t>(g) * s.OCg * s.Cg * s.KH * s.KW, geo, s, m0);
  BwdDataB<T, C> lb(dy, geo, s, g, ncols, n0);
  T acc[C::TM][C::TN];
  igemm::mainloop<T, C>(la, lb, ceil_div(geo.K, C::BK), acc);
  const int HW = s.H * s.W;
  const int per_img = geo.ph.nt * geo.pw.nt;
#pragma unroll
  for (int j = 0; j < C::TN; ++j) {
    const int64_t n = n0 + igemm::col_of<C>(j);
    if (n >= ncols) continue;
    const int nb = static_cast<int>(n / per_img), rr = static_cast<int>(n - static_cast<int64_t>(nb) * per_img);
    const int th = rr / geo.pw.nt, tw = rr - th * geo.pw.nt;
    const int ih = rh - s.ph + s.sh * (geo.ph.t0 + th), iw = rw - s.pw + s.sw * (geo.pw.t0 + tw);
    T* dxb = dx + (static_cast<int64_t>(nb) * s.C + static_cast<int64_t>(g) * s.Cg) * HW + ih * s.W + iw;
#pragma unroll
    for (int i = 0; i < C::TM; ++i) {
      const int m = m0 + igemm::row_of<C>(i);
      if (m < M) dxb[static_cast<int64_t>(m) * HW] = acc[i][j];
    }
  }
}

// ---- backward weight ---------------------------------------------------------------------------------------

// The reduction index k = (image, oh, ow) of the calling thread, stepped by BK with carries.
struct PixelIndex {
  int nb, oh, ow;
};

// A = dy[g]: row m = output channel, column k = (image, output pixel): contiguous along k.
template <class T> struct BwdWtA {
  using C = Cfg<T>;
  using Map = KFast<C, C::BM>;
  static constexpr int L = Map::L;
  const T* dyg;  // dy + g*OCg*OHW
  int OCg, OHW, OC, m0, d_nb, d_p;
  int k, kend;  // the reduction index (N*OH*OW fits in 32 bits: checked in make_shape)
  int nb, p;
  __device__ BwdWtA(const T* dyg_, const ConvShape& s, int m0_, int kbeg, int kend_)
      : dyg(dyg_), OCg(s.OCg), OHW(s.OH * s.OW), OC(s.OC), m0(m0_), kend(kend_) {
    k = kbeg + Map::k();
    nb = k / OHW;
    p = k - nb * OHW;
    d_nb = C::BK / OHW;
    d_p = C::BK % OHW;
  }
  __device__ __forceinline__ void fetch(T (&r)[L]) {
    const bool kvalid = k < kend;
    const T* dk = dyg + static_cast<int64_t>(nb) * OC * OHW + p;
#pragma unroll
    for (int e = 0; e < L; ++e) {
      const int o = m0 + Map::m(e);
      r[e] = (kvalid && o < OCg) ? dk[static_cast<int64_t>(o) * OHW] : T(0);
    }
    k += C::BK;
    p += d_p;
    if (p >= OHW) p -= OHW, ++nb;
    nb += d_nb;
  }
  __device__ __forceinline__ void stash(T (*s)[C::BM + C::PAD], const T (&r)[L]) const {
#pragma unroll
    for (int e = 0; e < L; ++e) s[Map::k()][Map::m(e)] = r[e];
  }
};

// B = im2col(x)[g]^T: row k = (image, oh, ow), column n = (c, kh, kw). Consecutive threads take
// consecutive output pixels (so their x reads are stride apart); each thread's columns are fixed.
template <class T> struct BwdWtB {
  using C = Cfg<T>;
  using Map = KFast<C, C::BN>;
  static constexpr int L = Map::L;
  const T* x;
  int C_, Cg, g, H, W, HW, OH, OW, sh, sw, ph, pw;
  int k, kend;
  PixelIndex px;
  int d_nb, d_oh, d_ow;
  int coff[L], khd[L], kwd[L];  // a column past the end gets khd = -2^29, so its bounds check fails
  __device__ BwdWtB(const T* x_, const ConvShape& s, int g_, int n0, int kbeg, int kend_)
      : x(x_), C_(s.C), Cg(s.Cg), g(g_), H(s.H), W(s.W), HW(s.H * s.W), OH(s.OH), OW(s.OW), sh(s.sh), sw(s.sw),
        ph(s.ph), pw(s.pw), kend(kend_) {
    k = kbeg + Map::k();
    const int ohw = OH * OW;
    px.nb = k / ohw;
    const int p = k - px.nb * ohw;
    px.oh = p / OW;
    px.ow = p - px.oh * OW;
    d_nb = C::BK / ohw;
    d_oh = (C::BK / OW) % OH;
    d_ow = C::BK % OW;
    const int khw = s.KH * s.KW, ncol = s.Cg * khw;
#pragma unroll
    for (int e = 0; e < L; ++e) {
      const int col = n0 + Map::m(e);
      const int c = col / khw, rr = col - c * khw, kh = rr / s.KW, kw = rr - kh * s.KW;
      khd[e] = kh * s.dh;
      kwd[e] = kw * s.dw;
      coff[e] = c * HW + khd[e] * W + kwd[e];
      if (col >= ncol) khd[e] = -(1 << 29);
    }
  }
  __device__ __forceinline__ void fetch(T (&r)[L]) {
    const bool kvalid = k < kend;
    const int ih0 = px.oh * sh - ph, iw0 = px.ow * sw - pw;
    const T* xb = x + (static_cast<int64_t>(px.nb) * C_ + static_cast<int64_t>(g) * Cg) * HW;
#pragma unroll
    for (int e = 0; e < L; ++e) {
      const int ih = ih0 + khd[e], iw = iw0 + kwd[e];
      const bool ok = kvalid && static_cast<unsigned>(ih) < static_cast<unsigned>(H) &&
                      static_cast<unsigned>(iw) < static_cast<unsigned>(W);
      r[e] = ok ? xb[coff[e] + ih0 * W + iw0] : T(0);
    }
    k += C::BK;
    px.ow += d_ow;
    if (px.ow >= OW) px.ow -= OW, ++px.oh;
    px.oh += d_oh;
    if (px.oh >= OH) px.oh -= OH, ++px.nb;
    px.nb += d_nb;
  }
  __device__ __forceinline__ void stash(T (*s)[C::BN + C::PAD], const T (&r)[L]) const {
#pragma unroll
    for (int e = 0; e < L; ++e) s[Map::k()][Map::m(e)] = r[e];
  }
};

template <class T>
__global__ void __launch_bounds__(igemm::kThreads, 2)
    conv_bwd_weight_kernel(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ out, ConvShape s,
                           int splits, int64_t chunk, int zoff) {
  using C = Cfg<T>;
  const int z = blockIdx.z + zoff;
  const int g = z / splits, sp = z - g * splits;
  const int M = s.OCg, ncol = s.Cg * s.KH * s.KW;
  const int kred = s.N * s.OH * s.OW;  // fits in 32 bits (make_shape)
  const int kbeg = static_cast<int>(sp * chunk);
  const int kend = static_cast<int>(kbeg + chunk < kred ? kbeg + chunk : kred);
  const int m0 = blockIdx.y * C::BM, n0 = blockIdx.x * C::BN;
  BwdWtA<T> la(dy + static_cast<int64_t>(g) * s.OCg * s.OH * s.OW, s, m0, kbeg, kend);
  BwdWtB<T> lb(x, s, g, n0, kbeg, kend);
  T acc[C::TM][C::TN];
  igemm::mainloop<T>(la, lb, ceil_div(kend - kbeg, C::BK), acc);
  T* o = out + static_cast<int64_t>(sp) * s.OC * ncol;
#pragma unroll
  for (int i = 0; i < C::TM; ++i) {
    const int m = m0 + igemm::row_of<C>(i);
    if (m >= M) continue;
    T* orow = o + static_cast<int64_t>(g * s.OCg + m) * ncol;
#pragma unroll
    for (int j = 0; j < C::TN; ++j) {
      const int n = n0 + igemm::col_of<C>(j);
      if (n < ncol) orow[n] = acc[i][j];
    }
  }
}

// ---- backward bias -------------------------------------------------------------------------------------------

template <class T> __global__ void conv_bwd_bias_kernel(const T* __restrict__ dy, T* __restrict__ db, int N, int OC, int ohw) {
  __shared__ double scratch[32];
  const int o = blockIdx.x;
  double acc = 0;
  for (int nb = 0; nb < N; ++nb) {
    const T* p = dy + (static_cast<int64_t>(nb) * OC + o) * ohw;
    for (int i = threadIdx.x; i < ohw; i += blockDim.x) acc += static_cast<double>(p[i]);
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) db[o] = static_cast<T>(acc);
}

// ---- host side -------------------------------------------------------------------------------------------------

constexpr int kMaxGridZ = 65535;

int to_int(int64_t v, const char* op, const char* what) {
  check_fits_int32(v, op, what);
  return static_cast<int>(v);
}

ConvShape make_shape(const char* op, const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dParams& p) {
  ConvShape s;
  s.N = to_int(x.shape[0], op, "batch");
  s.C = to_int(x.shape[1], op, "channels");
  s.H = to_int(x.shape[2], op, "height");
  s.W = to_int(x.shape[3], op, "width");
  s.OC = to_int(w.shape[0], op, "output channels");
  s.KH = to_int(w.shape[2], op, "kernel height");
  s.KW = to_int(w.shape[3], op, "kernel width");
  s.OH = to_int(y.shape[2], op, "output height");
  s.OW = to_int(y.shape[3], op, "output width");
  s.sh = to_int(p.stride_h, op, "stride");
  s.sw = to_int(p.stride_w, op, "stride");
  s.ph = to_int(p.pad_h, op, "padding");
  s.pw = to_int(p.pad_w, op, "padding");
  s.dh = to_int(p.dil_h, op, "dilation");
  s.dw = to_int(p.dil_w, op, "dilation");
  s.G = to_int(p.groups, op, "groups");
  s.Cg = s.C / s.G;
  s.OCg = s.OC / s.G;
  // per-image offsets and pixel counts are 32-bit inside the kernels
  to_int(checked_mul(checked_mul(s.C, s.H, op), s.W, op), op, "C*H*W");
  to_int(checked_mul(checked_mul(s.OC, s.OH, op), s.OW, op), op, "OC*OH*OW");
  to_int(checked_mul(checked_mul(s.N, s.H, op), s.W, op), op, "N*H*W");
  to_int(checked_mul(checked_mul(s.N, s.OH, op), s.OW, op), op, "N*OH*OW");
  to_int(checked_mul(checked_mul(checked_mul(s.OC, s.KH, op), s.KW, op), s.Cg, op), op, "weight size");
  CONVKIT_CHECK(s.ph < (1 << 28) && s.pw < (1 << 28), op, ": padding ", s.ph, "x", s.pw, " is too large");
  // tap offsets kh*dil may exceed the image but must not overflow
  to_int(checked_mul(s.KH, s.dh, op) + s.H + s.ph, op, "dilated kernel height");
  to_int(checked_mul(s.KW, s.dw, op) + s.W + s.pw, op, "dilated kernel width");
  return s;
}

// Launches in chunks of at most 65535 grid.z slices (groups x phases or groups x splits).
template <class F> void for_z_chunks(int64_t nz, F&& f) {
  for (int64_t z0 = 0; z0 < nz; z0 += kMaxGridZ) {
    int64_t cnt = nz - z0 < kMaxGridZ ? nz - z0 : kMaxGridZ;
    f(static_cast<int>(z0), static_cast<unsigned>(cnt));
  }
}

unsigned grid_dim(int64_t v, const char* op) {
  CONVKIT_CHECK(v <= 2147483647LL, op, ": problem too large for one launch");
  return static_cast<unsigned>(v < 1 ? 1 : v);
}

}  // namespace

void conv2d_forward_cuda(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p) {
  const char* op = "conv2d_forward";
  cuda_require(op);
  ConvShape s = make_shape(op, x, w, y, p);
  CONVKIT_DISPATCH_FLOAT(x.dtype, op, [&] {
    using C = Cfg<scalar_t>;
    const int64_t npix = static_cast<int64_t>(s.N) * s.OH * s.OW;
    const unsigned gx = grid_dim(ceil_div<int64_t>(npix, C::BN), op);
    const unsigned gy = grid_dim(ceil_div<int64_t>(s.OCg, C::BM), op);
    CONVKIT_CHECK(gy <= 65535, op, ": too many output channels per group for one launch");
    for_z_chunks(s.G, [&](int z0, unsigned nz) {
      launch(op, conv_fwd_kernel<scalar_t>, dim3(gx, gy, nz), igemm::kThreads, x.ptr<scalar_t>(), w.ptr<scalar_t>(),
             b ? b->ptr<scalar_t>() : static_cast<const scalar_t*>(nullptr), y.ptr<scalar_t>(), s, z0);
    });
  });
}

void conv2d_backward_data_cuda(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p) {
  const char* op = "conv2d_backward_data";
  cuda_require(op);
  ConvShape s = make_shape(op, dx, w, dy, p);
  CONVKIT_DISPATCH_FLOAT(dy.dtype, op, [&] {
    auto run = [&](auto cfg) {
      using C = decltype(cfg);
      // the largest phase has ceil(H / sh) x ceil(W / sw) pixels per image
      const int64_t cols = static_cast<int64_t>(s.N) * ceil_div(s.H, s.sh) * ceil_div(s.W, s.sw);
      const unsigned gx = grid_dim(ceil_div<int64_t>(cols, C::BN), op);
      const unsigned gy = grid_dim(ceil_div<int64_t>(s.Cg, C::BM), op);
      CONVKIT_CHECK(gy <= 65535, op, ": too many input channels per group for one launch");
      const int64_t nz = static_cast<int64_t>(s.G) * s.sh * s.sw;
      for_z_chunks(nz, [&](int z0, unsigned cnt) {
        launch(op, conv_bwd_data_kernel<scalar_t, C>, dim3(gx, gy, cnt), igemm::kThreads, dy.ptr<scalar_t>(),
               w.ptr<scalar_t>(), dx.ptr<scalar_t>(), s, z0);
      });
    };
    if (s.Cg <= igemm::CfgSmallM<scalar_t>::BM) run(igemm::CfgSmallM<scalar_t>{});
    else run(Cfg<scalar_t>{});
  });
}

void conv2d_backward_weight_cuda(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p) {
  const char* op = "conv2d_backward_weight";
  cuda_require(op);
  ConvShape s = make_shape(op, x, dw, dy, p);
  CONVKIT_DISPATCH_FLOAT(x.dtype, op, [&] {
    using C = Cfg<scalar_t>;
    const int ncol = s.Cg * s.KH * s.KW;
    const int64_t kred = static_cast<int64_t>(s.N) * s.OH * s.OW;
    const unsigned gx = grid_dim(ceil_div<int64_t>(ncol, C::BN), op);
    const unsigned gy = grid_dim(ceil_div<int64_t>(s.OCg, C::BM), op);
    CONVKIT_CHECK(gy <= 65535, op, ": too many output channels per group for one launch");
    int64_t chunk = 0;
    int splits = igemm::choose_splits(static_cast<int64_t>(gx) * gy * s.G, kred, C::BK, &chunk);
    const int64_t total = static_cast<int64_t>(s.OC) * ncol;
    // keep the partial sums within 256 MB of scratch
    while (splits > 1 && static_cast<double>(splits) * total * sizeof(scalar_t) > 256.0 * (1 << 20)) {
      splits = (splits + 1) / 2;
      chunk = ceil_div<int64_t>(ceil_div<int64_t>(kred, splits), C::BK) * C::BK;
      splits = static_cast<int>(ceil_div<int64_t>(kred, chunk));
    }
    scalar_t* out = dw.ptr<scalar_t>();
    if (splits > 1) out = static_cast<scalar_t*>(cuda_workspace(sizeof(scalar_t) * splits * total, 0));
    const int64_t nz = static_cast<int64_t>(s.G) * splits;
    for_z_chunks(nz, [&](int z0, unsigned cnt) {
      launch(op, conv_bwd_weight_kernel<scalar_t>, dim3(gx, gy, cnt), igemm::kThreads, x.ptr<scalar_t>(),
             dy.ptr<scalar_t>(), out, s, splits, chunk, z0);
    });
    if (splits > 1)
      launch(op, igemm::splitk_reduce<scalar_t>, grid_for(total, 256), 256, static_cast<const scalar_t*>(out),
             dw.ptr<scalar_t>(), total, splits);
  });
}

void conv2d_backward_bias_cuda(const Tensor& dy, const Tensor& db) {
  const char* op = "conv2d_backward_bias";
  cuda_require(op);
  const int N = to_int(dy.shape[0], op, "batch"), OC = to_int(dy.shape[1], op, "channels");
  const int ohw = to_int(checked_mul(dy.shape[2], dy.shape[3], op), op, "OH*OW");
  CONVKIT_CHECK(OC <= 2147483647, op, ": too many channels");
  CONVKIT_DISPATCH_FLOAT(dy.dtype, op, [&] {
    launch(op, conv_bwd_bias_kernel<scalar_t>, static_cast<unsigned>(OC), 256, dy.ptr<scalar_t>(),
           db.ptr<scalar_t>(), N, OC, ohw);
  });
}

}  // namespace convkit
