// conv2d through convkit's GEMM (csrc/gemm/gemm.h): im2col + GEMM, float and double.
//
// Per image n and group g, with K = C/groups * KH * KW and the output pixels P = OH * OW:
//   cols[K, P]       im2col: cols[(c*KH + p)*KW + q, i*OW + j] = x[n, g*Cg + c, i*sh - ph + p*dh, j*sw - pw + q*dw]
//   forward          y_g[OCg, P]  = W_g[OCg, K] @ cols              (y prefilled with the bias, beta = 1)
//   backward data    dcols[K, P]  = W_g^T @ dy_g[OCg, P], then col2im adds dcols back into dx
//   backward weight  dW_g[OCg, K] = sum over n of dy_g[OCg, P] @ cols^T
// A 1x1, stride-1, unpadded conv needs no im2col: cols is x itself (and dcols is dx).
// Forward and backward weight usually never write cols at all: the GEMM asks pack_cols /
// pack_cols_t for each block of cols (or cols^T) it needs in its packed panel layout
// (gemm_packer), see fused_forward for when the im2col-into-scratch route is kept.
//
// Scratch (convkit::workspace, reused between calls): cols for a band of output rows, so a large
// image is processed in bands of at most kBandBytes of cols; declines (returns false) only when a
// single output row's cols would exceed kMaxColsBytes.
//
// Threads (results do not depend on the thread count beyond rounding):
//   The first N - N % T images are shared out among T threads, each with its own cols and a
//   single-threaded GEMM (no synchronisation); the remaining N % T images run one at a time with the
//   GEMM, im2col and col2im using all T threads. Forward and backward data hand the images out one
//   at a time from a shared counter (a thread the OS preempts on a busy machine simply takes fewer;
//   each image's result does not depend on which thread computes it).
//   backward weight sums over the batch: thread t accumulates its chunk into its own partial dW
//   (thread 0 directly into dw, which then also takes the remaining images), and the partials are
//   added up in the fixed order t = 1, 2, ... afterwards.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <exception>
#include <vector>

#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

#include "convkit/parallel.h"
#include "convkit/runtime.h"
#include "gemm/gemm.h"
#include "ops/conv2d_impl.h"
#include "ops/conv2d_pack.h"

