// conv2d_winograd_rows.cpp: 5-wide stride-1 convolutions (AlexNet conv2's 5 x 5) by Winograd's
// minimal filtering F(2, 5) along the rows only, the kernel's rows summed directly: forward, data
// gradient and weight gradient, their products through convkit's GEMM. The 2-D F(2 x 2, 3 x 3) of
// conv2d_winograd.cpp is the model; read it first.
//
// Each output row is cut into pairs of outputs (tiles); tile tx of output row y reads, for kernel row
// ky, the 6 values of padded input row y + ky at columns 2 tx .. 2 tx + 5. With the 1-D transforms
//   u = G f                 (per output channel o, input channel c and kernel row ky: the row's 5 taps)
//   v = B^T d               (per input channel, padded input row and tile)
//   y_t = A^T [sum over c and ky of u (.) v]
// each of the 6 transform positions xi is one matrix product over (kernel row, input channel):
//   M_xi[o, (y, tx)] = sum over (ky, c) of U_xi[o, (ky, c)] V_xi[c, y + ky, tx],
// OCg x (KH Cg) by (KH Cg) x tiles, doing 6 multiply-adds per 2 outputs, channel and kernel row where
// the convolution does 10 (1.67 times fewer; a 27-wide output is 14 tiles, 28 columns: 1.61 times).
// The product's right-hand side is never written: its row (ky, c) over a run of whole output rows is
// one contiguous run of V_xi's plane c starting ky rows down, and the GEMM's packer copies it from
// there (gemm_packer). The backward passes are the adjoints of the same map, with the same matrices:
//   data gradient    dV_xi = U_xi^T (A dy_t)_xi per (ky, c), added into plane c ky rows down; then
//                    each padded input row's tiles B dv_t added into the row (tiles overlap by 4)
//   weight gradient  dU_xi[o, (ky, c)] = sum over tiles of (A dy_t)_xi V_xi[c, y + ky, tx]; dw = G^T dU
// With the points 0, 1, -1, 2, -2 and infinity (the same 6 x 6 B^T as Lavin and Gray's F(4, 3)):
//   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
//   G   = [1/4 0 0 0 0; -1/6 -1/6 -1/6 -1/6 -1/6; -1/6 1/6 -1/6 1/6 -1/6;
//          1/24 1/12 1/6 1/3 2/3; 1/24 -1/12 1/6 -1/3 2/3; 0 0 0 0 1]
//   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 1]
//
// Rounding: as in the 2-D route, each output is a sum over the same products passed through
// transforms that add values which later cancel; the error is bounded by about (KH Cg + 14) u times
// the same map run on absolute values (tests/reference/winograd.py, rows_*; tests/test_conv2d.py,
// rows_bounds). On AlexNet conv2 in float32 the relative RMS error is 0.8-1.0e-6 (the GEMM path's
// 0.3-1.0e-6, PyTorch's 0.4-0.9e-6: benchmarks/conv_accuracy.py). The 2-D F(2 x 2, 5 x 5), 36 points
// over both axes, models about 8 times worse and is not used. An inf in the input reaches only the
// outputs whose window holds it (a tile's first column feeds only its first output, its last only
// its second). CONVKIT_CONV_WINOGRAD=0 / 1 turns this route off / on as it does the 2-D one.
//
// Work: chunks of whole output rows of one image, about kTargetTiles tiles (AlexNet conv2: one whole
// 27 x 27 image, 378 tiles; chunks of 4 or 8 rows were 5-15% slower: every product streams its
// 128 x 240 packed weights once per chunk). The units of work are image-groups (n, g), so that one
// image of a grouped layer still gives every thread work (conv2 at batch 1 on 2 threads: 0.75-0.80 of
// the GEMM path's time). Threads: the forward takes (image-group, chunk) items from a shared counter;
// the data gradient whole image-groups from a counter (each one's dV summed in one thread's planes;
// a padded input row is transformed back and stored once no later chunk adds to it); the weight
// gradient a fixed range of image-groups per thread, each summing into its own dU (zero for the
// groups outside its range), added up in thread order at the end. The transforms run over whole
// rows of tiles (plain vector loops on the rows' even and odd columns).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

#include "convkit/parallel.h"
#include "gemm/gemm.h"
#include "ops/conv2d_impl.h"

