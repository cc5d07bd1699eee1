// conv2d_winograd.cpp: 3 x 3, stride-1 convolutions by Winograd's minimal filtering F(2 x 2, 3 x 3)
// (S. Winograd, 1980; for CNNs A. Lavin and S. Gray, "Fast Algorithms for Convolutional Neural
// Networks", CVPR 2016): forward, data gradient and weight gradient, their products through
// convkit's GEMM.
//
// The output is cut into 2 x 2 tiles; tile t reads a 4 x 4 patch d_t of the (zero-padded) input,
// the patch at rows 2 ty - pad_h .., columns 2 tx - pad_w ... With the 4 x 4 transforms
//   U = G w G^T            (per output channel o and input channel c: the 3 x 3 filter, once per call)
//   V_t = B^T d_t B        (per input channel and tile)
//   y_t = A^T [sum over c of U (.) V_t] A      ((.): elementwise; y_t the tile's 2 x 2 outputs)
// each of the 16 positions xi of the 4 x 4 transform domain is one matrix product over the
// channels, M_xi[o, t] = sum over c of U_xi[o, c] V_xi[c, t]: 16 products of OCg x Cg by Cg x tiles
// doing 16 multiply-adds per 4 outputs and channel where the convolution does 36 (2.25 times fewer;
// a 13 x 13 output is 7 x 7 tiles, 16% more outputs than it has: 1.94 times fewer).
// The backward passes are the adjoints of that same linear map, with the same matrices:
//   data gradient    dV_t = sum over o of U (.) (A dy_t A^T), then dd_t = B dV_t B^T added into the
//                    patch (patches overlap by 2 rows / columns)
//   weight gradient  dw = G^T [sum over t of (A dy_t A^T) (.) V_t] G
// (each a product per xi too: U_xi^T by dY_xi, and dY_xi by V_xi^T summed over the tiles).
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 -1 0 1]   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//   A^T = [1 1 1 0; 0 1 -1 1]
// (Toom-Cook at the points 0, 1, -1 and infinity; B^T d B only adds and subtracts input values.)
//
// Rounding: every output is still a sum over the same products, but the terms pass through the
// transforms, which add values that later cancel. The error is bounded by about (Cg + 12) u times
// the same map applied to |x|, |w| and the matrices' absolute values (tests/reference/winograd.py),
// up to (8/3)^2 ~ 7 times the direct sum's sum of |terms| at equal magnitudes; in float32 typically
// a few units in the seventh digit. Non-finite input: an inf reaches only the outputs whose window
// holds it, but may come out there as NaN where the direct sum gives +-inf (a transform subtracts it
// from itself). CONVKIT_CONV_WINOGRAD=0 keeps 3 x 3 layers on the direct sums of the GEMM path.
//
// Work is cut into chunks: a run of whole tile rows of one image, about kTargetTiles tiles (AlexNet
// conv3-conv5: one image's 7 x 7 tiles), whose transformed values (16 (Cg + OCg) per tile) stay
// near L2 between the transforms and the products; larger chunks (several images) and smaller ones
// (part of a 13 x 13 image) were both slower. Threads: forward chunks from a shared counter (each
// output written by one thread); data gradient whole images from a shared counter (patches overlap;
// each image's dx summed in one thread's padded planes); weight gradient a fixed range of images per
// thread, each summing into its own dU, added up in thread order at the end. Every thread has its
// own scratch and single-threaded GEMMs. The weights' transform is written once per call straight
// into the GEMM's packed panel layout (gemm_packed_a_layout).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "convkit/parallel.h"
#include "gemm/gemm.h"
#include "ops/conv2d_impl.h"