namespace convkit {
namespace conv2d_detail {
namespace {

constexpr std::size_t kBandBytes = std::size_t(8) << 20;      // cols per band (per thread)
constexpr std::size_t kMaxColsBytes = std::size_t(1) << 30;   // one output row's cols; beyond: decline
constexpr std::size_t kMaxPartialBytes = std::size_t(1) << 30; // backward weight's per-thread partials
// Workspace slots held across gemm calls; gemm.cpp packs its panels in slots 6 and 7.
constexpr int kSlotPhased = 0;    // forward with stride_w > 1: the phase-split image-group (phase_split_rows)
constexpr int kSlotMasks = 2;     // pack_cols_t_same: each tap's lane masks for the block's pixels
constexpr int kSlotTaps = 1;      // pack_cols_strips / pack_cols_t_strips: per-tap or per-run tables
constexpr int kSlotPackedW = 3;  // the weights in the GEMM's panel layout, packed once per call (the
                                 // weight gradient: dy's, per image and group)
constexpr int kSlotCols = 4;
constexpr int kSlotPartial = 5;
constexpr int kSlotFlipped = 8;  // backward data as a forward convolution: the flipped weights

struct Geometry {
  Dims d;
  Conv2dParams p;
  int64_t K, P;        // rows of cols (Cg*KH*KW), output pixels (OH*OW)
  bool direct;         // 1x1, stride 1, no padding: cols is x itself
  int64_t band_rows;   // output rows per band
  double macs;         // multiply-adds of the whole call
};

// For kernel column q: the output columns [*lo, *hi) whose input column v = j*sw - pw + q*dw is
// inside the image (the others read padding); lo == hi when none is.
inline void col_range(const Geometry& g, int64_t q, int64_t* lo, int64_t* hi) {
  const Dims& d = g.d;
  const int64_t off = q * g.p.dil_w - g.p.pad_w, sw = g.p.stride_w;  // v = j*sw + off
  int64_t l = off >= 0 ? 0 : (-off + sw - 1) / sw;
  int64_t h = d.W - 1 - off < 0 ? 0 : (d.W - 1 - off) / sw + 1;
  l = std::min(l, d.OW);
  *lo = l;
  *hi = std::clamp(h, l, d.OW);
}

bool make_geometry(const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dParams& p, std::size_t elem,
                   Geometry* out) {
  Geometry& g = *out;
  g.d = dims_of(x, w, y, p);
  g.p = p;
  const Dims& d = g.d;
  g.K = d.Cg * d.KH * d.KW;  // checked in conv2d_check
  g.P = d.OH * d.OW;
  g.macs = double(d.N) * double(d.OC) * double(g.P) * double(g.K);
  g.direct = d.KH == 1 && d.KW == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
  g.band_rows = d.OH;
  if (!g.direct) {
    const double row_bytes = double(g.K) * double(d.OW) * double(elem);  // cols of one output row
    if (row_bytes > double(kMaxColsBytes)) return false;
    g.band_rows = std::clamp<int64_t>(int64_t(double(kBandBytes) / row_bytes), 1, d.OH);
  }
  return true;
}

// Leading dimension of a cols band of np pixels: rounded up to 16 values so every row starts on a
// 64-byte line (the GEMM packs cols in 16-wide strips, one line each instead of two), and kept off
// multiples of 4 KiB so the rows do not all map to the same cache sets.
inline int64_t cols_ld(int64_t np, std::size_t elem) {
  int64_t ld = (np + 15) / 16 * 16;
  if ((ld * static_cast<int64_t>(elem)) % 4096 == 0) ld += 16;
  return ld;
}

// Copies and zero fills of im2col rows. Most are short (a few to a few dozen values), where a
// library call costs more than the copy, so they are plain loops; long ones go to memcpy/memset.
// The fill value is an opaque zero so the compiler does not turn the short loops into memset
// calls itself.
constexpr int64_t kLongRun = 64;
volatile float g_opaque_zero = 0.0f;

template <class T>
inline void fill_zero(T* dst, int64_t n, T zero) {
  if (n >= kLongRun) {
    std::memset(static_cast<void*>(dst), 0, sizeof(T) * n);
  } else {
    for (int64_t j = 0; j < n; ++j) dst[j] = zero;
  }
}

template <class T>
inline void copy_run(T* __restrict dst, const T* __restrict src, int64_t n) {
  if (n >= kLongRun) {
    std::memcpy(dst, src, sizeof(T) * n);
  } else {
    for (int64_t j = 0; j < n; ++j) dst[j] = src[j];
  }
}

// cols[r, (i - i0)*OW + j] (rows cols_ld apart) for the rows r in [r0, r1) and output rows i in
// [i0, i1); x is one image-group [Cg, H, W].
template <class T>
void im2col_rows(const Geometry& g, const T* x, int64_t i0, int64_t i1, T* cols, int64_t r0, int64_t r1) {
  const Dims& d = g.d;
  const int64_t np = (i1 - i0) * d.OW, ld = cols_ld(np, sizeof(T)), sw = g.p.stride_w, OW = d.OW, W = d.W;
  const T zero = static_cast<T>(g_opaque_zero);
  // Stride 1 with OW == W ("same" padding): consecutive output rows read consecutive input rows, so
  // the in-image part of a cols row is one contiguous block of x; the few values it picks up from
  // the neighbouring rows (where the window hangs over the left/right edge) are zeroed after.
  const bool block = sw == 1 && g.p.stride_h == 1 && OW == W;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t c = r / (d.KH * d.KW), kp = r / d.KW % d.KH, kq = r % d.KW;
    const int64_t off = kq * g.p.dil_w - g.p.pad_w;
    int64_t lo, hi;
    col_range(g, kq, &lo, &hi);
    const int64_t hoff = kp * g.p.dil_h - g.p.pad_h;  // h = i * stride_h + hoff
    const T* xc = x + c * d.H * W;
    T* row = cols + r * ld;
    if (lo >= hi) {  // this kernel column reads only padding (padding wider than the image)
      fill_zero(row, ld, zero);
      continue;
    }
    if (block) {
      // output rows [a, b) of the band read inside the image
      const int64_t a = std::clamp<int64_t>(-hoff, i0, i1), b = std::clamp<int64_t>(d.H - hoff, a, i1);
      fill_zero(row, (a - i0) * OW, zero);
      if (a < b) {
        // in-bounds span: from column lo of row a to column hi - 1 of row b - 1
        const T* src = xc + (a + hoff) * W + off;
        T* dst = row + (a - i0) * OW;
        copy_run(dst + lo, src + lo, (b - a - 1) * OW + hi - lo);
        for (int64_t i = a; i < b; ++i, dst += OW) {
          for (int64_t j = 0; j < lo; ++j) dst[j] = zero;
          for (int64_t j = hi; j < OW; ++j) dst[j] = zero;
        }
      }
      fill_zero(row + (b - i0) * OW, (i1 - b) * OW, zero);
      continue;
    }
    T* dst = row;
    for (int64_t i = i0; i < i1; ++i, dst += OW) {
      const int64_t h = i * g.p.stride_h + hoff;
      if (h < 0 || h >= d.H) {
        fill_zero(dst, OW, zero);
        continue;
      }
      const T* src = xc + h * W + off;  // src[j*sw] is x[.., h, j*sw + off]
      for (int64_t j = 0; j < lo; ++j) dst[j] = zero;
      if (sw == 1) {
        copy_run(dst + lo, src + lo, hi - lo);
      } else {
        for (int64_t j = lo; j < hi; ++j) dst[j] = src[j * sw];
      }
      for (int64_t j = hi; j < OW; ++j) dst[j] = zero;
    }
  }
}

template <class T>
void im2col(const Geometry& g, const T* x, int64_t i0, int64_t i1, T* cols, int threads) {
  maybe_parallel(g.K, threads, [&](int64_t r0, int64_t r1) { im2col_rows(g, x, i0, i1, cols, r0, r1); });
}

// dst[q + shift] += src[q] & mask[q] (bitwise) for q in [q0, q1); 16 bytes at a time as GCC/Clang
// vectors (a scalar loop with memcpy punning went through the stack), the rest one value at a time.
template <class T, class U>
inline void add_masked(T* __restrict dst, int64_t shift, const T* __restrict src, const U* __restrict mask,
                       int64_t q0, int64_t q1) {
  int64_t q = q0;
#if defined(__GNUC__)
  typedef T VT __attribute__((vector_size(16)));
  typedef U VU __attribute__((vector_size(16)));
  constexpr int64_t L = 16 / sizeof(T);
  for (; q + L <= q1; q += L) {
    VT s, d;
    VU m;
    std::memcpy(&s, src + q, 16);
    std::memcpy(&m, mask + q, 16);
    std::memcpy(&d, dst + (q + shift), 16);
    d += reinterpret_cast<VT>(reinterpret_cast<VU>(s) & m);
    std::memcpy(dst + (q + shift), &d, 16);
  }
#endif
  for (; q < q1; ++q) {
    U v;
    std::memcpy(&v, src + q, sizeof(T));
    v &= mask[q];
    T f;
    std::memcpy(&f, &v, sizeof(T));
    dst[q + shift] += f;
  }
}

// dx[c, h, v] += dcols[r, (i - i0)*OW + j] for every (r, i, j) that im2col reads x[c, h, v] into,
// for the channels c in [cb, ce) (rows r of dcols c * KH * KW up to (c + 1) * KH * KW). Parallel over
// channels (a channel's rows touch only its own plane); each plane is summed in one fixed order. A
// band's calls come in ascending channel order from one thread, the first with cb = 0, and nothing
// else uses kSlotTaps in between (the GEMM's slots are 6 and 7).
template <class T>
void col2im_add(const Geometry& g, const T* dcols, int64_t i0, int64_t i1, T* dx, int threads, int64_t cb,
                int64_t ce) {
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  const Dims& d = g.d;
  const int64_t ld = cols_ld((i1 - i0) * d.OW, sizeof(T)), sw = g.p.stride_w, KK = d.KH * d.KW;
  // Stride 1 with OW == W ("same" padding), as in im2col: a kernel row's in-image part is one span
  // of consecutive dcols values added to consecutive dx values, dx[q + delta] += dcols[q], with the
  // columns whose window hangs over the left/right edge (they would land in the neighbouring row)
  // masked to zero; the span is cut so it never leaves the channel's plane (another thread's).
  // Every dx value gets the same additions in the same order as the plain loop below, plus
  // additions of +0 (the only change: a -0 sum becomes +0).
  const bool block = sw == 1 && g.p.stride_h == 1 && d.OW == d.W;
  const int64_t np = (i1 - i0) * d.OW;
  U* cmask = nullptr;  // cmask[kq * np + q]: all ones where output column q % OW reads inside
  if (block) {  // (the calling thread's workspace; made at the first channel, reused for the others)
    cmask = workspace_as<U>(static_cast<std::size_t>(d.KW * np), kSlotTaps);
    if (cb == 0)
      for (int64_t kq = 0; kq < d.KW; ++kq) {
        int64_t lo, hi;
        col_range(g, kq, &lo, &hi);
        for (int64_t q = 0; q < np; ++q) cmask[kq * np + q] = q % d.OW >= lo && q % d.OW < hi ? ~U(0) : U(0);
      }
  }
  using Add8 = void (*)(float*, const float*, const std::uint32_t*, int64_t);
  Add8 add8 = nullptr;  // float: the AVX2 loop where the CPU has it
#if defined(__x86_64__) || defined(_M_X64)
  if (std::is_same<T, float>::value && cpu_isa() >= Isa::Avx2) add8 = conv2d_add_masked_avx2;
#endif
  maybe_parallel(ce - cb, threads, [&](int64_t c0, int64_t c1) {
    for (int64_t c = cb + c0; c < cb + c1; ++c) {
      T* dxc = dx + c * d.H * d.W;
      if (block) {
        const int64_t plane = d.H * d.W;
        for (int64_t r = c * KK; r < (c + 1) * KK; ++r) {
          const int64_t kp = r / d.KW % d.KH, kq = r % d.KW;
          const int64_t hoff = kp * g.p.dil_h - g.p.pad_h, off = kq * g.p.dil_w - g.p.pad_w;
          // output rows [a, b) of the band read inside the image; dx index of pixel q: q + delta
          const int64_t a = std::clamp<int64_t>(-hoff, i0, i1), b = std::clamp<int64_t>(d.H - hoff, a, i1);
          const int64_t delta = (i0 + hoff) * d.W + off;
          const int64_t q0 = std::max((a - i0) * d.OW, -delta), q1 = std::min((b - i0) * d.OW, plane - delta);
          if (add8 && q1 > q0)
            add8(reinterpret_cast<float*>(dxc + q0 + delta), reinterpret_cast<const float*>(dcols + r * ld + q0),
                 reinterpret_cast<const std::uint32_t*>(cmask + kq * np + q0), q1 - q0);
          else
            add_masked(dxc, delta, dcols + r * ld, cmask + kq * np, q0, q1);
        }
        continue;
      }
      for (int64_t r = c * KK; r < (c + 1) * KK; ++r) {
        const int64_t kp = r / d.KW % d.KH, kq = r % d.KW;
        const int64_t off = kq * g.p.dil_w - g.p.pad_w;
        int64_t lo, hi;
        col_range(g, kq, &lo, &hi);
        const T* src = dcols + r * ld;
        for (int64_t i = i0; i < i1; ++i, src += d.OW) {
          const int64_t h = i * g.p.stride_h - g.p.pad_h + kp * g.p.dil_h;
          if (h < 0 || h >= d.H) continue;
          T* dst = dxc + h * d.W + off;
          if (sw == 1) {
            for (int64_t j = lo; j < hi; ++j) dst[j] += src[j];
          } else {
            for (int64_t j = lo; j < hi; ++j) dst[j * sw] += src[j];
          }
        }
      }
    }
  });
}

// Strided convolutions (AlexNet conv1: stride 4) read every sw-th input column, a gather per value
// when packing. Splitting each input row of the image-group into its sw phases first,
//   xp[c, h, r * phase_len + u] = x[c, h, u * sw + r]   (zero past the row's end),
// one pass over the input, turns every run of output columns into a run of consecutive values.
inline int64_t phase_len(const Geometry& g) { return (g.d.W + g.p.stride_w - 1) / g.p.stride_w; }
inline int64_t phased_row(const Geometry& g) { return phase_len(g) * g.p.stride_w; }

// Rows [row0, row1) of the image-group (channel * H + h). Stride 4 (AlexNet conv1) and 2 in float
// take 4 values of every phase at once: 4 x 4 SSE2 transposes / 2-way shuffles of whole 16-byte
// loads. The value-by-value gather was 4.8% of conv1's forward on one thread, this is 2.5% (conv1
// forward 0.973 / 0.976 of the time on 1 / 2 threads, interleaved). The phase values past the last
// full group, and other strides, one at a time.
template <class T>
void phase_split_rows(const Geometry& g, const T* x, T* xp, int64_t row0, int64_t row1) {
  const int64_t sw = g.p.stride_w, W = g.d.W, L = phase_len(g), full = W / sw;
  for (int64_t row = row0; row < row1; ++row) {
    const T* s = x + row * W;
    T* d = xp + row * sw * L;
    int64_t u0 = 0;  // phase values [0, u0) done for every phase
#if defined(__SSE2__)
    if constexpr (std::is_same_v<T, float>) {
      if (sw == 4) {
        for (; u0 + 4 <= full; u0 += 4) {  // reads s[4 u0, 4 u0 + 16), inside the row
          __m128 r0 = _mm_loadu_ps(s + 4 * u0), r1 = _mm_loadu_ps(s + 4 * u0 + 4);
          __m128 r2 = _mm_loadu_ps(s + 4 * u0 + 8), r3 = _mm_loadu_ps(s + 4 * u0 + 12);
          _MM_TRANSPOSE4_PS(r0, r1, r2, r3);  // r_j: phase j's values u0 .. u0 + 3
          _mm_storeu_ps(d + u0, r0);
          _mm_storeu_ps(d + L + u0, r1);
          _mm_storeu_ps(d + 2 * L + u0, r2);
          _mm_storeu_ps(d + 3 * L + u0, r3);
        }
      } else if (sw == 2) {
        for (; u0 + 4 <= full; u0 += 4) {
          const __m128 a = _mm_loadu_ps(s + 2 * u0), b = _mm_loadu_ps(s + 2 * u0 + 4);
          _mm_storeu_ps(d + u0, _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
          _mm_storeu_ps(d + L + u0, _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
        }
      }
    }
#endif
    for (int64_t r = 0; r < sw; ++r)
      for (int64_t u = u0; u < L; ++u) d[r * L + u] = u * sw + r < W ? s[u * sw + r] : T(0);
  }
}

// The source the fused packers read for image-group xg: its phase-split copy (in the calling
// thread's workspace; rows split over `threads`) when stride_w > 1, else nullptr (they read xg).
template <class T>
const T* phased_source(const Geometry& g, const T* xg, int threads) {
  if (g.p.stride_w == 1) return nullptr;
  T* xp = workspace_as<T>(static_cast<std::size_t>(g.d.Cg * g.d.H * phased_row(g)), kSlotPhased);
  maybe_parallel(g.d.Cg * g.d.H, threads, [&](int64_t r0, int64_t r1) { phase_split_rows(g, xg, xp, r0, r1); });
  return xp;
}

// Fused im2col + GEMM packing (forward): writes cols[p0 : p0+kc, j0 : j0+nc] of the whole image
// (pixels 0 .. OH*OW) straight into the GEMM's nr-wide micro-panels, so the cols matrix is never
// written and read back; the values are exactly im2col's. A strip of nr pixels is split into runs
// along one output row; per run and kernel row r, in-image values are copied and the rest zeroed.
// With xp (stride_w > 1, see phase_split_rows) the runs read xp's phase rows, consecutive values.
template <class T>
void pack_cols(const Geometry& g, const T* x, int64_t p0, int64_t kc, int64_t j0, int64_t nc, int nr, T* dst,
               const T* xp = nullptr) {
  const Dims& d = g.d;
  const int64_t KK = d.KH * d.KW, OW = d.OW, sw = g.p.stride_w, sh = g.p.stride_h;
  const int64_t row_len = xp ? phased_row(g) : d.W;  // values per input row of the source
  const int64_t step = xp ? 1 : sw;                   // source step between output columns
  struct RowInfo {
    const T* base;     // the source's channel plane
    int64_t hoff, off; // h = i * sh + hoff; column j reads base[h * row_len + j * step + off]
    int64_t lo, hi;    // output columns reading inside the image
  };
  constexpr int64_t kChunk = 128;
  RowInfo info[kChunk];
  const T zero = T(0);
  for (int64_t k0 = 0; k0 < kc; k0 += kChunk) {
    const int64_t kn = std::min(kChunk, kc - k0);
    for (int64_t k = 0; k < kn; ++k) {
      const int64_t r = p0 + k0 + k, c = r / KK, kp = r / d.KW % d.KH, kq = r % d.KW;
      RowInfo& ri = info[k];
      ri.base = (xp ? xp : x) + c * d.H * row_len;
      ri.hoff = kp * g.p.dil_h - g.p.pad_h;
      ri.off = kq * g.p.dil_w - g.p.pad_w;
      col_range(g, kq, &ri.lo, &ri.hi);
      if (xp) {  // input column j * sw + off is phase r = off mod sw, value j + floor(off / sw) of it
        const int64_t fl = ri.off >= 0 ? ri.off / sw : -((-ri.off + sw - 1) / sw);
        ri.off = (ri.off - fl * sw) * phase_len(g) + fl;
      }
    }
    T* strip = dst;
    for (int64_t s = 0; s < nc; s += nr, strip += kc * nr) {
      const int64_t cols = std::min<int64_t>(nr, nc - s);
      T* sk = strip + k0 * nr;
      for (int64_t jj = 0; jj < cols;) {
        const int64_t q = j0 + s + jj, i = q / OW, j = q % OW, len = std::min(cols - jj, OW - j);
        for (int64_t k = 0; k < kn; ++k) {
          const RowInfo& ri = info[k];
          T* dd = sk + k * nr + jj;
          const int64_t h = i * sh + ri.hoff;
          if (h < 0 || h >= d.H) {
            for (int64_t t = 0; t < len; ++t) dd[t] = zero;
            continue;
          }
          const int64_t a = std::clamp(ri.lo, j, j + len), b = std::clamp(ri.hi, a, j + len);
          const T* src = ri.base + h * row_len + ri.off;  // src[jx * step] is x[c, h, jx * sw + off]
          int64_t t = j;
          for (; t < a; ++t) dd[t - j] = zero;
          if (step == 1) {
            for (; t < b; ++t) dd[t - j] = src[t];
          } else {
            for (; t < b; ++t) dd[t - j] = src[t * step];
          }
          for (; t < j + len; ++t) dd[t - j] = zero;
        }
        jj += len;
      }
      if (cols < nr)
        for (int64_t k = 0; k < kn; ++k)
          for (int64_t jj = cols; jj < nr; ++jj) sk[k * nr + jj] = zero;
    }
  }
}

// The fast packer for whole strips of NR output pixels. With a source whose consecutive output
// columns read consecutive values (x itself at stride 1, the phase-split copy otherwise), lane t of
// a strip reads src_tap[lane[t]] for every kernel tap, lane[t] = i_t * sh * row_len + j_t: one run of
// consecutive values when the strip lies in one output row (or always, for "same" convolutions:
// stride 1, output the size of the input, where pixel q reads plane value q + delta), else a
// gather. The strip is packed tap by tap, each tap's rows (one per channel) in one loop: lanes whose
// window hangs over the border are cleared with the tap's bit mask (built once per strip and tap),
// so values read from the neighbouring row or channel never reach the product (not even as
// 0 * inf); rows whose read would leave the image-group go lane by lane. A partial last strip is
// a gathered one whose missing lanes are always masked. Same values as im2col.
inline bool same_geometry(const Geometry& g) {
  return g.p.stride_h == 1 && g.p.stride_w == 1 && g.d.OH == g.d.H && g.d.OW == g.d.W;
}

// The strip packers are compiled for the GEMM's panel widths (4, 8, 16, 32 columns): calls
// fixed(integral_constant<int, NR>) for those, other() for any other width.
template <class F, class G>
void by_panel_width(int nr, F&& fixed, G&& other) {
  switch (nr) {
    case 4: return fixed(std::integral_constant<int, 4>{});
    case 8: return fixed(std::integral_constant<int, 8>{});
    case 16: return fixed(std::integral_constant<int, 16>{});
    case 32: return fixed(std::integral_constant<int, 32>{});
    default: return other();
  }
}

// dst = src & mask over BYTES bytes (a multiple of 16), 16 bytes at a time: GCC/Clang vector
// types (SSE2 on any x86-64, NEON on ARM); a plain loop over the lanes with the store-to-load
// round trip through a local array ran at a quarter of the speed.
template <std::size_t BYTES>
inline void mask_copy(void* dst, const void* src, const void* mask) {
  static_assert(BYTES % 16 == 0, "whole 16-byte vectors");
#if defined(__GNUC__)
  typedef std::uint32_t V __attribute__((vector_size(16)));
  for (std::size_t i = 0; i < BYTES; i += 16) {
    V v, m;
    std::memcpy(&v, static_cast<const char*>(src) + i, 16);
    std::memcpy(&m, static_cast<const char*>(mask) + i, 16);
    v &= m;
    std::memcpy(static_cast<char*>(dst) + i, &v, 16);
  }
#else
  std::uint32_t v[BYTES / 4], m[BYTES / 4];
  std::memcpy(v, src, BYTES);
  std::memcpy(m, mask, BYTES);
  for (std::size_t i = 0; i < BYTES / 4; ++i) v[i] &= m[i];
  std::memcpy(dst, v, BYTES);
#endif
}

// dst = (src & mask_a) | (src2 & mask_b) over BYTES bytes, as mask_copy: a strip in two runs.
template <std::size_t BYTES>
inline void mask2_copy(void* dst, const void* src, const void* mask_a, const void* src2, const void* mask_b) {
  static_assert(BYTES % 16 == 0, "whole 16-byte vectors");
#if defined(__GNUC__)
  typedef std::uint32_t V __attribute__((vector_size(16)));
  for (std::size_t i = 0; i < BYTES; i += 16) {
    V v, m, v2, m2;
    std::memcpy(&v, static_cast<const char*>(src) + i, 16);
    std::memcpy(&m, static_cast<const char*>(mask_a) + i, 16);
    std::memcpy(&v2, static_cast<const char*>(src2) + i, 16);
    std::memcpy(&m2, static_cast<const char*>(mask_b) + i, 16);
    v = (v & m) | (v2 & m2);
    std::memcpy(static_cast<char*>(dst) + i, &v, 16);
  }
#else
  std::uint32_t v[BYTES / 4], m[BYTES / 4], v2[BYTES / 4], m2[BYTES / 4];
  std::memcpy(v, src, BYTES);
  std::memcpy(m, mask_a, BYTES);
  std::memcpy(v2, src2, BYTES);
  std::memcpy(m2, mask_b, BYTES);
  for (std::size_t i = 0; i < BYTES / 4; ++i) v[i] = (v[i] & m[i]) | (v2[i] & m2[i]);
  std::memcpy(dst, v, BYTES);
#endif
}

template <class T, int NR>
void pack_cols_strips(const Geometry& g, const T* x, const T* xp, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                      T* dst, int64_t* scratch) {
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  static_assert(sizeof(U) == sizeof(T), "bit mask width");
  const Dims& d = g.d;
  const int64_t KK = d.KH * d.KW, OW = d.OW, sw = g.p.stride_w, sh = g.p.stride_h;
  const T* src = xp ? xp : x;
  const int64_t row_len = xp ? phased_row(g) : d.W, plane = d.H * row_len;
  const int64_t planes_end = d.Cg * plane;  // reads at or past it leave the image-group
  // scratch, per kernel tap (row r of cols is channel r / KK, tap r % KK): the offset in src of its
  // first row in this block (of the block's first channel with that tap), row offset, the output
  // columns [lo, hi) whose window column is inside the image, and its first row in the block;
  // per kernel column, its offset in a source row and its [lo, hi). Without divisions per tap:
  // AlexNet conv1 (121 taps of 3 channels, 4 strips per call) spent more time in them than copying.
  int64_t* tap_off = scratch;
  int64_t* tap_hoff = scratch + KK;
  int64_t* tap_lo = scratch + 2 * KK;
  int64_t* tap_hi = scratch + 3 * KK;
  int64_t* tap_k = scratch + 4 * KK;
  int64_t* col_off = scratch + 5 * KK;
  int64_t* col_lo = col_off + d.KW;
  int64_t* col_hi = col_lo + d.KW;
  U* row_m = reinterpret_cast<U*>(col_hi + d.KW);  // per strip: lanes whose window row is inside
  U* col_m = row_m + d.KH * NR;                    // and whose window column is (and lane < cnt)
  for (int64_t kq = 0; kq < d.KW; ++kq) {
    int64_t off = kq * g.p.dil_w - g.p.pad_w;
    if (xp) {  // as in pack_cols: phase off mod sw, value floor(off / sw) of it
      const int64_t fl = off >= 0 ? off / sw : -((-off + sw - 1) / sw);
      off = (off - fl * sw) * phase_len(g) + fl;
    }
    col_off[kq] = off;
    col_range(g, kq, &col_lo[kq], &col_hi[kq]);
  }
  const int64_t r0 = p0 % KK, c0 = p0 / KK;  // the block starts at tap r0 of channel c0
  for (int64_t kp = 0, tp = 0; kp < d.KH; ++kp) {
    const int64_t hoff = kp * g.p.dil_h - g.p.pad_h;
    for (int64_t kq = 0; kq < d.KW; ++kq, ++tp) {
      tap_k[tp] = tp >= r0 ? tp - r0 : tp - r0 + KK;
      tap_off[tp] = (tp >= r0 ? c0 : c0 + 1) * plane + hoff * row_len + col_off[kq];
      tap_hoff[tp] = hoff;
      tap_lo[tp] = col_lo[kq], tap_hi[tp] = col_hi[kq];
    }
  }
  // 16 floats per row: the AVX2 copy loops where the CPU has them
  using Rows16 = void (*)(float*, int64_t, const float*, int64_t, int64_t, const std::uint32_t*);
  using Taps16 = void (*)(float*, const float*, const int64_t*, const int64_t*, int64_t, int64_t, int64_t, int64_t,
                          const std::uint32_t*, int64_t);
  Rows16 rows16 = nullptr;
  Taps16 taps16 = nullptr;
#if defined(__x86_64__) || defined(_M_X64)
  if (std::is_same<T, float>::value && NR == 16 && cpu_isa() >= Isa::Avx2)
    rows16 = conv2d_mask_rows16_avx2, taps16 = conv2d_copy_taps16_avx2;
#endif
  // A strip whose windows lie inside the image for every tap: the output rows hmin .. hmax with the
  // kernel's extreme row offsets, the columns jmin .. jmax inside every kernel column's [lo, hi).
  const int64_t hoff_lo = -g.p.pad_h, hoff_hi = (d.KH - 1) * g.p.dil_h - g.p.pad_h;
  int64_t lo_all = 0, hi_all = OW;
  for (int64_t kq = 0; kq < d.KW; ++kq) lo_all = std::max(lo_all, col_lo[kq]), hi_all = std::min(hi_all, col_hi[kq]);
  for (int64_t s = 0; s < nc; s += NR, dst += kc * NR) {
    const int64_t q0 = j0 + s;
    // a partial last strip: lanes cnt .. NR - 1 carry on past the last pixel (so the strip can
    // still be one contiguous run) and are masked to zero; `full` is never true for it
    const int cnt = static_cast<int>(std::min<int64_t>(NR, nc - s));
    int64_t ti[NR], tj[NR], lane[NR];
    bool contiguous = true;
    int64_t lane_min = 0, lane_max = 0;  // (with padding, OW > W: lanes need not increase)
    int64_t jmin = OW, jmax = -1, hmin = 0, hmax = 0;
    for (int64_t t = 0, i = q0 / OW, j = q0 % OW; t < NR; ++t) {
      ti[t] = i, tj[t] = j;
      if (++j == OW) j = 0, ++i;
      lane[t] = ti[t] * sh * row_len + tj[t];
      contiguous = contiguous && lane[t] == lane[0] + t;
      lane_min = t == 0 ? lane[t] : std::min(lane_min, lane[t]);
      lane_max = t == 0 ? lane[t] : std::max(lane_max, lane[t]);
      jmin = std::min(jmin, tj[t]), jmax = std::max(jmax, tj[t]);
      hmin = t == 0 ? ti[t] * sh : std::min(hmin, ti[t] * sh), hmax = std::max(hmax, ti[t] * sh);
    }
    // Not one run but two (a strip across the end of an output row of a strided conv): lanes
    // [0, split) read lane[0] + t, lanes [split, NR) read lane[0] + gap + t, gap > 0.
    int split = NR;
    int64_t gap = 0;
    if (!contiguous) {
      int t = 1;
      while (t < NR - 1 && lane[t] == lane[t - 1] + 1) ++t;
      gap = lane[t] - lane[0] - t;
      bool two = gap > 0;
      for (int u = t + 1; u < NR && two; ++u) two = lane[u] == lane[u - 1] + 1;
      if (two) split = t;
    }
    U half_a[NR], half_b[NR];  // a full strip in two runs: the lanes of each
    if (split < NR)
      for (int t = 0; t < NR; ++t) half_a[t] = t < split ? ~U(0) : U(0), half_b[t] = ~half_a[t];
    // Every tap full, in one run or two: the whole strip in one call. AlexNet conv1 has 3 channels
    // per tap, and the choice made per tap below cost more than its copies: forward 0.89-0.93 of the
    // time on 1 and 2 threads, interleaved (conv2-conv5 0.99-1.01). Every lane then reads a pixel
    // of the image, so neither run leaves x.
    if (taps16 && (contiguous || split < NR) && cnt == NR && hmin + hoff_lo >= 0 && hmax + hoff_hi < d.H &&
        jmin >= lo_all && jmax < hi_all) {
      taps16(reinterpret_cast<float*>(dst), reinterpret_cast<const float*>(src + lane[0]), tap_k, tap_off, KK, kc, KK,
             plane, contiguous ? nullptr : reinterpret_cast<const std::uint32_t*>(half_b), gap);
      continue;
    }
    bool have_masks = false;  // row_m, col_m made for this strip
    // Tap by tap: the rows of one tap (every KK-th row, one per channel) share the strip's border
    // lanes, so the choice (copy, gather or masked copy) and the mask are made once per tap.
    for (int64_t tp = 0; tp < KK; ++tp) {
      const int64_t k_first = tap_k[tp];
      if (k_first >= kc) continue;
      const int64_t hoff = tap_hoff[tp], lo = tap_lo[tp], hi = tap_hi[tp];
      int64_t at = tap_off[tp];  // lane t of row k reads src[at + lane[t]]
      T* dd = dst + k_first * NR;
      const int64_t rstep = KK * NR;
      const bool full = cnt == NR && hmin + hoff >= 0 && hmax + hoff < d.H && jmin >= lo && jmax < hi;
      if (full && contiguous) {
        if (rows16 && kc - k_first > 3 * KK) {  // more than 3 rows (fewer: the inline copy is faster)
          static const std::uint32_t ones[16] = {~0u, ~0u, ~0u, ~0u, ~0u, ~0u, ~0u, ~0u,
                                                 ~0u, ~0u, ~0u, ~0u, ~0u, ~0u, ~0u, ~0u};
          rows16(reinterpret_cast<float*>(dd), rstep, reinterpret_cast<const float*>(src + at + lane[0]), plane,
                 (kc - k_first + KK - 1) / KK, ones);
          continue;
        }
        for (int64_t k = k_first; k < kc; k += KK, at += plane, dd += rstep)
          std::memcpy(dd, src + at + lane[0], sizeof(T) * NR);
        continue;
      }
      if (full) {
        for (int64_t k = k_first; k < kc; k += KK, at += plane, dd += rstep) {
          if (split < NR && at + lane_min >= 0 && at + lane_max < planes_end)  // both runs inside x
            mask2_copy<NR * sizeof(T)>(dd, src + at + lane[0], half_a, src + at + lane[0] + gap, half_b);
          else
            for (int t = 0; t < NR; ++t) dd[t] = src[at + lane[t]];
        }
        continue;
      }
      // Lanes whose window hangs over the border are cleared with a bit mask, so values read
      // from the neighbouring row or channel never reach the product (not even 0 * inf).
      // its mask: the AND of the strip's kernel-row and kernel-column masks, made at the first tap
      // that needs them (KH + KW masks per strip where each tap built its own lane by lane: AlexNet
      // conv2-5 forward 0.96-0.99 of the time on 1 thread, 0.98-1.00 on 2, interleaved)
      if (!have_masks) {
        for (int64_t kp = 0; kp < d.KH; ++kp) {
          const int64_t ho = kp * g.p.dil_h - g.p.pad_h;
          for (int t = 0; t < NR; ++t) {
            const int64_t h = ti[t] * sh + ho;
            row_m[kp * NR + t] = U(0) - U(h >= 0 && h < d.H);
          }
        }
        for (int64_t kq = 0; kq < d.KW; ++kq)
          for (int t = 0; t < NR; ++t)
            col_m[kq * NR + t] = U(0) - U(t < cnt && tj[t] >= col_lo[kq] && tj[t] < col_hi[kq]);
        have_masks = true;
      }
      U m[NR];
      const U* rm = row_m + tp / d.KW * NR;
      const U* cm = col_m + tp % d.KW * NR;
      for (int t = 0; t < NR; ++t) m[t] = rm[t] & cm[t];
      U m_a[NR], m_b[NR];  // two runs: the mask split at lane `split`
      if (split < NR)
        for (int t = 0; t < NR; ++t) m_a[t] = m[t] & half_a[t], m_b[t] = m[t] & half_b[t];
      for (int64_t k = k_first; k < kc; k += KK, at += plane, dd += rstep) {
        if (at + lane_min < 0 || at + lane_max >= planes_end) {  // would leave x: per lane
          for (int t = 0; t < NR; ++t) dd[t] = m[t] ? src[at + lane[t]] : T(0);
          continue;
        }
        if (rows16 && contiguous) {  // this row and the following ones that stay inside x
          const int64_t rows = std::min((kc - k + KK - 1) / KK, (planes_end - 1 - (at + lane_max)) / plane + 1);
          rows16(reinterpret_cast<float*>(dd), rstep, reinterpret_cast<const float*>(src + at + lane[0]), plane,
                 rows, reinterpret_cast<const std::uint32_t*>(m));
          k += (rows - 1) * KK, at += (rows - 1) * plane, dd += (rows - 1) * rstep;
          continue;
        }
        if (contiguous) {
          mask_copy<NR * sizeof(T)>(dd, src + at + lane[0], m);
        } else if (split < NR) {  // both runs read inside [lane_min, lane_max]
          mask2_copy<NR * sizeof(T)>(dd, src + at + lane[0], m_a, src + at + lane[0] + gap, m_b);
        } else {
          U v[NR];
          for (int t = 0; t < NR; ++t) std::memcpy(&v[t], src + at + lane[t], sizeof(T));
          mask_copy<NR * sizeof(T)>(dd, v, m);
        }
      }
    }
  }
}

template <class T>
void pack_cols_strips(const Geometry& g, const T* x, const T* xp, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                      int nr, T* dst) {
  int64_t* scratch =
      workspace_as<int64_t>(static_cast<std::size_t>(5 * g.d.KH * g.d.KW + 3 * g.d.KW + (g.d.KH + g.d.KW) * 32),
                            kSlotTaps);
  by_panel_width(
      nr, [&](auto w) { pack_cols_strips<T, decltype(w)::value>(g, x, xp, p0, kc, j0, nc, dst, scratch); },
      [&] { pack_cols(g, x, p0, kc, j0, nc, nr, dst, xp); });
}

// The transposed block for backward weight: dst[s * kc * nr + k * nr + jj] = cols[j0 + s*nr + jj,
// p0 + k], i.e. op(B) = cols^T with pixels along K and kernel rows along N; same values as im2col.
template <class T>
void pack_cols_t(const Geometry& g, const T* x, int64_t p0, int64_t kc, int64_t j0, int64_t nc, int nr, T* dst) {
  const Dims& d = g.d;
  const int64_t KK = d.KH * d.KW, OW = d.OW, sw = g.p.stride_w, sh = g.p.stride_h;
  const T zero = T(0);
  for (int64_t s = 0; s < nc; s += nr, dst += kc * nr) {
    const int64_t cols = std::min<int64_t>(nr, nc - s);
    for (int64_t jj = 0; jj < cols; ++jj) {
      const int64_t r = j0 + s + jj, c = r / KK, kp = r / d.KW % d.KH, kq = r % d.KW;
      const T* base = x + c * d.H * d.W;
      const int64_t hoff = kp * g.p.dil_h - g.p.pad_h, off = kq * g.p.dil_w - g.p.pad_w;
      int64_t lo, hi;
      col_range(g, kq, &lo, &hi);
      T* dd = dst + jj;
      for (int64_t k = 0; k < kc;) {
        const int64_t q = p0 + k, i = q / OW, j = q % OW, len = std::min(kc - k, OW - j);
        const int64_t h = i * sh + hoff;
        T* o = dd + k * nr;
        if (h < 0 || h >= d.H) {
          for (int64_t t = 0; t < len; ++t) o[t * nr] = zero;
        } else {
          const int64_t a = std::clamp(lo, j, j + len), b = std::clamp(hi, a, j + len);
          const T* src = base + h * d.W + off;
          int64_t t = j;
          for (; t < a; ++t) o[(t - j) * nr] = zero;
          for (; t < b; ++t) o[(t - j) * nr] = src[t * sw];
          for (; t < j + len; ++t) o[(t - j) * nr] = zero;
        }
        k += len;
      }
    }
    for (int64_t jj = cols; jj < nr; ++jj)
      for (int64_t k = 0; k < kc; ++k) dst[k * nr + jj] = zero;
  }
}

// pack_cols_t for "same" convolutions (stride 1, output the size of the input): cols row r reads
// the plane of its channel shifted by one offset, cols[r, q] = x[q + shift_r] where tap r % KK's
// window is inside the image at pixel q, so a strip of NR rows is NR read streams into one write
// stream. Four pixels of four streams at a time: 16-byte loads, the tap's lane mask (zero where
// the window hangs over the border, so neighbouring rows' or channels' values never reach the
// product, not even as 0 * inf), a 4 x 4 register transpose and 16-byte stores (SSE2, float);
// blocks whose loads would leave the image-group, a partial last strip, the last kc % 4 pixels and
// double go value by value. Same values as im2col. masks: KK * kc lane masks, built per call here.
#if defined(__SSE2__)
constexpr bool kSimdSamePack = true;   // pack_cols_t_same has its vector path (float)
#else
constexpr bool kSimdSamePack = false;
#endif

template <class T, int NR>
void pack_cols_t_same(const Geometry& g, const T* x, int64_t p0, int64_t kc, int64_t j0, int64_t nc, T* dst,
                      int64_t* shift, std::uint32_t* masks) {
  const Dims& d = g.d;
  const int64_t KK = d.KH * d.KW, W = d.W, plane = d.H * W, end = d.Cg * plane;
  for (int64_t tp = 0; tp < KK; ++tp) {
    const int64_t hoff = tp / d.KW * g.p.dil_h - g.p.pad_h, off = tp % d.KW * g.p.dil_w - g.p.pad_w;
    int64_t lo, hi;
    col_range(g, tp % d.KW, &lo, &hi);
    shift[tp] = hoff * W + off;
    for (int64_t k = 0; k < kc; ++k) {
      const int64_t q = p0 + k, h = q / W + hoff, j = q % W;
      masks[tp * kc + k] = h >= 0 && h < d.H && j >= lo && j < hi ? ~std::uint32_t(0) : 0;
    }
  }
  for (int64_t s = 0; s < nc; s += NR, dst += kc * NR) {
    const int cnt = static_cast<int>(std::min<int64_t>(NR, nc - s));
    int64_t base[NR];        // stream jj reads x[base[jj] + p0 + k]
    const std::uint32_t* mk[NR];  // and its lane masks mk[jj][k]
    for (int jj = 0; jj < NR; ++jj) {
      const int64_t r = j0 + s + std::min(jj, cnt - 1), c = r / KK, tp = r % KK;
      base[jj] = c * plane + shift[tp] + p0;
      mk[jj] = masks + tp * kc;
    }
    auto one = [&](int64_t k, int jj) {
      const int64_t at = base[jj] + k;
      return jj < cnt && mk[jj][k] && at >= 0 && at < end ? x[at] : T(0);
    };
#if defined(__SSE2__)
    if constexpr (std::is_same_v<T, float> && NR % 4 == 0) {
      if (cnt == NR) {
        // four streams at a time over the pixels [kb, ke); the pixels where all four read inside the
        // image-group take the vector path, the few at either end (a shifted plane of the first or
        // last channel) go value by value
        auto four = [&](int jj, int64_t kb, int64_t ke) {
          int64_t klo = kb, kend = ke;  // vector blocks: k >= klo and k + 4 <= kend
          for (int u = 0; u < 4; ++u) klo = std::max(klo, -base[jj + u]), kend = std::min(kend, end - base[jj + u]);
          auto scalar = [&](int64_t k) {
            for (int u = 0; u < 4; ++u) dst[k * NR + jj + u] = one(k, jj + u);
          };
          int64_t k = kb;
          for (; k < std::min(klo, ke); ++k) scalar(k);
          const int64_t b0 = base[jj], b1 = base[jj + 1], b2 = base[jj + 2], b3 = base[jj + 3];
          const float* m0 = reinterpret_cast<const float*>(mk[jj]);
          const float* m1 = reinterpret_cast<const float*>(mk[jj + 1]);
          const float* m2 = reinterpret_cast<const float*>(mk[jj + 2]);
          const float* m3 = reinterpret_cast<const float*>(mk[jj + 3]);
          for (; k + 4 <= kend; k += 4) {
            __m128 r0 = _mm_and_ps(_mm_loadu_ps(x + (b0 + k)), _mm_loadu_ps(m0 + k));
            __m128 r1 = _mm_and_ps(_mm_loadu_ps(x + (b1 + k)), _mm_loadu_ps(m1 + k));
            __m128 r2 = _mm_and_ps(_mm_loadu_ps(x + (b2 + k)), _mm_loadu_ps(m2 + k));
            __m128 r3 = _mm_and_ps(_mm_loadu_ps(x + (b3 + k)), _mm_loadu_ps(m3 + k));
            _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
            _mm_storeu_ps(dst + k * NR + jj, r0);
            _mm_storeu_ps(dst + (k + 1) * NR + jj, r1);
            _mm_storeu_ps(dst + (k + 2) * NR + jj, r2);
            _mm_storeu_ps(dst + (k + 3) * NR + jj, r3);
          }
          for (; k < ke; ++k) scalar(k);
        };
#if defined(__x86_64__) || defined(_M_X64)
        // eight streams at a time in 8 x 8 AVX2 transposes where all eight read inside the
        // image-group, the rest as above: AlexNet's weight gradients took 0.95-0.96 (conv2),
        // 0.96-0.97 (conv5), 0.95-1.02 (conv3, conv4) of the time on 1 thread and 0.95 on 2,
        // interleaved against the four-stream SSE2 loop alone
        if (NR % 8 == 0 && cpu_isa() >= Isa::Avx2) {
          for (int jj = 0; jj < NR; jj += 8) {
            int64_t klo = 0, kend = kc;
            for (int u = 0; u < 8; ++u) klo = std::max(klo, -base[jj + u]), kend = std::min(kend, end - base[jj + u]);
            const int64_t ka = std::min(klo, kc), n = kend > ka ? (kend - ka) / 8 * 8 : 0;
            if (n) {
              const float* s8[8];
              const std::uint32_t* m8[8];
              for (int u = 0; u < 8; ++u) s8[u] = x + base[jj + u] + ka, m8[u] = mk[jj + u] + ka;
              conv2d_mask_transpose8_avx2(dst + ka * NR + jj, NR, s8, m8, n);
            }
            for (int h = 0; h < 8; h += 4) four(jj + h, 0, ka), four(jj + h, ka + n, kc);
          }
          continue;
        }
#endif
        for (int jj = 0; jj < NR; jj += 4) four(jj, 0, kc);
        continue;
      }
    }
#endif
    for (int64_t k = 0; k < kc; ++k)
      for (int jj = 0; jj < NR; ++jj) dst[k * NR + jj] = one(k, jj);
  }
}

constexpr int64_t kTileK = 16;  // pack_cols_t_strips: pixels per transposed tile
constexpr int64_t kRun = 4;     // pack_cols_t_strips: values describing one run

// pack_cols_t for whole strips of NR kernel rows: blocks of kTileK consecutive pixels are copied per
// kernel row, in runs along one output row (consecutive values of x, or of its phase-split copy;
// zero where the window hangs over the border), into a small tile, which is then written out
// transposed, NR consecutive values per pixel, instead of one value per cache line. The runs depend
// only on the pixels, so they are worked out once per call. A partial last strip goes through
// pack_cols_t.
template <class T, int NR>
void pack_cols_t_strips(const Geometry& g, const T* x, const T* xp, int64_t p0, int64_t kc, int64_t j0,
                        int64_t nc, T* dst, int64_t* seg) {
  const Dims& d = g.d;
  const int64_t KK = d.KH * d.KW, OW = d.OW, sw = g.p.stride_w, sh = g.p.stride_h;
  const T* src = xp ? xp : x;
  const int64_t row_len = xp ? phased_row(g) : d.W, plane = d.H * row_len;
  // The blocks of kTileK pixels split into runs along one output row, kRun values each:
  // first lane, lane count, output row * sh, first output column; runs of a block are consecutive.
  const int64_t nblocks = (kc + kTileK - 1) / kTileK;
  int64_t* first_run = seg;             // nblocks + 1 entries
  int64_t* run = seg + nblocks + 1;     // kRun per run
  int64_t nruns = 0;
  for (int64_t b = 0; b < nblocks; ++b) {
    first_run[b] = nruns;
    const int64_t k1 = std::min(kc, (b + 1) * kTileK);
    for (int64_t k = b * kTileK; k < k1;) {
      const int64_t q = p0 + k, i = q / OW, j = q % OW, len = std::min(k1 - k, OW - j);
      int64_t* r = run + kRun * nruns++;
      r[0] = k - b * kTileK, r[1] = len, r[2] = i * sh, r[3] = j;
      k += len;
    }
  }
  first_run[nblocks] = nruns;
  for (int64_t s = 0; s < nc; s += NR, dst += kc * NR) {
    if (nc - s < NR) {
      pack_cols_t(g, x, p0, kc, j0 + s, nc - s, NR, dst);
      break;
    }
    int64_t base[NR], hoff[NR], lo[NR], hi[NR];
    for (int jj = 0; jj < NR; ++jj) {
      const int64_t r = j0 + s + jj, c = r / KK, kp = r / d.KW % d.KH, kq = r % d.KW;
      hoff[jj] = kp * g.p.dil_h - g.p.pad_h;
      int64_t off = kq * g.p.dil_w - g.p.pad_w;
      if (xp) {  // as in pack_cols
        const int64_t fl = off >= 0 ? off / sw : -((-off + sw - 1) / sw);
        off = (off - fl * sw) * phase_len(g) + fl;
      }
      base[jj] = c * plane + off;
      col_range(g, kq, &lo[jj], &hi[jj]);
    }
    for (int64_t b = 0; b < nblocks; ++b) {
      const int64_t k0 = b * kTileK;
      const int n = static_cast<int>(std::min<int64_t>(kTileK, kc - k0));
      T tile[NR][kTileK];
      for (int jj = 0; jj < NR; ++jj) {
        T* row = tile[jj];
        for (int64_t ri = first_run[b]; ri < first_run[b + 1]; ++ri) {
          const int64_t* r = run + kRun * ri;
          const int64_t t0 = r[0], len = r[1], h = r[2] + hoff[jj], j = r[3];
          T* o = row + t0;
          if (h < 0 || h >= d.H) {
            for (int64_t t = 0; t < len; ++t) o[t] = T(0);
            continue;
          }
          // columns j .. j + len - 1 of output row; inside the image: [lo, hi)
          const int64_t a = std::clamp(lo[jj] - j, int64_t(0), len), e = std::clamp(hi[jj] - j, a, len);
          const T* sb = src + base[jj] + h * row_len + j;  // sb[t] is output column j + t's value
          int64_t t = 0;
          for (; t < a; ++t) o[t] = T(0);
          for (; t < e; ++t) o[t] = sb[t];
          for (; t < len; ++t) o[t] = T(0);
        }
      }
      T* o = dst + k0 * NR;
      for (int t = 0; t < n; ++t)
        for (int jj = 0; jj < NR; ++jj) o[t * NR + jj] = tile[jj][t];
    }
  }
}

template <class T>
void pack_cols_t_same(const Geometry& g, const T* x, int64_t p0, int64_t kc, int64_t j0, int64_t nc, int nr,
                      T* dst) {
  const int64_t KK = g.d.KH * g.d.KW;
  int64_t* shift = workspace_as<int64_t>(static_cast<std::size_t>(KK), kSlotTaps);
  auto* masks = workspace_as<std::uint32_t>(static_cast<std::size_t>(KK * kc), kSlotMasks);
  by_panel_width(
      nr, [&](auto w) { pack_cols_t_same<T, decltype(w)::value>(g, x, p0, kc, j0, nc, dst, shift, masks); },
      [&] { pack_cols_t(g, x, p0, kc, j0, nc, nr, dst); });
}

template <class T>
void pack_cols_t_strips(const Geometry& g, const T* x, const T* xp, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                        int nr, T* dst) {
  // per block of kTileK pixels at most kTileK runs (see pack_cols_t_strips<T, NR>)
  const int64_t nblocks = (kc + kTileK - 1) / kTileK;
  int64_t* sc = workspace_as<int64_t>(static_cast<std::size_t>(nblocks + 1 + kRun * nblocks * kTileK), kSlotTaps);
  by_panel_width(
      nr, [&](auto w) { pack_cols_t_strips<T, decltype(w)::value>(g, x, xp, p0, kc, j0, nc, dst, sc); },
      [&] { pack_cols_t(g, x, p0, kc, j0, nc, nr, dst); });
}

// Image split: [0, n_split) one chunk per thread, [n_split, N) one image at a time on all threads.
int64_t split_point(int64_t N, int T) { return T > 1 ? N / T * T : N; }

std::size_t band_cols_elems(const Geometry& g, std::size_t elem) {
  return g.direct ? 0 : static_cast<std::size_t>(g.K * cols_ld(g.band_rows * g.d.OW, elem));
}

// Forward with fused im2col (pack_cols) or im2col into scratch + GEMM. Fused saves writing and
// re-reading cols, but packs in runs along one output row: with narrow outputs (runs of a few
// pixels) and few output channels per group (each packed value used by few rows), the plain
// im2col's long block copies were as fast or faster in interleaved timings (AlexNet conv4/conv5:
// OW 13, 192/128 channels per group), so those keep it. Backward weight makes the same choice
// (pack_cols_t). CONVKIT_CONV_FUSED=1 / 0 forces either (tests run both on every shape).
// "Same" convolutions pack fastest fused, whatever their size: forward with pack_cols_strips, and
// backward weight in float with pack_cols_t_same's SSE2 transposes (interleaved, 1 thread, against
// im2col + pack: AlexNet conv2 0.85, conv3 0.89, conv4 0.96, conv5 0.95 of the time).
bool fused_forward(const Geometry& g, bool forward, std::size_t elem) {
  const char* e = std::getenv("CONVKIT_CONV_FUSED");
  if (e && e[0] == '0') return false;
  if (e && e[0] == '1') return true;
  if (same_geometry(g) && (forward || (kSimdSamePack && elem == sizeof(float)))) return true;
  return g.d.OW >= 16 || g.d.OCg >= 256;
}

// ---- forward --------------------------------------------------------------------------------------

// The weights of every group packed once per call into the GEMM's A panels (gemm_pack_a), so the
// images of the batch do not each pack them again: forward uses W_g [OCg, K], backward data
// W_g^T [K, OCg]. Lives in the calling thread's workspace slot kSlotPackedW; the worker threads
// only read it.
template <class T>
std::vector<PackedA<T>> pack_weights(const Geometry& g, const T* ws, bool transpose, int threads) {
  const Dims& d = g.d;
  const int64_t M = transpose ? g.K : d.OCg, K = transpose ? d.OCg : g.K;
  const std::size_t per = gemm_packed_a_size<T>(M, K);
  T* buf = workspace_as<T>(per * static_cast<std::size_t>(d.G), kSlotPackedW);
  std::vector<PackedA<T>> out(static_cast<std::size_t>(d.G));
  for (int64_t grp = 0; grp < d.G; ++grp)
    out[grp] = gemm_pack_a<T>(transpose, M, K, ws + grp * d.OCg * g.K, g.K, buf + grp * per, threads);
  return out;
}

template <class T>
void forward_image(const Geometry& g, const T* xs, const PackedA<T>* wp, const T* bs, T* ys, int64_t n, T* cols,
                   int threads) {
  const Dims& d = g.d;
  for (int64_t grp = 0; grp < d.G; ++grp) {
    const T* xg = xs + (n * d.C + grp * d.Cg) * d.H * d.W;
    const PackedA<T>& wg = wp[grp];
    T* yg = ys + (n * d.OC + grp * d.OCg) * g.P;
    if (!cols && !g.direct) {  // fused im2col: the GEMM packs its B blocks straight from x; the bias
                  // is each output row's starting value, set tile by tile inside the GEMM
      const T* xp = phased_source(g, xg, threads);
      const BPacker<T> pb = [&](int64_t p0, int64_t kc, int64_t j0, int64_t nc, int nr, T* dst) {
        pack_cols_strips(g, xg, xp, p0, kc, j0, nc, nr, dst);
      };
      gemm_packer<T>(wg, g.P, T(1), pb, T(0), yg, g.P, threads, bs ? bs + grp * d.OCg : nullptr);
      continue;
    }
    T beta = T(0);
    if (bs) {
      for (int64_t o = 0; o < d.OCg; ++o) std::fill(yg + o * g.P, yg + (o + 1) * g.P, bs[grp * d.OCg + o]);
      beta = T(1);
    }
    if (g.direct) {
      gemm<T>(wg, false, g.P, T(1), xg, g.P, beta, yg, g.P, threads);
      continue;
    }
    for (int64_t i0 = 0; i0 < d.OH; i0 += g.band_rows) {
      const int64_t i1 = std::min(d.OH, i0 + g.band_rows), np = (i1 - i0) * d.OW;
      im2col(g, xg, i0, i1, cols, threads);
      gemm<T>(wg, false, np, T(1), cols, cols_ld(np, sizeof(T)), beta, yg + i0 * d.OW, g.P, threads);
    }
  }
}

template <class T>
bool forward_t(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p) {
  Geometry g;
  if (!make_geometry(x, w, y, p, sizeof(T), &g)) return false;
  const T* xs = x.ptr<T>();
  const T* ws = w.ptr<T>();
  const T* bs = b ? b->ptr<T>() : nullptr;
  T* ys = y.ptr<T>();
  const int nt = threads_for(g.macs);
  const int64_t n_split = split_point(g.d.N, nt);
  // The fused path needs no cols (see fused_forward).
  const std::size_t ce = fused_forward(g, true, sizeof(T)) ? 0 : band_cols_elems(g, sizeof(T));
  const std::vector<PackedA<T>> wp = pack_weights(g, ws, false, nt);
  if (n_split > 0) {
    std::atomic<int64_t> next{0};
    run_threads(nt, [&](int, int) {
      T* cols = ce ? workspace_as<T>(ce, kSlotCols) : nullptr;
      for (int64_t n; (n = next.fetch_add(1, std::memory_order_relaxed)) < n_split;)
        forward_image(g, xs, wp.data(), bs, ys, n, cols, 1);
    });
  }
  if (n_split < g.d.N) {
    T* cols = ce ? workspace_as<T>(ce, kSlotCols) : nullptr;
    for (int64_t n = n_split; n < g.d.N; ++n) forward_image(g, xs, wp.data(), bs, ys, n, cols, nt);
  }
  return true;
}

// ---- backward data --------------------------------------------------------------------------------

template <class T>
void backward_data_image(const Geometry& g, const T* gs, const PackedA<T>* wtp, T* dxs, int64_t n, T* dcols,
                         int threads) {
  const Dims& d = g.d;
  for (int64_t grp = 0; grp < d.G; ++grp) {
    const T* gg = gs + (n * d.OC + grp * d.OCg) * g.P;
    const PackedA<T>& wt = wtp[grp];  // W_g^T [K, OCg]
    T* dxg = dxs + (n * d.C + grp * d.Cg) * d.H * d.W;
    if (g.direct) {  // dx_g[Cg, H*W] = W_g^T @ dy_g
      gemm<T>(wt, false, g.P, T(1), gg, g.P, T(0), dxg, g.P, threads);
      continue;
    }
    std::fill(dxg, dxg + d.Cg * d.H * d.W, T(0));
    for (int64_t i0 = 0; i0 < d.OH; i0 += g.band_rows) {
      const int64_t i1 = std::min(d.OH, i0 + g.band_rows), np = (i1 - i0) * d.OW;
      // col2im channel by channel as the GEMM finishes their rows of dcols (a block of rows while
      // it is still in cache, on one thread; all at the end on several): the same additions in the
      // same order as one col2im after the GEMM. dcols of AlexNet conv1 (363 x 3025 per image) and
      // conv2 (1200 x 729) went out to L3 and back between the two: their data gradients took
      // 0.93-0.94 and 0.97-0.99 of the time, interleaved, 1 and 2 threads (conv3 0.99-1.01)
      const int64_t KK = d.KH * d.KW;
      int64_t c_done = 0;
      const RowsDone done = [&](int64_t, int64_t r1) {
        const int64_t c_new = r1 / KK;  // channels whose KH * KW rows are all final
        if (c_new > c_done) col2im_add(g, dcols, i0, i1, dxg, threads, c_done, c_new), c_done = c_new;
      };
      gemm<T>(wt, false, np, T(1), gg + i0 * d.OW, g.P, T(0), dcols, cols_ld(np, sizeof(T)), threads, &done);
    }
  }
}

// Backward data as a forward convolution. With stride 1 the data gradient is a convolution of dy:
//   dx = conv(dy, W'),  W'[grp*Cg + c, o, kh, kw] = W[grp*OCg + o, c, KH-1-kh, KW-1-kw],
//   padding dil*(K-1) - pad, which for a "same" convolution is pad itself,
// so it can run through the forward's fused packer and GEMM: no dcols matrix written and read back,
// no col2im. It packs OCg*KH*KW rows of B per pixel for Cg output rows, where the usual route
// writes and scatters Cg*KH*KW rows of dcols, so it pays when OCg is at most Cg and Cg fills the
// microkernel's panels; the flipped copy of the filters costs about what one image gains, so it
// also needs a few images. Interleaved against the usual route, 1 / 2 threads: AlexNet conv5 (Cg
// 192, OCg 128) 0.93-0.97 of the time at batch 32, 0.93 at 8, 0.97 at 4, 1.03 at 1; conv4 (OCg =
// Cg = 192) 0.97-1.01 at 8-32; conv3 (OCg 1.5 Cg) 1.01-1.02 and conv2 (OCg 2.7 Cg) 1.09 keep the
// usual route. 1 x 1 kernels (g.direct) are one GEMM either way. Where the forward convolution
// would run as an indirect GEMM (conv2d_indirect.cpp: 5 x 5 and larger kernels) it pays whatever
// the channels and the batch: AlexNet conv2 0.90-0.93 of the time at batch 8-32, 0.97 at 1, 1 and 2
// threads. CONVKIT_CONV_BWD_AS_FWD=1 / 0 forces the choice where the geometry allows it.
bool data_grad_as_forward(const Geometry& g, DType dtype) {
  if (!same_geometry(g) || g.direct) return false;
  const char* e = std::getenv("CONVKIT_CONV_BWD_AS_FWD");
  if (e && (e[0] == '0' || e[0] == '1')) return e[0] == '1';
  Dims f = g.d;  // the forward problem: dy [N, OC, OH, OW] convolved with the flipped filters
  f.C = g.d.OC, f.Cg = g.d.OCg, f.OC = g.d.C, f.OCg = g.d.Cg;
  f.H = g.d.OH, f.W = g.d.OW, f.OH = g.d.H, f.OW = g.d.W;
  if (indirect_takes(f, data_grad_as_forward_params(g.d, g.p), dtype)) return true;
  return g.d.Cg >= 64 && g.d.OCg <= g.d.Cg && g.d.N >= 4;
}

template <class T>
bool backward_data_as_forward(const Geometry& g, const Tensor& dy, const Tensor& w, const Tensor& dx,
                              const Conv2dParams& p) {
  const Dims& d = g.d;
  T* wf = workspace_as<T>(static_cast<std::size_t>(d.OC * d.Cg * d.KH * d.KW), kSlotFlipped);
  flip_for_data_grad(d, w.ptr<T>(), wf, threads_for(g.macs));
  Tensor wt = w;
  wt.data = wf;
  wt.shape[0] = d.C;
  wt.shape[1] = d.OCg;
  const Conv2dParams q = data_grad_as_forward_params(d, p);
  return forward_indirect(dy, wt, nullptr, dx, q) || forward_t<T>(dy, wt, nullptr, dx, q);
}

template <class T>
bool backward_data_t(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p) {
  Geometry g;
  if (!make_geometry(dx, w, dy, p, sizeof(T), &g)) return false;
  if (data_grad_as_forward(g, dy.dtype) && backward_data_as_forward<T>(g, dy, w, dx, p)) return true;
  const T* gs = dy.ptr<T>();
  const T* ws = w.ptr<T>();
  T* dxs = dx.ptr<T>();
  const int nt = threads_for(g.macs);
  const int64_t n_split = split_point(g.d.N, nt);
  const std::size_t ce = band_cols_elems(g, sizeof(T));
  const std::vector<PackedA<T>> wtp = pack_weights(g, ws, true, nt);
  if (n_split > 0) {
    std::atomic<int64_t> next{0};
    run_threads(nt, [&](int, int) {
      T* dcols = ce ? workspace_as<T>(ce, kSlotCols) : nullptr;
      for (int64_t n; (n = next.fetch_add(1, std::memory_order_relaxed)) < n_split;)
        backward_data_image(g, gs, wtp.data(), dxs, n, dcols, 1);
    });
  }
  if (n_split < g.d.N) {
    T* dcols = ce ? workspace_as<T>(ce, kSlotCols) : nullptr;
    for (int64_t n = n_split; n < g.d.N; ++n) backward_data_image(g, gs, wtp.data(), dxs, n, dcols, nt);
  }
  return true;
}

// ---- backward weight ------------------------------------------------------------------------------

// ---- backward weight, tap-major: op(B) copied from a channel-last image ----------------------------
// The weight gradient's op(B) = cols^T [P, K] with its columns in tap-major order, n = t * Cg + c
// (tap t = (kh, kw), channel c), is a plain copy from the channel-last, zero-bordered copy of the
// image-group (channel_last): row p of a strip is, per run of consecutive channels of one tap, a
// contiguous run of xt at pixel p's window origin plus the tap's offset. One copy of x and then
// 16-value row copies, where cols^T in the usual order (channel-major) needs a transpose of KH * KW
// shifted copies of every channel (pack_cols_t_same / pack_cols_t_strips: 12% of AlexNet conv2's
// weight gradient). The GEMM then writes dW with its columns in the same order, [OC][KH*KW][Cg], and
// the caller puts them back in dw's [OC][Cg][KH][KW] at the end.
struct TapsSource {
  ChannelLast L;         // the channel-last copy
  const int64_t* toff;   // [KK]: tap t's offset from a pixel's window origin, in values
};

template <class T, int NR>
void pack_taps_cl(const Geometry& g, const TapsSource& ts, const T* xt, int64_t p0, int64_t kc, int64_t j0, int64_t nc,
                  T* dst) {
  const Dims& d = g.d;
  const int64_t sh = g.p.stride_h, sw = g.p.stride_w;
  for (int64_t s = 0; s < nc; s += NR, dst += kc * NR) {
    // the strip's columns as runs: [j, j + len) reads channels [c, c + len) of tap t
    int64_t run_j[NR], run_off[NR], run_len[NR];
    int runs = 0;
    const int64_t cnt = std::min<int64_t>(NR, nc - s);
    for (int64_t j = 0; j < cnt;) {
      const int64_t n = j0 + s + j, t = n / d.Cg, c = n % d.Cg, len = std::min(cnt - j, d.Cg - c);
      run_j[runs] = j, run_off[runs] = ts.toff[t] + c, run_len[runs] = len, ++runs;
      j += len;
    }
    const bool whole = runs == 1 && cnt == NR;
    int64_t oh = p0 / d.OW, ow = p0 % d.OW;
    for (int64_t k = 0; k < kc; ++k) {
      const T* px = xt + (oh * sh * ts.L.Wp + ow * sw) * ts.L.cs;
      T* dk = dst + k * NR;
      if (whole) {
        std::memcpy(dk, px + run_off[0], sizeof(T) * NR);
      } else {
        for (int r = 0; r < runs; ++r) std::memcpy(dk + run_j[r], px + run_off[r], sizeof(T) * run_len[r]);
        for (int64_t j = cnt; j < NR; ++j) dk[j] = T(0);
      }
      if (++ow == d.OW) ow = 0, ++oh;
    }
  }
}

// Taken for kernels of 25 taps or more with 16-64 channels per group, whole 16-channel runs:
// interleaved against the usual packers, AlexNet conv2's weight gradient 0.92-0.98 of the time at 1
// and 2 threads, batch 8-32 (a 5 x 5 layer with 48 channels 0.95-0.99, 7 x 7 with 32 0.96-0.97); with 96
// channels 0.99-1.01, 128 1.03-1.05, 3 x 3 layers and AlexNet conv3-conv5 1.00-1.07, and AlexNet
// conv1 (3 channels: runs of 3 values) 1.19-1.35: those keep the usual packers. Every dW value is
// the same sum in the same order either way (only its column moves), so the results are identical.
// CONVKIT_CONV_WGRAD_TAPS=0 / 1 forces it off / on (1 x 1 convolutions are one GEMM either way).
bool wgrad_taps(const Geometry& g) {
  if (g.direct) return false;
  const char* e = std::getenv("CONVKIT_CONV_WGRAD_TAPS");
  if (e && (e[0] == '0' || e[0] == '1')) return e[0] == '1';
  return g.d.KH * g.d.KW >= 25 && g.d.Cg >= 16 && g.d.Cg <= 64 && g.d.Cg % 16 == 0;
}

// dwp[OC, K] = (overwrite ? 0 : dwp) + sum over groups/bands of image n's contribution.
template <class T>
void backward_weight_image(const Geometry& g, const T* xs, const T* gs, T* dwp, int64_t n, bool overwrite, T* cols,
                           int threads, const TapsSource* taps) {
  const Dims& d = g.d;
  for (int64_t grp = 0; grp < d.G; ++grp) {
    const T* xg = xs + (n * d.C + grp * d.Cg) * d.H * d.W;
    const T* gg = gs + (n * d.OC + grp * d.OCg) * g.P;
    T* dwg = dwp + grp * d.OCg * g.K;
    if (g.direct) {  // dW_g[OCg, Cg] += dy_g[OCg, P] @ x_g[Cg, P]^T
      gemm<T>(false, true, d.OCg, g.K, g.P, T(1), gg, g.P, xg, g.P, overwrite ? T(0) : T(1), dwg, g.K, threads);
      continue;
    }
    if (taps) {  // tap-major columns, from the channel-last copy (see pack_taps_cl)
      T* xt = workspace_as<T>(static_cast<std::size_t>(taps->L.elems()), kSlotCols);
      channel_last(d, g.p, taps->L.cs, xg, xt);
      const BPacker<T> pb = [&](int64_t p0, int64_t kc, int64_t j0, int64_t nc, int nr, T* dst) {
        by_panel_width(
            nr, [&](auto w) { pack_taps_cl<T, decltype(w)::value>(g, *taps, xt, p0, kc, j0, nc, dst); },
            [&] { throw std::logic_error("conv2d_backward_weight: no tap-major packer for this panel width"); });
      };
      gemm_packer<T>(false, d.OCg, g.K, g.P, T(1), gg, g.P, pb, overwrite ? T(0) : T(1), dwg, g.K, threads);
      continue;
    }
    if (!cols && same_geometry(g)) {  // fused, "same": pack_cols_t_same
      const BPacker<T> pb = [&](int64_t p0, int64_t kc, int64_t j0, int64_t nc, int nr, T* dst) {
        pack_cols_t_same(g, xg, p0, kc, j0, nc, nr, dst);
      };
      // dy's panels packed once for the product, so that the GEMM may keep its B blocks in L2 where
      // several row blocks read each (gemm.cpp's kBBlockBytes; the same sums either way)
      T* dyp = workspace_as<T>(gemm_packed_a_size<T>(d.OCg, g.P), kSlotPackedW);
      const PackedA<T> ap = gemm_pack_a<T>(false, d.OCg, g.P, gg, g.P, dyp, threads);
      gemm_packer<T>(ap, g.K, T(1), pb, overwrite ? T(0) : T(1), dwg, g.K, threads);
      continue;
    }
    if (!cols) {  // fused im2col: the GEMM packs cols^T blocks straight from x (pack_cols_t_strips)
      const T* xp = phased_source(g, xg, threads);
      const BPacker<T> pb = [&](int64_t p0, int64_t kc, int64_t j0, int64_t nc, int nr, T* dst) {
        pack_cols_t_strips(g, xg, xp, p0, kc, j0, nc, nr, dst);
      };
      gemm_packer<T>(false, d.OCg, g.K, g.P, T(1), gg, g.P, pb, overwrite ? T(0) : T(1), dwg, g.K, threads);
      continue;
    }
    for (int64_t i0 = 0; i0 < d.OH; i0 += g.band_rows) {
      const int64_t i1 = std::min(d.OH, i0 + g.band_rows), np = (i1 - i0) * d.OW;
      im2col(g, xg, i0, i1, cols, threads);
      const T beta = overwrite && i0 == 0 ? T(0) : T(1);
      gemm<T>(false, true, d.OCg, g.K, np, T(1), gg + i0 * d.OW, g.P, cols, cols_ld(np, sizeof(T)), beta, dwg, g.K,
              threads);
    }
  }
}

template <class T>
bool backward_weight_t(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p) {
  Geometry g;
  if (!make_geometry(x, dw, dy, p, sizeof(T), &g)) return false;
  const T* xs = x.ptr<T>();
  const T* gs = dy.ptr<T>();
  T* dws = dw.ptr<T>();
  const int64_t wsize = g.d.OC * g.K;  // elements of dw
  const int nt = threads_for(g.macs);
  // Without room for the partials, every image runs on all threads inside the GEMM instead.
  const bool per_thread = nt > 1 && double(nt - 1) * double(wsize) * sizeof(T) <= double(kMaxPartialBytes);
  const int64_t n_split = per_thread ? split_point(g.d.N, nt) : 0;
  const bool taps = wgrad_taps(g);
  const std::size_t ce = taps || fused_forward(g, false, sizeof(T)) ? 0 : band_cols_elems(g, sizeof(T));  // fused: no cols
  TapsSource ts{};
  if (taps) {
    ts.L = channel_last_layout(g.d, p);
    int64_t* toff = workspace_as<int64_t>(static_cast<std::size_t>(g.d.KH * g.d.KW), kSlotTaps);
    channel_last_taps(g.d, p, ts.L, toff);
    ts.toff = toff;
  }
  const TapsSource* tsp = taps ? &ts : nullptr;

  // partials[t - 1] is thread t's [OC, K] sum; thread 0 sums into dw0: dw itself, or with tap-major
  // columns a buffer of its own (dw gets the columns back in its order at the end)
  const int64_t nbuf = (per_thread ? nt - 1 : 0) + (taps ? 1 : 0);
  T* bufs = nbuf > 0 ? workspace_as<T>(static_cast<std::size_t>(nbuf * wsize), kSlotPartial) : nullptr;
  T* dw0 = taps ? bufs : dws;
  T* partials = taps ? bufs + wsize : bufs;
  int team = 0;  // threads the region really got (OpenMP may give fewer than asked)
  if (n_split > 0) {
    run_threads(nt, [&](int t, int T_) {
      if (t == 0) team = T_;
      const int64_t chunk = (n_split + T_ - 1) / T_, b0 = t * chunk, e0 = std::min(n_split, b0 + chunk);
      if (b0 >= e0) return;
      T* dst = t == 0 ? dw0 : partials + (t - 1) * wsize;
      T* cols = ce ? workspace_as<T>(ce, kSlotCols) : nullptr;
      for (int64_t n = b0; n < e0; ++n) backward_weight_image(g, xs, gs, dst, n, n == b0, cols, 1, tsp);
    });
  }
  // Threads [1, used) wrote a partial; thread 0 wrote dw0 whenever n_split > 0 (its chunk is not empty).
  const int64_t chunk = team > 0 ? (n_split + team - 1) / team : 1;
  const int used = team > 0 ? static_cast<int>(std::min<int64_t>(team, (n_split + chunk - 1) / chunk)) : 0;
  bool dw_written = n_split > 0;
  if (n_split < g.d.N) {
    T* cols = ce ? workspace_as<T>(ce, kSlotCols) : nullptr;
    for (int64_t n = n_split; n < g.d.N; ++n) {
      backward_weight_image(g, xs, gs, dw0, n, !dw_written, cols, nt, tsp);
      dw_written = true;
    }
  }
  if (taps) {  // dw[o][c][t] = the sum over the threads' [o][t][c]
    const int64_t Cg = g.d.Cg, KK = g.d.KH * g.d.KW;
    maybe_parallel(g.d.OC, nt, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o)
        for (int64_t t = 0; t < KK; ++t)
          for (int64_t c = 0; c < Cg; ++c) {
            const int64_t e = o * g.K + t * Cg + c;
            T v = dw0[e];
            for (int u = 1; u < used; ++u) v += partials[(u - 1) * wsize + e];
            dws[(o * Cg + c) * KK + t] = v;
          }
    });
    return true;
  }
  if (used > 1) {
    maybe_parallel(wsize, nt, [&](int64_t e0, int64_t e1) {
      for (int t = 1; t < used; ++t) {
        const T* src = partials + (t - 1) * wsize;
        for (int64_t e = e0; e < e1; ++e) dws[e] += src[e];
      }
    });
  }
  return true;
}

}  // namespace

bool forward_gemm(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p) {
  return CONVKIT_DISPATCH_FLOAT(x.dtype, "conv2d_forward", [&] { return forward_t<scalar_t>(x, w, b, y, p); });
}

bool backward_data_gemm(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p) {
  return CONVKIT_DISPATCH_FLOAT(dy.dtype, "conv2d_backward_data",
                                [&] { return backward_data_t<scalar_t>(dy, w, dx, p); });
}

bool backward_weight_gemm(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p) {
  return CONVKIT_DISPATCH_FLOAT(x.dtype, "conv2d_backward_weight",
                                [&] { return backward_weight_t<scalar_t>(x, dy, dw, p); });
}

}  // namespace conv2d_detail
}  // namespace convkit