namespace convkit {
namespace conv2d_detail {
namespace {

constexpr int kXi = 6;  // 6 transform positions
// Workspace slots held across gemm calls (gemm.cpp packs its panels in slots 6 and 7).
constexpr int kSlotLine = 0;     // one zero-padded row of input (forward) or of dx (data gradient)
constexpr int kSlotRows = 1;     // data gradient: the thread's dV of one image-group, [xi][c][row][tx]
constexpr int kSlotU = 3;        // U in the GEMM's packed layout, per (g, xi) (calling thread)
constexpr int kSlotV = 4;        // the thread's V: [xi][c][input row][tx] of one chunk and group
constexpr int kSlotM = 5;        // the thread's M (or the transformed dy), [xi][o][tile]; data gradient: + one product
constexpr int kSlotPartial = 8;  // weight gradient: the thread's dU sums, [g][xi][o][(ky, c)]
constexpr int64_t kTargetTiles = 400;
constexpr std::size_t kMaxThreadBytes = std::size_t(256) << 20;

struct Plan {
  Dims d;
  int64_t ph, pw;
  int64_t tw;    // tiles per output row
  int64_t Wp;    // a padded row: 2 tw + 4 columns
  int64_t Kd;    // the products' inner size, KH Cg: index ky * Cg + c
  int64_t RP;    // padded input rows a whole image's outputs read: OH + KH - 1
  int64_t rows;  // output rows per chunk
  int nt;
};

bool plan_for(const Dims& d, const Conv2dParams& p, DType dtype, Plan* out) {
  const int s = winograd_setting();
  if (s == 0) return false;
  if (d.KW != 5 || p.stride_h != 1 || p.stride_w != 1 || p.dil_h != 1 || p.dil_w != 1) return false;
  if (p.pad_w > 4 || p.pad_h >= d.KH) return false;
  Plan P;
  P.d = d, P.ph = p.pad_h, P.pw = p.pad_w;
  P.tw = (d.OW + 1) / 2, P.Wp = 2 * P.tw + 4, P.Kd = d.KH * d.Cg, P.RP = d.OH + d.KH - 1;
  P.nt = threads_for(double(d.N) * double(d.OC) * double(d.OH * d.OW) * double(d.Cg) * double(d.KH * d.KW));
  if (s != 1) {
    // auto: float32, 5 x 5, 32+ input and 64+ output channels per group, as many image-groups (the
    // units of work) as threads
    if (dtype != DType::Float32 || d.KH != 5 || d.Cg < 32 || d.OCg < 64 || P.tw < 6 || d.N * d.G < P.nt ||
        d.N * d.OH * d.OW < 512)
      return false;
  }
  P.rows = std::clamp<int64_t>((kTargetTiles + P.tw / 2) / P.tw, 1, d.OH);
  const double elem = dtype == DType::Float32 ? 4.0 : 8.0;
  const double tiles = double(P.rows * P.tw), rin = double(P.rows + d.KH - 1);
  const double per_thread = elem * (kXi * (double(d.Cg) * rin * double(P.tw) + double(d.OCg) * tiles) +
                                    double(kXi) * d.G * d.OCg * P.Kd + kXi * double(d.Cg) * P.RP * P.tw +
                                    double(P.Kd) * tiles);
  if (per_thread > double(kMaxThreadBytes)) return false;
  *out = P;
  return true;
}

// A chunk: output rows [y0, y1) of image n (tiles t = (y - y0) * tw + tx, tn of them), reading
// padded input rows y0 .. y1 + KH - 2 (rin of them).
struct Chunk {
  int64_t n, y0, y1, tn, rin;
};
inline Chunk chunk_at(const Plan& P, int64_t n, int64_t y0) {
  const int64_t y1 = std::min(P.d.OH, y0 + P.rows);
  return Chunk{n, y0, y1, (y1 - y0) * P.tw, y1 - y0 + P.d.KH - 1};
}
template <class F>
void chunks_of(const Plan& P, int64_t n, F&& f) {
  for (int64_t y0 = 0; y0 < P.d.OH; y0 += P.rows) f(chunk_at(P, n, y0));
}

// The weights' 1-D transforms on single values: u = G f and its adjoint f = G^T u.
template <class T>
inline void g6(const T* f, T* u) {
  const T even = f[0] + f[2] + f[4], odd = f[1] + f[3];
  const T e2 = f[0] + T(4) * f[2] + T(16) * f[4], o2 = T(2) * f[1] + T(8) * f[3];
  u[0] = f[0] / T(4), u[1] = -(even + odd) / T(6), u[2] = -(even - odd) / T(6);
  u[3] = (e2 + o2) / T(24), u[4] = (e2 - o2) / T(24), u[5] = f[4];
}
template <class T>
inline void g_adj6(const T* u, T* f) {
  const T s12 = (u[1] + u[2]) / T(6), d12 = (u[2] - u[1]) / T(6), s34 = (u[3] + u[4]) / T(24),
          d34 = (u[3] - u[4]) / T(24);
  f[0] = u[0] / T(4) - s12 + s34;
  f[1] = d12 + T(2) * d34;
  f[2] = -s12 + T(4) * s34;
  f[3] = d12 + T(8) * d34;
  f[4] = -s12 + T(16) * s34 + u[5];
}
// The transformed weights in the GEMM's packed layout, one PackedA per (g, xi): U_xi (OCg x KH Cg)
// or, for the data gradient, U_xi^T (KH Cg x OCg).
template <class T>
std::vector<PackedA<T>> packed_weights(const Plan& P, const T* w, bool trans) {
  const Dims& d = P.d;
  const int64_t M = trans ? P.Kd : d.OCg, K = trans ? d.OCg : P.Kd;
  const PackedALayout L = gemm_packed_a_layout<T>(M, K);
  const PackedIndex at(L);
  const int64_t per = L.mpad * K;
  T* up = workspace_as<T>(static_cast<std::size_t>(per * d.G * kXi), kSlotU);
  std::vector<PackedA<T>> pa(static_cast<std::size_t>(d.G * kXi));
  for (int64_t r = 0; r < d.G * kXi; ++r) {
    pa[r] = PackedA<T>{up + r * per, M, K, static_cast<int>(L.mr)};
    for (int64_t i = M; i < L.mpad; ++i)
      for (int64_t k = 0; k < K; ++k) up[r * per + at(i, k)] = T(0);
  }
  maybe_parallel(d.OC, P.nt, [&](int64_t o0, int64_t o1) {
    for (int64_t oc = o0; oc < o1; ++oc) {
      const int64_t g = oc / d.OCg, o = oc % d.OCg;
      for (int64_t c = 0; c < d.Cg; ++c)
        for (int64_t ky = 0; ky < d.KH; ++ky) {
          T u[kXi];
          g6(w + ((oc * d.Cg + c) * d.KH + ky) * 5, u);
          const int64_t idx = trans ? at(ky * d.Cg + c, o) : at(o, ky * d.Cg + c);
          for (int xi = 0; xi < kXi; ++xi) up[(g * kXi + xi) * per + idx] = u[xi];
        }
    }
  });
  return pa;
}

// The transforms over a whole row of tiles at once, on deinterleaved rows (ev[i] = row[2 i],
// od[i] = row[2 i + 1]): every loop is a plain vector loop over the tiles. Not inlined, so that the
// compiler keeps the pointers' restrict.
#define CK_R T* __restrict
#define CK_C const T* __restrict
// v_xi[tx] = (B^T d_tx)[xi], d_tx = row[2 tx .. 2 tx + 5] (ev, od: tw + 2 values)
template <class T>
__attribute__((noinline)) void bt6_row(CK_C ev, CK_C od, CK_R v0, CK_R v1, CK_R v2, CK_R v3, CK_R v4, CK_R v5,
                                       int64_t tw) {
  for (int64_t t = 0; t < tw; ++t) {
    const T d0 = ev[t], d1 = od[t], d2 = ev[t + 1], d3 = od[t + 1], d4 = ev[t + 2], d5 = od[t + 2];
    const T a = d4 - T(4) * d2, b = d3 - T(4) * d1, c = d4 - d2, e = T(2) * (d3 - d1);
    v0[t] = T(4) * d0 - T(5) * d2 + d4, v1[t] = a + b, v2[t] = a - b, v3[t] = c + e, v4[t] = c - e;
    v5[t] = T(4) * d1 - T(5) * d3 + d5;
  }
}
template <class T>
__attribute__((noinline)) void add_run(CK_C src, CK_R dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}
// The data gradient's transform back, s_l = (B v)_l for n tile positions at once ([l][n] in s).
template <class T>
__attribute__((noinline)) void b_adj6_run(CK_C v0, CK_C v1, CK_C v2, CK_C v3, CK_C v4, CK_C v5, CK_R s, int64_t n) {
  T* __restrict s0 = s;
  T* __restrict s1 = s + n;
  T* __restrict s2 = s + 2 * n;
  T* __restrict s3 = s + 3 * n;
  T* __restrict s4 = s + 4 * n;
  T* __restrict s5 = s + 5 * n;
  for (int64_t t = 0; t < n; ++t) {
    const T p = v1[t] + v2[t], q = v2[t] - v1[t], m = v3[t] + v4[t], e = v4[t] - v3[t];
    s0[t] = T(4) * v0[t];
    s1[t] = T(4) * q + T(2) * e + T(4) * v5[t];
    s2[t] = -T(5) * v0[t] - T(4) * p - m;
    s3[t] = -q - T(2) * e - T(5) * v5[t];
    s4[t] = v0[t] + p + m;
    s5[t] = v5[t];
  }
}
// One padded row of dx from its tiles' s_l (stride n apart, tw tiles): tile tx adds its 6 values at
// columns 2 tx .. 2 tx + 5; ev, od: the row's even and odd columns (tw + 2 each).
template <class T>
__attribute__((noinline)) void place_row(CK_C s, int64_t n, CK_R ev, CK_R od, int64_t tw) {
  for (int64_t t = 0; t < tw + 2; ++t) ev[t] = T(0), od[t] = T(0);
  for (int64_t t = 0; t < tw; ++t) ev[t] += s[t], od[t] += s[n + t];
  for (int64_t t = 0; t < tw; ++t) ev[t + 1] += s[2 * n + t], od[t + 1] += s[3 * n + t];
  for (int64_t t = 0; t < tw; ++t) ev[t + 2] += s[4 * n + t], od[t + 2] += s[5 * n + t];
}
// m_xi[tx] = (A e_tx)[xi], e_tx = (ev[tx], od[tx])
template <class T>
__attribute__((noinline)) void a_adj6_row(CK_C ev, CK_C od, CK_R m0, CK_R m1, CK_R m2, CK_R m3, CK_R m4, CK_R m5,
                                          int64_t tw) {
  for (int64_t t = 0; t < tw; ++t) {
    const T e0 = ev[t], e1 = od[t];
    m0[t] = e0, m1[t] = e0 + e1, m2[t] = e0 - e1, m3[t] = e0 + T(2) * e1, m4[t] = e0 - T(2) * e1, m5[t] = e1;
  }
}
// ev[tx], od[tx] = (A^T m_tx) + bias
template <class T>
__attribute__((noinline)) void at6_row(CK_C m0, CK_C m1, CK_C m2, CK_C m3, CK_C m4, CK_C m5, T bias, CK_R ev,
                                       CK_R od, int64_t tw) {
  for (int64_t t = 0; t < tw; ++t) {
    ev[t] = m0[t] + m1[t] + m2[t] + m3[t] + m4[t] + bias;
    od[t] = m1[t] - m2[t] + T(2) * (m3[t] - m4[t]) + m5[t] + bias;
  }
}
template <class T>
__attribute__((noinline)) void deinterleave(CK_C row, CK_R ev, CK_R od, int64_t n) {
  for (int64_t i = 0; i < n; ++i) ev[i] = row[2 * i], od[i] = row[2 * i + 1];
}
template <class T>
__attribute__((noinline)) void interleave(CK_C ev, CK_C od, CK_R row, int64_t n) {
  for (int64_t i = 0; i < n; ++i) row[2 * i] = ev[i], row[2 * i + 1] = od[i];
}
#undef CK_R
#undef CK_C

// A thread's row scratch: a padded row of Wp values, its two halves (tw + 2 each) and 6 tw more.
inline int64_t line_scratch(const Plan& P) { return P.Wp + 2 * (P.tw + 2) + 6 * P.tw; }

// V[xi][c][r][tx] = (B^T d)[xi] for the chunk's padded input rows r and the channels of group g
// (plane c: rin rows of tw values).
template <class T>
void transform_input(const Plan& P, const T* x, const Chunk& k, int64_t g, T* V, T* line) {
  const Dims& d = P.d;
  const int64_t tw = P.tw, plane = k.rin * tw, xs = d.Cg * plane;
  T* ev = line + P.Wp;
  T* od = ev + tw + 2;
  std::fill(line, line + P.Wp, T(0));
  for (int64_t c = 0; c < d.Cg; ++c) {
    const T* src = x + (k.n * d.C + g * d.Cg + c) * d.H * d.W;
    for (int64_t r = 0; r < k.rin; ++r) {
      T* v = V + c * plane + r * tw;
      const int64_t h = k.y0 + r - P.ph;
      if (h < 0 || h >= d.H) {
        for (int xi = 0; xi < kXi; ++xi) std::fill(v + xi * xs, v + xi * xs + tw, T(0));
        continue;
      }
      std::memcpy(line + P.pw, src + h * d.W, d.W * sizeof(T));
      deinterleave(line, ev, od, tw + 2);
      bt6_row(ev, od, v, v + xs, v + 2 * xs, v + 3 * xs, v + 4 * xs, v + 5 * xs, tw);
    }
  }
}

// Y[xi][o][u][tx] = (A dy_t)[xi] for the tiles of output rows y0 + u, u < nrows, of image n (dy_t:
// the tile's 2 values, 0 past the edge; a row outside the output all 0).
template <class T>
void transform_dy(const Plan& P, const T* dy, int64_t n, int64_t y0, int64_t nrows, int64_t g, T* Y, T* line) {
  const Dims& d = P.d;
  const int64_t tw = P.tw, plane = nrows * tw, xs = d.OCg * plane;
  T* ev = line + P.Wp;
  T* od = ev + tw + 2;
  line[2 * tw - 1] = T(0);  // past an odd output's last column
  for (int64_t o = 0; o < d.OCg; ++o) {
    const T* src = dy + (n * d.OC + g * d.OCg + o) * d.OH * d.OW;
    for (int64_t u = 0; u < nrows; ++u) {
      T* m = Y + o * plane + u * tw;
      const int64_t y = y0 + u;
      if (y < 0 || y >= d.OH) {
        for (int xi = 0; xi < kXi; ++xi) std::fill(m + xi * xs, m + xi * xs + tw, T(0));
        continue;
      }
      std::memcpy(line, src + y * d.OW, d.OW * sizeof(T));
      deinterleave(line, ev, od, tw);
      a_adj6_row(ev, od, m, m + xs, m + 2 * xs, m + 3 * xs, m + 4 * xs, m + 5 * xs, tw);
    }
  }
}

// y[n, g * OCg + o] rows y0 .. y1 from M[xi][o][t] (+ bias), the last column cropped.
template <class T>
void transform_output(const Plan& P, const T* M, const T* bias, const Chunk& k, int64_t g, T* y, T* line) {
  const Dims& d = P.d;
  const int64_t tw = P.tw, tn = k.tn, xs = d.OCg * tn;
  T* ev = line + P.Wp;
  T* od = ev + tw + 2;
  for (int64_t o = 0; o < d.OCg; ++o) {
    const T bv = bias ? bias[g * d.OCg + o] : T(0);
    T* dst = y + (k.n * d.OC + g * d.OCg + o) * d.OH * d.OW;
    for (int64_t yy = k.y0; yy < k.y1; ++yy) {
      const T* m = M + o * tn + (yy - k.y0) * tw;
      at6_row(m, m + xs, m + 2 * xs, m + 3 * xs, m + 4 * xs, m + 5 * xs, bv, ev, od, tw);
      T* q = dst + yy * d.OW;
      interleave(ev, od, q, d.OW / 2);
      if (d.OW % 2) q[d.OW - 1] = ev[tw - 1];
    }
  }
}

// The packer of the forward's right-hand side for position xi: row (ky, c), columns the chunk's
// tiles = V_xi's plane c from row ky on (contiguous). NR: the GEMM's panel width when known at
// compile time (whole panels then copy as fixed-size blocks), else 0.
template <class T, int NR>
void pack_rows(int64_t Cg, int64_t tw, int64_t plane, const T* Vxi, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
               int nr_, T* dst) {
  const int64_t nr = NR ? NR : nr_;
  for (int64_t j = 0; j < nc; j += nr) {  // panel by panel, each written in order
    const int64_t n = std::min<int64_t>(nr, nc - j);
    int64_t ky = p0 / Cg, c = p0 % Cg;
    for (int64_t kk = 0; kk < kc; ++kk, dst += nr) {
      const T* src = Vxi + c * plane + ky * tw + j0 + j;
      if (n == nr) {
        std::memcpy(dst, src, nr * sizeof(T));  // a fixed size when NR is: a few vector moves
      } else {
        for (int64_t q = 0; q < n; ++q) dst[q] = src[q];
        for (int64_t q = n; q < nr; ++q) dst[q] = T(0);
      }
      if (++c == Cg) c = 0, ++ky;
    }
  }
}
template <class T>
BPacker<T> rows_packer(const Plan& P, int64_t Cg, int64_t rin, const T* Vxi) {
  const int64_t tw = P.tw, plane = rin * tw;
  return [=](int64_t p0, int64_t kc, int64_t j0, int64_t nc, int nr, T* dst) {
    if (nr == 16) return pack_rows<T, 16>(Cg, tw, plane, Vxi, p0, kc, j0, nc, nr, dst);
    if (nr == 32) return pack_rows<T, 32>(Cg, tw, plane, Vxi, p0, kc, j0, nc, nr, dst);
    if (nr == 8) return pack_rows<T, 8>(Cg, tw, plane, Vxi, p0, kc, j0, nc, nr, dst);
    pack_rows<T, 0>(Cg, tw, plane, Vxi, p0, kc, j0, nc, nr, dst);
  };
}

// The weight gradient's right-hand side for position xi, op(B)[tile][(ky, c)] = V_xi[c][row y + ky][tx]:
// column (ky, c) is V_xi's plane c from row ky on, read down the tiles.
template <class T, int NR>
void pack_tiles(int64_t Cg, int64_t tw, int64_t plane, const T* Vxi, int64_t p0, int64_t kc, int64_t j0,
                int64_t nc, int nr_, T* dst) {
  const int64_t nr = NR ? NR : nr_;
  const T* src[64];  // the panel's columns, each read down the tiles
  CONVKIT_CHECK(nr <= 64, "conv2d Winograd rows: GEMM panel width ", nr, " over 64");
  for (int64_t j = 0; j < nc; j += nr, dst += kc * nr) {
    const int64_t n = std::min<int64_t>(nr, nc - j);
    for (int64_t q = 0; q < n; ++q) {
      const int64_t col = j0 + j + q, ky = col / Cg, c = col % Cg;
      src[q] = Vxi + c * plane + ky * tw + p0;
    }
    T* out = dst;
    if (n == nr) {
      int64_t kk = 0;
#if defined(__SSE2__)
      if constexpr (std::is_same_v<T, float> && NR % 4 == 0 && NR > 0) {
        for (; kk + 4 <= kc; kk += 4, out += 4 * nr)  // 4 x 4 blocks through register transposes
          for (int64_t q = 0; q < nr; q += 4) {
            __m128 r0 = _mm_loadu_ps(src[q] + kk), r1 = _mm_loadu_ps(src[q + 1] + kk);
            __m128 r2 = _mm_loadu_ps(src[q + 2] + kk), r3 = _mm_loadu_ps(src[q + 3] + kk);
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            _mm_storeu_ps(out + q, r0), _mm_storeu_ps(out + nr + q, r1);
            _mm_storeu_ps(out + 2 * nr + q, r2), _mm_storeu_ps(out + 3 * nr + q, r3);
          }
      }
#endif
      for (; kk < kc; ++kk, out += nr)
        for (int64_t q = 0; q < nr; ++q) out[q] = src[q][kk];
    } else {
      for (int64_t kk = 0; kk < kc; ++kk, out += nr) {
        for (int64_t q = 0; q < n; ++q) out[q] = src[q][kk];
        for (int64_t q = n; q < nr; ++q) out[q] = T(0);
      }
    }
  }
}
template <class T>
BPacker<T> tiles_packer(const Plan& P, const Chunk& k, const T* Vxi) {
  const int64_t Cg = P.d.Cg, tw = P.tw, plane = k.rin * tw;
  return [=](int64_t p0, int64_t kc, int64_t j0, int64_t nc, int nr, T* dst) {
    if (nr == 16) return pack_tiles<T, 16>(Cg, tw, plane, Vxi, p0, kc, j0, nc, nr, dst);
    if (nr == 32) return pack_tiles<T, 32>(Cg, tw, plane, Vxi, p0, kc, j0, nc, nr, dst);
    if (nr == 8) return pack_tiles<T, 8>(Cg, tw, plane, Vxi, p0, kc, j0, nc, nr, dst);
    pack_tiles<T, 0>(Cg, tw, plane, Vxi, p0, kc, j0, nc, nr, dst);
  };
}

template <class T>
void forward_t(const Plan& P, const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y) {
  const Dims& d = P.d;
  const std::vector<PackedA<T>> U = packed_weights(P, w.ptr<T>(), false);
  const T* xs = x.ptr<T>();
  const T* bs = b ? b->ptr<T>() : nullptr;
  T* ys = y.ptr<T>();
  const int64_t tmax = P.rows * P.tw, rmax = P.rows + d.KH - 1, per_image = (d.OH + P.rows - 1) / P.rows;
  const int64_t items = d.N * d.G * per_image;  // (image, group, chunk), the chunks innermost
  std::atomic<int64_t> next{0};
  run_threads(P.nt, [&](int, int) {
    T* V = workspace_as<T>(static_cast<std::size_t>(kXi * d.Cg * rmax * P.tw), kSlotV);
    T* M = workspace_as<T>(static_cast<std::size_t>(kXi * d.OCg * tmax), kSlotM);
    T* line = workspace_as<T>(static_cast<std::size_t>(line_scratch(P)), kSlotLine);
    for (int64_t it; (it = next.fetch_add(1, std::memory_order_relaxed)) < items;) {
      const int64_t ng = it / per_image, g = ng % d.G;
      const Chunk k = chunk_at(P, ng / d.G, it % per_image * P.rows);
      transform_input(P, xs, k, g, V, line);
      for (int xi = 0; xi < kXi; ++xi)
        gemm_packer(U[g * kXi + xi], k.tn, T(1), rows_packer(P, d.Cg, k.rin, V + xi * d.Cg * k.rin * P.tw), T(0),
                    M + xi * d.OCg * k.tn, k.tn, 1);
      transform_output(P, M, bs, k, g, ys, line);
    }
  });
}

template <class T>
void backward_data_t(const Plan& P, const Tensor& dy, const Tensor& w, const Tensor& dx) {
  const Dims& d = P.d;
  const std::vector<PackedA<T>> Ut = packed_weights(P, w.ptr<T>(), true);
  const T* dys = dy.ptr<T>();
  T* dxs = dx.ptr<T>();
  // dV of one image-group, [xi][c][padded input row][tx]: a chunk adds plane c of its product's
  // rows (ky, c) ky rows down
  const int64_t tw = P.tw, tmax = P.rows * tw, plane = P.RP * tw, xs = d.Cg * plane;
  std::atomic<int64_t> next{0};
  run_threads(P.nt, [&](int, int) {  // whole image-groups per thread: their rows overlap
    T* Y = workspace_as<T>(static_cast<std::size_t>(kXi * d.OCg * tmax + P.Kd * tmax), kSlotM);
    T* prod = Y + kXi * d.OCg * tmax;
    T* dv = workspace_as<T>(static_cast<std::size_t>(kXi * xs), kSlotRows);
    T* line = workspace_as<T>(static_cast<std::size_t>(line_scratch(P) + 6 * (P.rows + d.KH) * tw), kSlotLine);
    T* ev = line + P.Wp;
    T* od = ev + tw + 2;
    T* sc = line + line_scratch(P);
    for (int64_t ng; (ng = next.fetch_add(1, std::memory_order_relaxed)) < d.N * d.G;) {
      const int64_t n = ng / d.G, g = ng % d.G;
      std::fill(dv, dv + kXi * xs, T(0));
      int64_t done = 0;  // padded rows below this one are final and stored
      chunks_of(P, n, [&](const Chunk& k) {
        transform_dy(P, dys, k.n, k.y0, k.y1 - k.y0, g, Y, line);
        for (int xi = 0; xi < kXi; ++xi) {
          gemm(Ut[g * kXi + xi], false, k.tn, T(1), Y + xi * d.OCg * k.tn, k.tn, T(0), prod, k.tn, 1);
          for (int64_t ky = 0; ky < d.KH; ++ky)
            for (int64_t c = 0; c < d.Cg; ++c)
              add_run(prod + (ky * d.Cg + c) * k.tn, dv + xi * xs + c * plane + (k.y0 + ky) * tw, k.tn);
        }
        // padded rows before y1 get nothing from later chunks (row r is read by outputs r - KH + 1 .. r);
        // those inside the image are transformed back and stored
        const int64_t upto = k.y1 == d.OH ? P.RP : k.y1;
        const int64_t r0 = std::max(done, P.ph), r1 = std::min(upto, P.ph + d.H), m = (r1 - r0) * tw;
        done = upto;
        if (r0 >= r1) return;
        for (int64_t c = 0; c < d.Cg; ++c) {
          const T* v = dv + c * plane + r0 * tw;
          b_adj6_run(v, v + xs, v + 2 * xs, v + 3 * xs, v + 4 * xs, v + 5 * xs, sc, m);
          for (int64_t r = r0; r < r1; ++r) {
            place_row(sc + (r - r0) * tw, m, ev, od, tw);
            interleave(ev, od, line, tw + 2);
            std::memcpy(dxs + ((n * d.C + g * d.Cg + c) * d.H + r - P.ph) * d.W, line + P.pw, d.W * sizeof(T));
          }
        }
      });
    }
  });
}

template <class T>
void backward_weight_t(const Plan& P, const Tensor& x, const Tensor& dy, const Tensor& dw) {
  const Dims& d = P.d;
  const T* xs = x.ptr<T>();
  const T* dys = dy.ptr<T>();
  const int64_t tmax = P.rows * P.tw, rmax = P.rows + d.KH - 1, ustride = d.OCg * P.Kd;
  const std::size_t usize = static_cast<std::size_t>(d.G * kXi * ustride);
  std::vector<T*> partial(static_cast<std::size_t>(P.nt), nullptr);
  run_threads(P.nt, [&](int t, int nt) {
    // a fixed range of image-groups (n, g) per thread, so each dU sums its images in one order
    const int64_t items = d.N * d.G, i0 = items * t / nt, i1 = items * (t + 1) / nt;
    if (i0 >= i1) return;
    T* du = workspace_as<T>(usize, kSlotPartial);
    T* V = workspace_as<T>(static_cast<std::size_t>(kXi * d.Cg * rmax * P.tw), kSlotV);
    T* Y = workspace_as<T>(static_cast<std::size_t>(kXi * d.OCg * tmax), kSlotM);
    T* line = workspace_as<T>(static_cast<std::size_t>(line_scratch(P)), kSlotLine);
    partial[t] = du;
    std::vector<char> first(static_cast<std::size_t>(d.G), 1);  // group g's dU not written yet
    for (int64_t ng = i0; ng < i1; ++ng) {
      const int64_t g = ng % d.G;
      chunks_of(P, ng / d.G, [&](const Chunk& k) {
        transform_input(P, xs, k, g, V, line);
        transform_dy(P, dys, k.n, k.y0, k.y1 - k.y0, g, Y, line);
        for (int xi = 0; xi < kXi; ++xi)
          gemm_packer(false, d.OCg, P.Kd, k.tn, T(1), Y + xi * d.OCg * k.tn, k.tn,
                      tiles_packer(P, k, V + xi * d.Cg * k.rin * P.tw), first[g] ? T(0) : T(1),
                      du + (g * kXi + xi) * ustride, P.Kd, 1);
        first[g] = 0;
      });
    }
    for (int64_t g = 0; g < d.G; ++g)  // groups outside this thread's range add nothing
      if (first[g]) std::fill(du + g * kXi * ustride, du + (g + 1) * kXi * ustride, T(0));
  });
  T* total = sum_in_thread_order(partial, static_cast<int64_t>(usize), P.nt);
  // dw[oc][c][ky] = G^T dU over xi
  T* dws = dw.ptr<T>();
  maybe_parallel(d.OC, P.nt, [&](int64_t o0, int64_t o1) {
    for (int64_t oc = o0; oc < o1; ++oc) {
      const int64_t g = oc / d.OCg, o = oc % d.OCg;
      for (int64_t c = 0; c < d.Cg; ++c)
        for (int64_t ky = 0; ky < d.KH; ++ky) {
          T u[kXi];
          for (int xi = 0; xi < kXi; ++xi) u[xi] = total[(g * kXi + xi) * ustride + o * P.Kd + ky * d.Cg + c];
          g_adj6(u, dws + ((oc * d.Cg + c) * d.KH + ky) * 5);
        }
    }
  });
}

}  // namespace

bool forward_winograd_rows(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y,
                           const Conv2dParams& p) {
  Plan P;
  if (!plan_for(dims_of(x, w, y, p), p, x.dtype, &P)) return false;
  CONVKIT_DISPATCH_FLOAT(x.dtype, "conv2d_forward", [&] { forward_t<scalar_t>(P, x, w, b, y); });
  return true;
}

bool backward_data_winograd_rows(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p) {
  Plan P;
  if (!plan_for(dims_of(dx, w, dy, p), p, dy.dtype, &P)) return false;
  CONVKIT_DISPATCH_FLOAT(dy.dtype, "conv2d_backward_data", [&] { backward_data_t<scalar_t>(P, dy, w, dx); });
  return true;
}

bool backward_weight_winograd_rows(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p) {
  Plan P;
  if (!plan_for(dims_of(x, dw, dy, p), p, x.dtype, &P)) return false;
  CONVKIT_DISPATCH_FLOAT(x.dtype, "conv2d_backward_weight", [&] { backward_weight_t<scalar_t>(P, x, dy, dw); });
  return true;
}

}  // namespace conv2d_detail
}  // namespace convkit