namespace convkit {
namespace conv2d_detail {
namespace {

constexpr int kXi = 16;  // 4 x 4 transform positions
// Workspace slots held across gemm calls (gemm.cpp packs its panels in slots 6 and 7).
constexpr int kSlotPlane = 0;    // the thread's band of zero-padded input rows (one channel, one chunk)
constexpr int kSlotAcc = 1;      // data gradient: the thread's padded planes of dx for one image-group
constexpr int kSlotU = 3;        // U = G w G^T in the GEMM's packed layout, per (g, xi) (calling thread)
constexpr int kSlotV = 4;        // the thread's V (or dV): [xi][c][tile] of one chunk and group
constexpr int kSlotM = 5;        // the thread's M (or the transformed dy): [xi][o][tile]
constexpr int kSlotPartial = 8;  // weight gradient: the thread's dU sums, [g][xi][o][c]
constexpr int64_t kTargetTiles = 48;                            // product columns per chunk, about
constexpr std::size_t kMaxThreadBytes = std::size_t(256) << 20;  // V + M (+ dU) per thread; beyond: decline

struct Plan {
  Dims d;
  int64_t ph, pw;
  int64_t th, tw, timg;  // tile rows, tile columns, tiles per image
  int64_t Hp, Wp;        // the padded plane: Hp = 2 th + 2 rows, Wp = 2 tw + 2 columns
  int64_t rows;          // tile rows per chunk
  int nt;                // threads
};

// The weights' 1-D transforms G and G^T, applied elementwise to arrays of n values (a 2-D transform
// is the 1-D one over the rows, then over the columns; the arrays run over the input channels, so
// each loop is a plain vector loop). Not inlined, so that the compiler keeps the pointers' restrict.
#define CK_R T* __restrict
#define CK_C const T* __restrict
template <class T>
__attribute__((noinline)) void g_rows(CK_C f0, CK_C f1, CK_C f2, CK_R u0, CK_R u1, CK_R u2, CK_R u3, int64_t n) {
  const T h = T(0.5);
  for (int64_t i = 0; i < n; ++i)  // u = G f
    u0[i] = f0[i], u1[i] = (f0[i] + f1[i] + f2[i]) * h, u2[i] = (f0[i] - f1[i] + f2[i]) * h, u3[i] = f2[i];
}
template <class T>
__attribute__((noinline)) void g_adj(CK_C u0, CK_C u1, CK_C u2, CK_C u3, CK_R f0, CK_R f1, CK_R f2, int64_t n) {
  const T h = T(0.5);
  for (int64_t i = 0; i < n; ++i) {  // f = G^T u, the adjoint of g_rows
    const T s = (u1[i] + u2[i]) * h;
    f0[i] = u0[i] + s, f1[i] = (u1[i] - u2[i]) * h, f2[i] = s + u3[i];
  }
}
#undef CK_R
#undef CK_C

}  // namespace

// CONVKIT_CONV_WINOGRAD=0 / 1: never / wherever the shape allows (the tests run both ways).
int winograd_setting() {
  const char* e = std::getenv("CONVKIT_CONV_WINOGRAD");
  if (e && e[0] == '0') return 0;
  if (e && e[0] == '1') return 1;
  return -1;
}

namespace {

bool plan_for(const Dims& d, const Conv2dParams& p, DType dtype, Plan* out) {
  const int s = winograd_setting();
  if (s == 0) return false;
  if (d.KH != 3 || d.KW != 3 || p.stride_h != 1 || p.stride_w != 1 || p.dil_h != 1 || p.dil_w != 1) return false;
  if (p.pad_h > 2 || p.pad_w > 2) return false;
  Plan P;
  P.d = d, P.ph = p.pad_h, P.pw = p.pad_w;
  P.th = (d.OH + 1) / 2, P.tw = (d.OW + 1) / 2, P.timg = P.th * P.tw;
  P.Hp = 2 * P.th + 2, P.Wp = 2 * P.tw + 2;
  P.nt = threads_for(double(d.N) * double(d.OC) * double(d.OH * d.OW) * double(d.Cg) * 9.0);
  if (s != 1) {
    // auto: float32; channels enough for the 16 products per chunk to run near the GEMM's speed
    // (at least 64 in and out, and 128 x 128 or more of them: with 64 x 64, 32 x 32 or a 7 x 7
    // output's 16 tiles a chunk's products are too small, and the GEMM path is as fast or faster);
    // as many images as threads (one image would leave a thread idle, where the GEMM path splits it),
    // and 512 output pixels or more in all (transforming and packing the weights costs about what
    // the route saves on one 13 x 13 image).
    // Interleaved against the GEMM path, 1 thread, batch 8: AlexNet conv3-conv5 and 128 x 128
    // channels on 28 x 28 or 14 x 14 outputs 0.73-0.87 of the time; 64 x 64 on 56 x 56 0.90-1.12,
    // 32 x 32 0.70-1.29, 256 x 256 on a 7 x 7 output 1.20-1.77 (declined).
    if (dtype != DType::Float32 || d.Cg < 64 || d.OCg < 64 || d.Cg * d.OCg < 128 * 128 || P.timg < 36 ||
        d.N < P.nt || d.N * d.OH * d.OW < 512)
      return false;
  }
  P.rows = std::clamp<int64_t>((kTargetTiles + P.tw / 2) / P.tw, 1, P.th);

  const double elem = dtype == DType::Float32 ? 4.0 : 8.0;
  const double tiles = double(P.rows * P.tw);
  const double per_thread = elem * (kXi * tiles * double(d.Cg + d.OCg) + double(kXi) * d.G * d.OCg * d.Cg +
                                    double(d.Cg) * double(P.Hp) * double(P.Wp));
  if (per_thread > double(kMaxThreadBytes)) return false;
  *out = P;
  return true;
}

// u[xi * Cg + c] = (G f_c G^T)[xi] for one output channel's filters f ([c][3][3]); ft: scratch of
// 21 Cg values (the filters turned [tap][c], then G f).
template <class T>
void transform_filters(int64_t Cg, const T* f, T* ft, T* u) {
  for (int64_t c = 0; c < Cg; ++c)
    for (int k = 0; k < 9; ++k) ft[k * Cg + c] = f[c * 9 + k];
  T* t = ft + 9 * Cg;  // t[(a * 3 + q) * Cg + c] = (G f)[a][q]
  for (int q = 0; q < 3; ++q)
    g_rows(ft + q * Cg, ft + (3 + q) * Cg, ft + (6 + q) * Cg, t + q * Cg, t + (3 + q) * Cg, t + (6 + q) * Cg,
           t + (9 + q) * Cg, Cg);
  for (int a = 0; a < 4; ++a) {
    const T* r = t + a * 3 * Cg;
    g_rows(r, r + Cg, r + 2 * Cg, u + (a * 4) * Cg, u + (a * 4 + 1) * Cg, u + (a * 4 + 2) * Cg, u + (a * 4 + 3) * Cg,
           Cg);
  }
}

// f[c][3][3] = (G^T dU_c G) for one output channel, dU_c = du[xi * ld + c] over xi; ft: scratch
// of 21 Cg values.
template <class T>
void filters_adjoint(int64_t Cg, const T* du, int64_t ld, T* ft, T* f) {
  T* t = ft + 9 * Cg;  // t[(a * 3 + q) * Cg + c] = (dU G)[a][q]
  for (int a = 0; a < 4; ++a)
    g_adj(du + (a * 4) * ld, du + (a * 4 + 1) * ld, du + (a * 4 + 2) * ld, du + (a * 4 + 3) * ld, t + (a * 3) * Cg,
          t + (a * 3 + 1) * Cg, t + (a * 3 + 2) * Cg, Cg);
  for (int q = 0; q < 3; ++q)
    g_adj(t + q * Cg, t + (3 + q) * Cg, t + (6 + q) * Cg, t + (9 + q) * Cg, ft + q * Cg, ft + (3 + q) * Cg,
          ft + (6 + q) * Cg, Cg);
  for (int64_t c = 0; c < Cg; ++c)
    for (int k = 0; k < 9; ++k) f[c * 9 + k] = ft[k * Cg + c];
}

// The transformed weights written straight into the GEMM's packed layout, one PackedA per (g, xi):
// U_xi (OCg x Cg; trans = false) or U_xi^T (Cg x OCg, the data gradient).
template <class T>
std::vector<PackedA<T>> packed_weights(const Plan& P, const T* w, bool trans) {
  const Dims& d = P.d;
  const int64_t M = trans ? d.Cg : d.OCg, K = trans ? d.OCg : d.Cg;
  const PackedALayout L = gemm_packed_a_layout<T>(M, K);
  const PackedIndex at(L);
  const int64_t per = L.mpad * K;
  T* up = workspace_as<T>(static_cast<std::size_t>(per * d.G * kXi), kSlotU);
  std::vector<PackedA<T>> pa(static_cast<std::size_t>(d.G * kXi));
  for (int64_t r = 0; r < d.G * kXi; ++r) {
    pa[r] = PackedA<T>{up + r * per, M, K, static_cast<int>(L.mr)};
    for (int64_t i = M; i < L.mpad; ++i)  // the last panel's rows past M
      for (int64_t k = 0; k < K; ++k) up[r * per + at(i, k)] = T(0);
  }
  // mr output channels at a time (one panel of rows when not transposed), so that the packed layout
  // is written in runs: a panel's [k][mr] values, or mr consecutive values per channel pair
  const int64_t mr = L.mr, blocks = (d.OCg + mr - 1) / mr;
  maybe_parallel(d.G * blocks, P.nt, [&](int64_t b0, int64_t b1) {
    std::vector<T> scratch(static_cast<std::size_t>((21 + kXi * mr) * d.Cg));
    T* ft = scratch.data();
    T* u = ft + 21 * d.Cg;  // u[(i * 16 + xi) * Cg + c]: output channel o0 + i
    for (int64_t bi = b0; bi < b1; ++bi) {
      const int64_t g = bi / blocks, o0 = bi % blocks * mr, on = std::min(mr, d.OCg - o0);
      for (int64_t i = 0; i < on; ++i)
        transform_filters(d.Cg, w + ((g * d.OCg + o0 + i) * d.Cg) * 9, ft, u + i * kXi * d.Cg);
      for (int xi = 0; xi < kXi; ++xi) {
        T* dst = up + (g * kXi + xi) * per;
        if (!trans) {  // rows o0 .. o0 + on: one panel, [k][mr] in each K block
          for (int64_t pc = 0; pc < K; pc += L.kcb) {
            const int64_t kc = std::min(L.kcb, K - pc);
            T* p = dst + at(o0, pc);
            for (int64_t k = 0; k < kc; ++k)
              for (int64_t i = 0; i < on; ++i) p[k * mr + i] = u[(i * kXi + xi) * d.Cg + pc + k];
          }
        } else {  // columns o0 .. o0 + on: in every panel of rows c, mr values per column
          for (int64_t c0 = 0; c0 < d.Cg; c0 += mr) {
            const int64_t cn = std::min(mr, d.Cg - c0);
            for (int64_t i = 0; i < on; ++i) {
              T* p = dst + at(c0, o0 + i);
              const T* src = u + (i * kXi + xi) * d.Cg + c0;
              for (int64_t j = 0; j < cn; ++j) p[j] = src[j];
            }
          }
        }
      }
    }
  });
  return pa;
}

// dw[g * OCg + o] = G^T dU G over xi, dU = u[(g * 16 + xi) * OCg * Cg + o * Cg + c].
template <class T>
void weights_adjoint(const Plan& P, const T* u, T* dw) {
  const Dims& d = P.d;
  maybe_parallel(d.OC, P.nt, [&](int64_t o0, int64_t o1) {
    std::vector<T> ft(static_cast<std::size_t>(21 * d.Cg));
    for (int64_t oc = o0; oc < o1; ++oc) {
      const int64_t g = oc / d.OCg, o = oc % d.OCg;
      filters_adjoint(d.Cg, u + (g * kXi * d.OCg + o) * d.Cg, d.OCg * d.Cg, ft.data(), dw + oc * d.Cg * 9);
    }
  });
}

// A chunk: tile rows [ty0, ty1) of image n (tiles t = (ty - ty0) * tw + tx, tn of them), one group.
// The transforms below run tile by tile (4 x 4 values in registers); per channel the chunk's rows of
// the zero-padded plane are copied into a band first, so that no tile checks the image's edges.
struct Chunk {
  int64_t n, ty0, ty1, tn;
  static int64_t scratch(const Plan& P) { return (2 * P.rows + 2) * P.Wp; }
};

// The tiles' 4-point transforms (B^T, its adjoint B, A^T and its adjoint A) on single values.
template <class T>
inline void bt4(T d0, T d1, T d2, T d3, T* v) {
  v[0] = d0 - d2, v[1] = d1 + d2, v[2] = d2 - d1, v[3] = d3 - d1;
}
template <class T>
inline void b_adj4(T v0, T v1, T v2, T v3, T* d) {
  d[0] = v0, d[1] = v1 - v2 - v3, d[2] = v1 + v2 - v0, d[3] = v3;
}
template <class T>
inline void at4(T m0, T m1, T m2, T m3, T* y) {
  y[0] = m0 + m1 + m2, y[1] = m1 - m2 + m3;
}
template <class T>
inline void a_adj4(T e0, T e1, T* m) {
  m[0] = e0, m[1] = e0 + e1, m[2] = e0 - e1, m[3] = e1;
}

// V[xi][c][t] = (B^T d_t B)[xi] for the chunk's tiles and the channels of group g.
template <class T>
void transform_input(const Plan& P, const T* x, const Chunk& k, int64_t g, T* V, T* band) {
  const Dims& d = P.d;
  const int64_t tw = P.tw, Wp = P.Wp, tn = k.tn, xs = d.Cg * tn, r0 = 2 * k.ty0, nr = 2 * (k.ty1 - k.ty0) + 2;
  std::fill(band, band + nr * Wp, T(0));
  for (int64_t c = 0; c < d.Cg; ++c) {
    const T* src = x + (k.n * d.C + g * d.Cg + c) * d.H * d.W;
    for (int64_t r = 0; r < nr; ++r) {  // band row r: padded row r0 + r, image row r0 + r - pad_h
      const int64_t h = r0 + r - P.ph;
      if (h >= 0 && h < d.H) std::memcpy(band + r * Wp + P.pw, src + h * d.W, d.W * sizeof(T));
      else std::fill(band + r * Wp + P.pw, band + r * Wp + P.pw + d.W, T(0));  // a row past the edge
    }
    T* vc = V + c * tn;
    for (int64_t ty = k.ty0; ty < k.ty1; ++ty) {
      const T* b0 = band + 2 * (ty - k.ty0) * Wp;
      T* vt = vc + (ty - k.ty0) * tw;
      for (int64_t tx = 0; tx < tw; ++tx) {
        const T* p = b0 + 2 * tx;
        T col[4][4];  // B^T d, column q by column
        for (int q = 0; q < 4; ++q) bt4(p[q], p[Wp + q], p[2 * Wp + q], p[3 * Wp + q], col[q]);
        for (int a = 0; a < 4; ++a) {
          T v[4];
          bt4(col[0][a], col[1][a], col[2][a], col[3][a], v);
          for (int b = 0; b < 4; ++b) vt[(a * 4 + b) * xs + tx] = v[b];
        }
      }
    }
  }
}

// Y[xi][o][t] = (A dy_t A^T)[xi] for the chunk's tiles and the output channels of group g (dy_t:
// the tile's 2 x 2 values of dy, zero past the output's edge).
template <class T>
void transform_dy(const Plan& P, const T* dy, const Chunk& k, int64_t g, T* Y) {
  const Dims& d = P.d;
  const int64_t tw = P.tw, tn = k.tn, xs = d.OCg * tn;
  for (int64_t oc = 0; oc < d.OCg; ++oc) {
    const T* src = dy + (k.n * d.OC + g * d.OCg + oc) * d.OH * d.OW;
    T* yo = Y + oc * tn;
    for (int64_t ty = k.ty0; ty < k.ty1; ++ty) {
      const int64_t h = 2 * ty;
      const bool h1 = h + 1 < d.OH;
      T* yt = yo + (ty - k.ty0) * tw;
      for (int64_t tx = 0; tx < tw; ++tx) {
        const int64_t w = 2 * tx;
        const bool w1 = w + 1 < d.OW;
        const T* s0 = src + h * d.OW + w;
        const T e00 = s0[0], e01 = w1 ? s0[1] : T(0);
        const T e10 = h1 ? s0[d.OW] : T(0), e11 = h1 && w1 ? s0[d.OW + 1] : T(0);
        T c0[4], c1[4];  // A e, per column of the tile
        a_adj4(e00, e10, c0);
        a_adj4(e01, e11, c1);
        for (int a = 0; a < 4; ++a) {
          T m[4];
          a_adj4(c0[a], c1[a], m);
          for (int b = 0; b < 4; ++b) yt[(a * 4 + b) * xs + tx] = m[b];
        }
      }
    }
  }
}

// y[n, g * OCg + o] from M[xi][o][t]: y_t = A^T M_t A (+ bias), cropped at the output's edge.
template <class T>
void transform_output(const Plan& P, const T* M, const T* bias, const Chunk& k, int64_t g, T* y) {
  const Dims& d = P.d;
  const int64_t tw = P.tw, tn = k.tn, xs = d.OCg * tn;
  for (int64_t oc = 0; oc < d.OCg; ++oc) {
    const T bv = bias ? bias[g * d.OCg + oc] : T(0);
    T* dst = y + (k.n * d.OC + g * d.OCg + oc) * d.OH * d.OW;
    const T* mo = M + oc * tn;
    for (int64_t ty = k.ty0; ty < k.ty1; ++ty) {
      const int64_t h = 2 * ty;
      const bool h1 = h + 1 < d.OH;
      const T* mt = mo + (ty - k.ty0) * tw;
      for (int64_t tx = 0; tx < tw; ++tx) {
        T r[2][4];  // A^T M, column by column
        for (int b = 0; b < 4; ++b) {
          T e[2];
          at4(mt[b * xs + tx], mt[(4 + b) * xs + tx], mt[(8 + b) * xs + tx], mt[(12 + b) * xs + tx], e);
          r[0][b] = e[0], r[1][b] = e[1];
        }
        T o0[2], o1[2];
        at4(r[0][0], r[0][1], r[0][2], r[0][3], o0);
        at4(r[1][0], r[1][1], r[1][2], r[1][3], o1);
        const int64_t w = 2 * tx;
        const bool w1 = w + 1 < d.OW;
        T* q = dst + h * d.OW + w;
        q[0] = o0[0] + bv;
        if (w1) q[1] = o0[1] + bv;
        if (h1) {
          q[d.OW] = o1[0] + bv;
          if (w1) q[d.OW + 1] = o1[1] + bv;
        }
      }
    }
  }
}

// Adds each chunk tile's B dV_t B^T into acc at its patch: acc holds the zero-padded planes of the
// group's Cg channels, acc[(c * Hp + r) * Wp + col].
template <class T>
void input_adjoint(const Plan& P, const T* V, const Chunk& k, T* acc) {
  const Dims& d = P.d;
  const int64_t tw = P.tw, Wp = P.Wp, tn = k.tn, xs = d.Cg * tn;
  for (int64_t c = 0; c < d.Cg; ++c) {
    const T* vc = V + c * tn;
    for (int64_t ty = k.ty0; ty < k.ty1; ++ty) {
      const T* vt = vc + (ty - k.ty0) * tw;
      T* a0 = acc + (c * P.Hp + 2 * ty) * Wp;
      for (int64_t tx = 0; tx < tw; ++tx) {
        T col[4][4];  // B dV, column b by column
        for (int b = 0; b < 4; ++b)
          b_adj4(vt[b * xs + tx], vt[(4 + b) * xs + tx], vt[(8 + b) * xs + tx], vt[(12 + b) * xs + tx], col[b]);
        T* p = a0 + 2 * tx;
        for (int s = 0; s < 4; ++s) {
          T r[4];
          b_adj4(col[0][s], col[1][s], col[2][s], col[3][s], r);
          for (int q = 0; q < 4; ++q) p[s * Wp + q] += r[q];
        }
      }
    }
  }
}

// dx[n, g * Cg + c] = the interior of acc's planes (input_adjoint).
template <class T>
void store_dx(const Plan& P, const T* acc, int64_t n, int64_t g, T* dx) {
  const Dims& d = P.d;
  for (int64_t c = 0; c < d.Cg; ++c) {
    T* dst = dx + (n * d.C + g * d.Cg + c) * d.H * d.W;
    for (int64_t h = 0; h < d.H; ++h)
      std::memcpy(dst + h * d.W, acc + (c * P.Hp + h + P.ph) * P.Wp + P.pw, d.W * sizeof(T));
  }
}

// The chunk of image n that starts at tile row ty0 (tile rows come in runs of P.rows), and all
// of image n's chunks in order.
inline Chunk chunk_at(const Plan& P, int64_t n, int64_t ty0) {
  const int64_t ty1 = std::min(P.th, ty0 + P.rows);
  return Chunk{n, ty0, ty1, (ty1 - ty0) * P.tw};
}
template <class F>
void chunks_of(const Plan& P, int64_t n, F&& f) {
  for (int64_t ty0 = 0; ty0 < P.th; ty0 += P.rows) f(chunk_at(P, n, ty0));
}

template <class T>
void forward_t(const Plan& P, const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y) {
  const Dims& d = P.d;
  const std::vector<PackedA<T>> U = packed_weights(P, w.ptr<T>(), false);
  const T* xs = x.ptr<T>();
  const T* bs = b ? b->ptr<T>() : nullptr;
  T* ys = y.ptr<T>();
  const int64_t tmax = P.rows * P.tw, per_image = (P.th + P.rows - 1) / P.rows, items = d.N * per_image;
  std::atomic<int64_t> next{0};
  run_threads(P.nt, [&](int, int) {
    T* V = workspace_as<T>(static_cast<std::size_t>(kXi * d.Cg * tmax), kSlotV);
    T* M = workspace_as<T>(static_cast<std::size_t>(kXi * d.OCg * tmax), kSlotM);
    T* band = workspace_as<T>(static_cast<std::size_t>(Chunk::scratch(P)), kSlotPlane);
    for (int64_t it; (it = next.fetch_add(1, std::memory_order_relaxed)) < items;) {
      const Chunk k = chunk_at(P, it / per_image, it % per_image * P.rows);
      for (int64_t g = 0; g < d.G; ++g) {
        transform_input(P, xs, k, g, V, band);
        for (int xi = 0; xi < kXi; ++xi)
          gemm(U[g * kXi + xi], false, k.tn, T(1), V + xi * d.Cg * k.tn, k.tn, T(0), M + xi * d.OCg * k.tn, k.tn, 1);
        transform_output(P, M, bs, k, g, ys);
      }
    }
  });
}

template <class T>
void backward_data_t(const Plan& P, const Tensor& dy, const Tensor& w, const Tensor& dx) {
  const Dims& d = P.d;
  const std::vector<PackedA<T>> Ut = packed_weights(P, w.ptr<T>(), true);
  const T* dys = dy.ptr<T>();
  T* dxs = dx.ptr<T>();
  const int64_t tmax = P.rows * P.tw;
  const std::size_t acc_size = static_cast<std::size_t>(d.Cg * P.Hp * P.Wp);
  std::atomic<int64_t> next{0};
  run_threads(P.nt, [&](int, int) {  // whole images per thread: their tiles' patches overlap
    T* V = workspace_as<T>(static_cast<std::size_t>(kXi * d.Cg * tmax), kSlotV);
    T* Y = workspace_as<T>(static_cast<std::size_t>(kXi * d.OCg * tmax), kSlotM);
    T* band = workspace_as<T>(static_cast<std::size_t>(Chunk::scratch(P)), kSlotPlane);
    T* acc = workspace_as<T>(acc_size, kSlotAcc);
    for (int64_t n; (n = next.fetch_add(1, std::memory_order_relaxed)) < d.N;)
      for (int64_t g = 0; g < d.G; ++g) {
        std::fill(acc, acc + acc_size, T(0));
        chunks_of(P, n, [&](const Chunk& k) {
          transform_dy(P, dys, k, g, Y);
          for (int xi = 0; xi < kXi; ++xi)
            gemm(Ut[g * kXi + xi], false, k.tn, T(1), Y + xi * d.OCg * k.tn, k.tn, T(0), V + xi * d.Cg * k.tn, k.tn, 1);
          input_adjoint(P, V, k, acc);
        });
        store_dx(P, acc, n, g, dxs);
      }
  });
}

template <class T>
void backward_weight_t(const Plan& P, const Tensor& x, const Tensor& dy, const Tensor& dw) {
  const Dims& d = P.d;
  const T* xs = x.ptr<T>();
  const T* dys = dy.ptr<T>();
  const int64_t tmax = P.rows * P.tw, ustride = d.OCg * d.Cg;
  const std::size_t usize = static_cast<std::size_t>(d.G * kXi * ustride);
  std::vector<T*> partial(static_cast<std::size_t>(P.nt), nullptr);
  run_threads(P.nt, [&](int t, int nt) {
    // a fixed range of images per thread, so each dU sums its images in one order
    const int64_t i0 = d.N * t / nt, i1 = d.N * (t + 1) / nt;
    if (i0 >= i1) return;
    T* du = workspace_as<T>(usize, kSlotPartial);
    T* V = workspace_as<T>(static_cast<std::size_t>(kXi * d.Cg * tmax), kSlotV);
    T* Y = workspace_as<T>(static_cast<std::size_t>(kXi * d.OCg * tmax), kSlotM);
    T* band = workspace_as<T>(static_cast<std::size_t>(Chunk::scratch(P)), kSlotPlane);
    partial[t] = du;
    bool first = true;
    for (int64_t n = i0; n < i1; ++n)
      chunks_of(P, n, [&](const Chunk& k) {
        for (int64_t g = 0; g < d.G; ++g) {
          transform_input(P, xs, k, g, V, band);
          transform_dy(P, dys, k, g, Y);
          for (int xi = 0; xi < kXi; ++xi)
            gemm(false, true, d.OCg, d.Cg, k.tn, T(1), Y + xi * d.OCg * k.tn, k.tn, V + xi * d.Cg * k.tn, k.tn,
                 first ? T(0) : T(1), du + (g * kXi + xi) * ustride, d.Cg, 1);
        }
        first = false;
      });
  });
  T* total = sum_in_thread_order(partial, static_cast<int64_t>(usize), P.nt);
  weights_adjoint(P, total, dw.ptr<T>());
}

}  // namespace

bool forward_winograd(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p) {
  Plan P;
  if (!plan_for(dims_of(x, w, y, p), p, x.dtype, &P)) return false;
  CONVKIT_DISPATCH_FLOAT(x.dtype, "conv2d_forward", [&] { forward_t<scalar_t>(P, x, w, b, y); });
  return true;
}

bool backward_data_winograd(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p) {
  Plan P;
  if (!plan_for(dims_of(dx, w, dy, p), p, dy.dtype, &P)) return false;
  CONVKIT_DISPATCH_FLOAT(dy.dtype, "conv2d_backward_data", [&] { backward_data_t<scalar_t>(P, dy, w, dx); });
  return true;
}

bool backward_weight_winograd(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p) {
  Plan P;
  if (!plan_for(dims_of(x, dw, dy, p), p, x.dtype, &P)) return false;
  CONVKIT_DISPATCH_FLOAT(x.dtype, "conv2d_backward_weight", [&] { backward_weight_t<scalar_t>(P, x, dy, dw); });
  return true;
}

}  // namespace conv2d_detail
}  // namespace convkit
