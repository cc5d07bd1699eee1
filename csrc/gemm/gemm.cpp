// gemm.cpp: convkit's GEMM (contract in gemm.h): argument checks, run-time kernel choice, the
// cache-blocked packed driver, the portable microkernel, and matrix-vector paths.
//
// Paths, chosen from the shape (never from the thread count, so results do not depend on it):
//   alpha == 0 or K == 0   C = beta * C (C not read when beta == 0)
//   M == 1 or N == 1       matrix-vector: dot products or row sweeps straight from A/B, no packing
//                          (memory-bound: one pass over the matrix, e.g. linear at batch 1)
//   K == 1                 rank-1 update, C[i, j] = alpha * a[i] * b[j] (+ beta * C)
//   otherwise              the packed, blocked driver below with the best microkernel for
//                          convkit::cpu_isa(): AVX-512 12x32 / 12x16, AVX2+FMA 6x16 / 6x8, or the
//                          portable 4x8 / 4x4 written in plain C++ (CONVKIT_ISA=generic forces it);
//                          AVX2 float also has kernels for the edges (gemm_internal.h): short last
//                          panels, last strips of 8-9 or 1-2 columns; AVX-512 a half-width tile for
//                          last strips of up to half its width. CONVKIT_ISA=avx512-emulated runs
//                          AVX-512's shapes and choices in AVX2 code (runtime.h's route_isa)
//
// Blocked driver (the BLIS loop order):
//   for jc over N in NC columns:          B block  [KC x NC] packed into NR-wide micro-panels (L3)
//     for pc over K in KC steps:          beta applies to the first K block only
//       for ic over M in MC rows:         A block  [MC x KC] packed into MR-tall micro-panels (L2)
//         for jr over NC in NR:           one B micro-panel stays in L1 ...
//           for ir over MC in MR:         ... while the A micro-panels stream past it
//             microkernel(MR x NR tile of C)
// KC and MC are balanced (K = 257 runs as 2 blocks of 129, not 256 + 1; short products keep K whole,
// see short_product); they depend only on K
// and M. Threads split N (or M when it is the larger) into ranges aligned to NR (MR), each thread
// running the driver on its part with its own packed buffers; every C element is computed by the
// same sequence of operations whatever the thread count.
//
// Scratch: packed panels live in convkit::workspace slots 6 (A) and 7 (B) of the running thread;
// callers of gemm must not hold buffers of their own in those two slots across a gemm call.
#include "gemm/gemm.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <type_traits>

#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

#include "convkit/parallel.h"
#include "convkit/runtime.h"
#include "convkit/tensor.h"
#include "gemm/gemm_internal.h"

namespace convkit {
namespace {

using gemm_detail::Ukernel;

constexpr int kSlotA = 6;
constexpr int kSlotB = 7;

template <class T>
struct Kernel {
  Ukernel<T> fn;
  int mr, nr;
  int64_t mc, kc, nc;  // cache blocks: mc a multiple of mr, nc a multiple of nr
  gemm_detail::EdgeRows<T> edge_rows = nullptr;  // optional, see gemm_internal.h
  gemm_detail::InitTile<T> init_tile = nullptr;  // optional, see gemm_internal.h
  gemm_detail::HalfPair<T> half_pair = nullptr;  // optional, see gemm_internal.h
  gemm_detail::Column<T> column = nullptr;        // optional, see gemm_internal.h
  gemm_detail::EdgeRows2<T> edge_rows2 = nullptr;  // optional, see gemm_internal.h
  int edge2_rows = 0;                              // edge_rows2 takes 1 .. edge2_rows rows
  gemm_detail::HalfCols<T> half_cols = nullptr;    // optional, see gemm_internal.h
};

// ---- portable microkernel -------------------------------------------------------------------------
// MR x (NV * W) accumulators in 16-byte vectors (W = 16 / sizeof(T) lanes). With GCC or Clang these
// are the compilers' generic vector types, which become SSE2 registers on baseline x86-64 and NEON
// on ARM; elsewhere the same loops run on plain arrays and are left to the auto-vectorizer.
#if defined(__GNUC__)
template <class T>
struct Vec16 {
  typedef T type __attribute__((vector_size(16)));
};
#endif

template <class T, int MR, int NV>
void ukernel_portable(int64_t kc, const T* __restrict a, const T* __restrict b, T* __restrict c, int64_t ldc,
                      T alpha, T beta) {
  constexpr int W = 16 / sizeof(T);
  constexpr int NR = NV * W;
#if defined(__GNUC__)
  using V = typename Vec16<T>::type;
  V acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = V{};
  for (int64_t k = 0; k < kc; ++k, a += MR, b += NR) {
    V bv[NV];
    for (int j = 0; j < NV; ++j) std::memcpy(&bv[j], b + j * W, sizeof(V));
    for (int i = 0; i < MR; ++i) {
      V ai;
      for (int l = 0; l < W; ++l) ai[l] = a[i];  // broadcast
      for (int j = 0; j < NV; ++j) acc[i][j] += ai * bv[j];
    }
  }
  for (int i = 0; i < MR; ++i) {
    T* ci = c + i * ldc;
    for (int j = 0; j < NV; ++j) {
      V r = acc[i][j] * alpha;
      if (beta != T(0)) {
        V old;
        std::memcpy(&old, ci + j * W, sizeof(V));
        r = old * beta + r;
      }
      std::memcpy(ci + j * W, &r, sizeof(V));
    }
  }
#else
  T acc[MR][NR] = {};
  for (int64_t k = 0; k < kc; ++k, a += MR, b += NR)
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
  for (int i = 0; i < MR; ++i) {
    T* ci = c + i * ldc;
    for (int j = 0; j < NR; ++j) ci[j] = beta == T(0) ? alpha * acc[i][j] : beta * ci[j] + alpha * acc[i][j];
  }
#endif
}

template <class T> Kernel<T> pick_kernel();

// AVX-512's tile (12 rows x nr) and blocks with its edge kernels (short last panels, half-width last
// strips): its own kernels on an AVX-512 CPU, their AVX2 instantiations where AVX-512 is only emulated
// (runtime.h's route_isa).
template <class T>
struct Avx512Kernels {
  gemm_detail::Ukernel<T> fn;
  gemm_detail::EdgeRows<T> rows;
  gemm_detail::HalfCols<T> half;
};

template <class T>
Kernel<T> avx512_shape(const Avx512Kernels<T>& own, const Avx512Kernels<T>& in_avx2, int nr, int64_t mc) {
  const Avx512Kernels<T>& ks = cpu_isa() == Isa::Avx512 ? own : in_avx2;
  Kernel<T> k{ks.fn, 12, nr, mc, 192, 3072};
  k.edge_rows = ks.rows;
  k.half_cols = ks.half;
  return k;
}

template <>
Kernel<float> pick_kernel<float>() {
#if defined(__x86_64__) || defined(_M_X64)
  switch (route_isa()) {  // with AVX-512 emulated (runtime.h): its shape and blocks, AVX2 code
    case Isa::Avx512:
      return avx512_shape<float>({gemm_detail::sgemm_ukernel_avx512_12x32, gemm_detail::sgemm_ukernel_avx512_rows_x32,
                                  gemm_detail::sgemm_ukernel_avx512_12x16_of32},
                                 {gemm_detail::sgemm_ukernel_avx2_12x32, gemm_detail::sgemm_ukernel_avx2_rows_x32,
                                  gemm_detail::sgemm_ukernel_avx2_12x16_of32},
                                 32, 144);
    case Isa::Avx2: {
      Kernel<float> k{gemm_detail::sgemm_ukernel_avx2_6x16, 6, 16, 144, 256, 3072};
      k.edge_rows = gemm_detail::sgemm_ukernel_avx2_rows_x16;
      k.init_tile = gemm_detail::sgemm_ukernel_avx2_6x16_init;
      k.half_pair = gemm_detail::sgemm_ukernel_avx2_12x8_pair;
      k.column = gemm_detail::sgemm_column_avx2_x16;
      k.edge_rows2 = gemm_detail::sgemm_ukernel_avx2_rows_x32;
      k.edge2_rows = 3;
      return k;
    }
    case Isa::Generic: break;
  }
#endif
  return {ukernel_portable<float, 4, 2>, 4, 8, 128, 256, 3072};
}

template <>
Kernel<double> pick_kernel<double>() {
#if defined(__x86_64__) || defined(_M_X64)
  switch (route_isa()) {
    case Isa::Avx512:
      return avx512_shape<double>({gemm_detail::dgemm_ukernel_avx512_12x16, gemm_detail::dgemm_ukernel_avx512_rows_x16,
                                   gemm_detail::dgemm_ukernel_avx512_12x8_of16},
                                  {gemm_detail::dgemm_ukernel_avx2_12x16, gemm_detail::dgemm_ukernel_avx2_rows_x16,
                                   gemm_detail::dgemm_ukernel_avx2_12x8_of16},
                                  16, 72);
    case Isa::Avx2: return {gemm_detail::dgemm_ukernel_avx2_6x8, 6, 8, 72, 256, 3072};
    case Isa::Generic: break;
  }
#endif
  return {ukernel_portable<double, 4, 2>, 4, 4, 64, 256, 3072};
}

template <class T>
const Kernel<T>& kernel() {
  static const Kernel<T> k = pick_kernel<T>();
  return k;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Block size for an extent n with at most `block` per block, balanced, rounded up to `unit`.
inline int64_t balanced_block(int64_t n, int64_t block, int64_t unit) {
  int64_t nb = ceil_div(n, block);
  return std::min(block, ceil_div(ceil_div(n, nb), unit) * unit);
}

// Short products (few rows of op(A), short K: AlexNet conv1's 96 x 363 weights against 3025 pixels
// per image) run K unblocked and B in narrow column blocks: each B block is then packed into L2 and
// read back from there, and C is written once instead of once per K block (measured: 96 x 3025 x 363
// went from 42-52 to 55-60 GFLOP/s on one AVX2 core, interleaved; products with more rows of A,
// which reuse each packed B value more, gained nothing and keep the usual blocks).
template <class T>
bool short_product(const Kernel<T>& kn, int64_t M, int64_t K) {
  return M <= 96 && K <= 2 * kn.kc;
}

// Products of panels packed beforehand (convolution weights, gemm_pack_a) whose K runs in several
// blocks take B in column blocks of at most this many bytes per K block, a quarter of a 512 KiB L2:
// the packer's writes and the microkernel's reads of the block then stay in L2, where a block of the
// full NC width went out to L3 and back (AlexNet conv2 forward, 128 rows x 1200 x 729 pixels per
// image and group: 0.965-0.98 of the time at 1 and 2 threads, interleaved; conv4/conv5, whose 169
// pixels now run as two column blocks, 0.98-1.00). So do products of one K block whose B block three
// or more row blocks read in turn (AlexNet conv3's weight gradient per image: dy's 384 rows, three
// blocks, over a B block of 169 pixels x 2304 = 1.5 MB, which went out to L3 and back for each: 0.95-0.96
// of the time at 1 and 2 threads, batch 16-32, interleaved; conv4's two row blocks 0.97-1.01, conv5's
// one 1.00-1.01, so they keep NC). A packed per block (not beforehand) would be packed again for
// every column block, so those products keep NC.
constexpr std::size_t kBBlockBytes = std::size_t(128) << 10;

template <class T>
int64_t k_block(const Kernel<T>& kn, int64_t M, int64_t K) {
  return short_product(kn, M, K) ? K : balanced_block(K, kn.kc, 1);
}

// Strided view of op(X): element (r, c) of the logical matrix.
template <class T>
struct Mat {
  const T* p;
  int64_t ld;
  bool trans;  // stored transposed: (r, c) lives at p[c * ld + r]
  const T* at(int64_t r, int64_t c) const { return trans ? p + c * ld + r : p + r * ld + c; }
};

// ---- packing --------------------------------------------------------------------------------------

// dst[k * NR + j] = src[j][k] for k in [0, kc rounded down to the block), in 4 x 4 (float, and
// 4 x 2 for the last two streams of NR = 6) or 2 x 2 (double) SSE2 register transposes: whole
// 16-byte loads from each stream and 16-byte stores, where the scalar loop moved one value per load
// and store. Returns the first k not done. SSE2 is part of x86-64, so this needs no run-time
// dispatch; elsewhere it does nothing.
template <class T, int NR>
inline int64_t transpose_block(const T* const* src, int64_t kc, T* dst) {
  int64_t k = 0;
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float> && NR % 2 == 0) {
    for (; k + 4 <= kc; k += 4) {
      int j = 0;
      for (; j + 4 <= NR; j += 4) {
        __m128 r0 = _mm_loadu_ps(src[j] + k), r1 = _mm_loadu_ps(src[j + 1] + k);
        __m128 r2 = _mm_loadu_ps(src[j + 2] + k), r3 = _mm_loadu_ps(src[j + 3] + k);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        _mm_storeu_ps(dst + k * NR + j, r0);
        _mm_storeu_ps(dst + (k + 1) * NR + j, r1);
        _mm_storeu_ps(dst + (k + 2) * NR + j, r2);
        _mm_storeu_ps(dst + (k + 3) * NR + j, r3);
      }
      if (j < NR) {  // two streams left (NR = 6: the AVX2 microkernel's A panels)
        const __m128 r0 = _mm_loadu_ps(src[j] + k), r1 = _mm_loadu_ps(src[j + 1] + k);
        const __m128 lo = _mm_unpacklo_ps(r0, r1), hi = _mm_unpackhi_ps(r0, r1);
        _mm_storel_pi(reinterpret_cast<__m64*>(dst + k * NR + j), lo);
        _mm_storeh_pi(reinterpret_cast<__m64*>(dst + (k + 1) * NR + j), lo);
        _mm_storel_pi(reinterpret_cast<__m64*>(dst + (k + 2) * NR + j), hi);
        _mm_storeh_pi(reinterpret_cast<__m64*>(dst + (k + 3) * NR + j), hi);
      }
    }
  } else if constexpr (std::is_same_v<T, double> && NR % 2 == 0) {
    for (; k + 2 <= kc; k += 2)
      for (int j = 0; j < NR; j += 2) {
        const __m128d r0 = _mm_loadu_pd(src[j] + k), r1 = _mm_loadu_pd(src[j + 1] + k);
        _mm_storeu_pd(dst + k * NR + j, _mm_unpacklo_pd(r0, r1));
        _mm_storeu_pd(dst + (k + 1) * NR + j, _mm_unpackhi_pd(r0, r1));
      }
  }
#else
  (void)src, (void)kc, (void)dst;
#endif
  return k;
}

// op(A)[i0 : i0+mc, p0 : p0+kc] -> MR-tall micro-panels: dst[s][k][i], zero rows past mc.
template <class T, int MR>
void pack_a(const Mat<T>& A, int64_t i0, int64_t mc, int64_t p0, int64_t kc, T* dst) {
  for (int64_t s = 0; s < mc; s += MR, dst += kc * MR) {
    const int rows = static_cast<int>(std::min<int64_t>(MR, mc - s));
    if (A.trans) {  // column k of the strip is contiguous: A[(p0 + k) * lda + i0 + s + i]
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = A.at(i0 + s, p0 + k);
        T* d = dst + k * MR;
        for (int i = 0; i < rows; ++i) d[i] = src[i];
        for (int i = rows; i < MR; ++i) d[i] = T(0);
      }
    } else if (rows == MR) {  // row i of the strip is contiguous: MR read streams, one write stream
      const T* src[MR];
      for (int i = 0; i < MR; ++i) src[i] = A.at(i0 + s + i, p0);
      for (int64_t k = transpose_block<T, MR>(src, kc, dst); k < kc; ++k)
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) dst[k * MR + i] = src[i][k];
    } else {
      for (int i = 0; i < rows; ++i) {
        const T* src = A.at(i0 + s + i, p0);
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = src[k];
      }
      for (int i = rows; i < MR; ++i)
        for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = T(0);
    }
  }
}

// op(B)[p0 : p0+kc, j0 : j0+nc] -> NR-wide micro-panels: dst[s][k][j], zero columns past nc.
// Untransposed B is copied a few rows at a time across all the strips: the rows are read in long
// sequential runs (one strip after the other would walk down the columns, a new line and often a
// new page per value row), and each strip still receives a contiguous run of writes.
template <class T, int NR>
void pack_b(const Mat<T>& B, int64_t p0, int64_t kc, int64_t j0, int64_t nc, T* dst) {
  if (!B.trans) {  // row k of the block is contiguous: B[(p0 + k) * ldb + j0 + j]
    constexpr int64_t kRows = 8;
    const int64_t full = nc / NR * NR;
    for (int64_t k0 = 0; k0 < kc; k0 += kRows) {
      const int64_t k1 = std::min(kc, k0 + kRows);
      for (int64_t s = 0; s < full; s += NR) {
        T* d = dst + s * kc;
        for (int64_t k = k0; k < k1; ++k) std::memcpy(d + k * NR, B.at(p0 + k, j0 + s), sizeof(T) * NR);
      }
      if (full < nc) {
        T* d = dst + full * kc;
        for (int64_t k = k0; k < k1; ++k) {
          const T* src = B.at(p0 + k, j0 + full);
          for (int64_t j = 0; j < nc - full; ++j) d[k * NR + j] = src[j];
          for (int64_t j = nc - full; j < NR; ++j) d[k * NR + j] = T(0);
        }
      }
    }
    return;
  }
  for (int64_t s = 0; s < nc; s += NR, dst += kc * NR) {
    const int cols = static_cast<int>(std::min<int64_t>(NR, nc - s));
    if (cols == NR) {  // column j of the strip is contiguous: NR read streams, one write stream
      const T* src[NR];
      for (int j = 0; j < NR; ++j) src[j] = B.at(p0, j0 + s + j);
      for (int64_t k = transpose_block<T, NR>(src, kc, dst); k < kc; ++k)
#pragma GCC unroll 32
        for (int j = 0; j < NR; ++j) dst[k * NR + j] = src[j][k];
    } else {  // column j of the strip is contiguous: B[(j0 + s + j) * ldb + p0 + k]
      for (int j = 0; j < cols; ++j) {
        const T* src = B.at(p0, j0 + s + j);
        for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = src[k];
      }
      for (int j = cols; j < NR; ++j)
        for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = T(0);
    }
  }
}

// Where the blocked driver gets its A micro-panels: packed from a strided matrix into scratch for
// each block (mat), or read in place from panels packed once beforehand (pre, see gemm_pack_a:
// K block after K block, each [M / MR panels][kc][MR], so block (pc, rows r..) starts at
// pre + pc * mpad + r * kc). row0: the first row of this sub-problem (a multiple of MR).
template <class T, int MR>
struct ASource {
  Mat<T> mat;
  const T* pre;
  int64_t mpad, row0;
  const T* panels(int64_t ic, int64_t mc, int64_t pc, int64_t kc, T* scratch) const {
    if (pre) return pre + pc * mpad + (row0 + ic) * kc;
    pack_a<T, MR>(mat, row0 + ic, mc, pc, kc, scratch);
    return scratch;
  }
};

// The kernel for one product: CONVKIT_GEMM_NARROW=0 drops the narrow kernels (to time them
// against the edge tile; read per product, as the tests and benchmarks set it between calls).
template <class T>
Kernel<T> product_kernel(const Kernel<T>& kn) {
  Kernel<T> k = kn;
  const char* e = std::getenv("CONVKIT_GEMM_NARROW");
  if (e && e[0] == '0') k.half_pair = nullptr, k.column = nullptr, k.edge_rows2 = nullptr, k.half_cols = nullptr;
  return k;
}

// ---- the blocked driver (one thread, one sub-problem) ---------------------------------------------

// packb(p0, kc, j0, nc, dst) packs op(B)[p0 : p0+kc, j0 : j0+nc] (columns relative to this
// sub-problem) into NR-wide micro-panels.
template <class T, int MR, int NR, class PackB>
void gemm_blocked(const Kernel<T>& kn, int64_t M, int64_t N, int64_t K, T alpha, const ASource<T, MR>& A,
                  const PackB& packb, T beta, T* C, int64_t ldc, int64_t KCb, int64_t MCb, int64_t NCmax,
                  const T* row_init = nullptr, const RowsDone* rows_done = nullptr) {
  const int64_t NCb = std::min(NCmax, ceil_div(N, NR) * NR);
  T* bp = workspace_as<T>(static_cast<std::size_t>(KCb * NCb), kSlotB);
  T* ap = A.pre ? nullptr : workspace_as<T>(static_cast<std::size_t>(MCb * KCb), kSlotA);
  alignas(64) T tile[MR * NR];

  for (int64_t jc = 0; jc < N; jc += NCb) {
    const int64_t nc = std::min(NCb, N - jc);
    for (int64_t pc = 0; pc < K; pc += KCb) {
      const int64_t kc = std::min(KCb, K - pc);
      const T beta_k = pc == 0 ? beta : T(1);
      packb(pc, kc, jc, nc, bp);
      for (int64_t ic = 0; ic < M; ic += MCb) {
        const int64_t mc = std::min(MCb, M - ic);
        const T* ablock = A.panels(ic, mc, pc, kc, ap);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int64_t nr = std::min<int64_t>(NR, nc - jr);
          const T* bpanel = bp + jr * kc;
          T* cstrip = C + ic * ldc + jc + jr;
          const T* init = row_init && pc == 0 ? row_init + ic : nullptr;
          int64_t ir = 0;
          if (nr < NR && kn.half_pair && (nr == NR / 2 || nr == NR / 2 + 1)) {
            // A last strip of 8 or 9 columns (gemm_internal.h) by pairs of full panels; the rows
            // left (an odd or a short last panel) take the edge tile below. AlexNet conv3-5's 169
            // pixels end in a strip of 9, which cost a full strip of 16.
            for (; ir + 2 * MR <= mc; ir += 2 * MR)
              kn.half_pair(static_cast<int>(nr), kc, ablock + ir * kc, bpanel, cstrip + ir * ldc, ldc, alpha, beta_k,
                           init ? init + ir : nullptr);
          } else if (nr <= 2 && kn.column) {  // 1 or 2 columns (AlexNet conv1: 3025 = 189 x 16 + 1)
            for (int64_t j = 0; j < nr; ++j)
              kn.column(static_cast<int>(mc), kc, ablock, bpanel + j, cstrip + j, ldc, alpha, beta_k, init);
            ir = mc;
          }
          for (; ir < mc; ir += MR) {
            const int64_t mr = std::min<int64_t>(MR, mc - ir);
            const T* apanel = ablock + ir * kc;
            T* c = cstrip + ir * ldc;
            T beta_t = beta_k;
            // a short last panel of a full strip that has a full neighbour in its pair (strips 0-1,
            // 2-3, ...): both strips' rows in one edge_rows2 call, made at the even strip
            const bool pair_edge = mr < MR && nr == NR && kn.edge_rows2 && mr <= kn.edge2_rows &&
                                   ((jr / NR) % 2 == 0 ? jr + 2 * NR <= nc : true);
            if (pair_edge && (jr / NR) % 2 == 1) continue;  // done with the strip before
            // C = row_init + A B: in the microkernel's final store where it has an InitTile (AlexNet
            // conv1 forward 0.95-0.97 of the time, interleaved, against filling the tile first; the
            // other layers' K blocks are longer, 0.99-1.00), else the tile is filled here, in L1 for
            // the kernel, which adds onto it
            if (init && mr == MR && nr == NR && kn.init_tile) {
              kn.init_tile(kc, apanel, bpanel, c, ldc, alpha, init + ir);
              continue;
            }
            if (init && nr == NR) {
              for (int64_t i = 0; i < mr; ++i) {
                const T v = init[ir + i];
                T* ci = c + i * ldc;
                for (int64_t j = 0; j < NR; ++j) ci[j] = v;
              }
              beta_t = T(1);
            }
            if (mr == MR && nr == NR) {
              kn.fn(kc, apanel, bpanel, c, ldc, alpha, beta_t);
            } else if (pair_edge) {  // the last rows of an even strip and the next one (gemm_internal.h)
              if (init)
                for (int64_t i = 0; i < mr; ++i)
                  for (int64_t j = NR; j < 2 * NR; ++j) c[i * ldc + j] = init[ir + i];
              kn.edge_rows2(static_cast<int>(mr), kc, apanel, bpanel, NR * kc, c, ldc, alpha, beta_t);
            } else if (nr == NR && kn.edge_rows) {  // the last rows, full width
              kn.edge_rows(static_cast<int>(mr), kc, apanel, bpanel, c, ldc, alpha, beta_t);
            } else {  // edge tile: full-size kernel (half-width when that covers it) into the private
                      // tile, then merge the valid part
              if (nr <= NR / 2 && kn.half_cols)
                kn.half_cols(kc, apanel, bpanel, tile, NR, alpha, T(0));
              else
                kn.fn(kc, apanel, bpanel, tile, NR, alpha, T(0));
              for (int64_t i = 0; i < mr; ++i) {
                T* ci = c + i * ldc;
                const T* ti = tile + i * NR;
                if (init && nr < NR) {
                  for (int64_t j = 0; j < nr; ++j) ci[j] = init[ir + i] + ti[j];
                } else if (beta_t == T(0)) {
                  // 16-byte copies and a short tail: GCC turned the plain loop (and a memcpy of
                  // nr values) into `rep movsq`, whose start-up cost made the edge tiles 2.6% of
                  // AlexNet conv5's data gradient
                  constexpr int64_t L = 16 / sizeof(T);
                  int64_t j = 0;
                  for (; j + L <= nr; j += L) std::memcpy(ci + j, ti + j, 16);
                  for (; j < nr; ++j) ci[j] = ti[j];
                } else {
                  for (int64_t j = 0; j < nr; ++j) ci[j] = beta_t * ci[j] + ti[j];
                }
              }
            }
          }
        }
        if (rows_done && jc + nc >= N && pc + kc >= K) (*rows_done)(ic, ic + mc);  // rows final
      }
    }
  }
}

// Runs f(0), ..., f(nt - 1) (nt >= 2 parts) on up to nt threads. OpenMP may grant fewer (inside
// another parallel region it grants one), so each thread takes every T-th part. An exception on
// any thread is rethrown here (never out of the OpenMP region, which would terminate the process).
template <class F>
void run_threads(int nt, F&& f) {
  std::exception_ptr err;
#pragma omp parallel num_threads(nt)
  {
#ifdef _OPENMP
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
#else
    const int t = 0, T = 1;
#endif
    try {
      for (int part = t; part < nt; part += T) f(part);
    } catch (...) {
#pragma omp critical(convkit_gemm_error)
      if (!err) err = std::current_exception();
    }
  }
  if (err) std::rethrow_exception(err);
}

// How many threads `work` multiply-adds deserve (at least about 256k each), at most max_parts.
inline int threads_for(int threads, double work, int64_t max_parts) {
  int nt = threads > 0 ? threads : num_threads();
  const double per_thread = 262144.0;
  if (work < per_thread * nt) nt = static_cast<int>(std::max(1.0, work / per_thread));
  if (nt > max_parts) nt = static_cast<int>(std::max<int64_t>(1, max_parts));
  return nt;
}

// B given by a packer (see gemm_blocked): packb(p0, kc, j0, nc, dst) with absolute columns j0.
template <class T, int MR, int NR, class PackB>
void gemm_packed(const Kernel<T>& kernel, int64_t M, int64_t N, int64_t K, T alpha, const ASource<T, MR>& A,
                 const PackB& packb, T beta, T* C, int64_t ldc, int threads, const T* row_init = nullptr,
                 const RowsDone* rows_done = nullptr) {
  const Kernel<T> kn = product_kernel(kernel);
  const int64_t KCb = k_block(kn, M, K);
  const int64_t MCb = balanced_block(M, kn.mc, MR);
  int64_t NCmax = short_product(kn, M, K) && N >= 16 * NR ? 4 * NR : kn.nc;
  if (A.pre && (K > KCb || ceil_div(M, MCb) >= 3)) {  // see kBBlockBytes
    const int64_t cap = std::max<int64_t>(4 * NR, int64_t(kBBlockBytes / sizeof(T)) / KCb / NR * NR);
    if (N > cap) NCmax = std::min(NCmax, balanced_block(N, cap, NR));
  }
  const bool split_n = ceil_div(N, NR) >= ceil_div(M, MR);
  const int64_t units = split_n ? ceil_div(N, NR) : ceil_div(M, MR);
  const int nt = threads_for(threads, double(M) * double(N) * double(K), units);
  if (nt <= 1) {
    gemm_blocked<T, MR, NR>(kn, M, N, K, alpha, A, packb, beta, C, ldc, KCb, MCb, NCmax, row_init, rows_done);
    return;
  }
  const int64_t per = ceil_div(units, nt);
  run_threads(nt, [&](int t) {
    const int64_t u0 = std::min(units, t * per), u1 = std::min(units, u0 + per);
    if (u0 >= u1) return;
    if (split_n) {
      const int64_t j0 = u0 * NR, j1 = std::min(N, u1 * NR);
      auto pb = [&](int64_t p0, int64_t kc, int64_t jj, int64_t nc, T* dst) { packb(p0, kc, j0 + jj, nc, dst); };
      gemm_blocked<T, MR, NR>(kn, M, j1 - j0, K, alpha, A, pb, beta, C + j0, ldc, KCb, MCb, NCmax, row_init);
    } else {
      const int64_t i0 = u0 * MR, i1 = std::min(M, u1 * MR);
      ASource<T, MR> At = A;
      At.row0 = A.row0 + i0;
      gemm_blocked<T, MR, NR>(kn, i1 - i0, N, K, alpha, At, packb, beta, C + i0 * ldc, ldc, KCb, MCb, NCmax,
                              row_init ? row_init + i0 : nullptr);
    }
  });
  if (rows_done) (*rows_done)(0, M);
}

template <class T, int MR, int NR>
void gemm_packed(const Kernel<T>& kn, int64_t M, int64_t N, int64_t K, T alpha, const ASource<T, MR>& A,
                 const Mat<T>& B, T beta, T* C, int64_t ldc, int threads, const RowsDone* rows_done = nullptr) {
  auto pb = [&](int64_t p0, int64_t kc, int64_t j0, int64_t nc, T* dst) { pack_b<T, NR>(B, p0, kc, j0, nc, dst); };
  gemm_packed<T, MR, NR>(kn, M, N, K, alpha, A, pb, beta, C, ldc, threads, nullptr, rows_done);
}

// Calls f(integral_constant<int, MR>, integral_constant<int, NR>) for the microkernel's register-block
// shape: the one list of the shapes the drivers are instantiated for.
template <class T, class F>
void with_block_shape(const Kernel<T>& kn, F&& f) {
  using std::integral_constant;
  if (kn.mr == 12 && kn.nr == 32) f(integral_constant<int, 12>{}, integral_constant<int, 32>{});
  else if (kn.mr == 12 && kn.nr == 16) f(integral_constant<int, 12>{}, integral_constant<int, 16>{});
  else if (kn.mr == 6 && kn.nr == 16) f(integral_constant<int, 6>{}, integral_constant<int, 16>{});
  else if (kn.mr == 6 && kn.nr == 8) f(integral_constant<int, 6>{}, integral_constant<int, 8>{});
  else if (kn.mr == 4 && kn.nr == 8) f(integral_constant<int, 4>{}, integral_constant<int, 8>{});
  else if (kn.mr == 4 && kn.nr == 4) f(integral_constant<int, 4>{}, integral_constant<int, 4>{});
  else throw std::logic_error("gemm: no driver for this microkernel shape");
}

// ---- matrix-vector and rank-1 paths ---------------------------------------------------------------

// Contiguous copy of a strided vector into scratch (or the vector itself when already contiguous).
template <class T>
const T* contiguous(const T* p, int64_t n, int64_t stride, int slot) {
  if (stride == 1) return p;
  T* d = workspace_as<T>(static_cast<std::size_t>(n), slot);
  for (int64_t i = 0; i < n; ++i) d[i] = p[i * stride];
  return d;
}

// R dot products at once, sum_k X[r, k] * v[k] for rows r < R (ld apart), each with 8 partial sums
// added up in a fixed order: the same arithmetic for a row whatever R is. Several rows in flight
// keep more independent memory streams going (the matrix-vector product is memory-bound: batch-1
// fully connected layers read the whole weight matrix once).
template <class T, int R>
void dots(const T* __restrict X, int64_t ld, const T* __restrict v, int64_t n, T* res) {
  constexpr int L = 8;
  T acc[R][L] = {};
  int64_t k = 0;
  for (; k + L <= n; k += L) {
    if (k % 16 == 0)  // one line per row, 1 KiB ahead: more misses in flight than the prefetcher keeps
      for (int r = 0; r < R; ++r) __builtin_prefetch(X + r * ld + k + 256);
    for (int r = 0; r < R; ++r)
      for (int l = 0; l < L; ++l) acc[r][l] += X[r * ld + k + l] * v[k + l];
  }
  for (int r = 0; r < R; ++r) {
    T tail = T(0);
    for (int64_t kk = k; kk < n; ++kk) tail += X[r * ld + kk] * v[kk];
    for (int w = L / 2; w > 0; w /= 2)
      for (int l = 0; l < w; ++l) acc[r][l] += acc[r][l + w];
    res[r] = acc[r][0] + tail;
  }
}

// The AVX2 dot products (gemm_detail::sdots_avx2) for float where the CPU has them. In an
// interleaved microbenchmark over 4096 x 4096 and 4096 x 9216 matrices they took 0.69-0.82 of the
// time of dots (16-byte vectors, a software prefetch 1 KiB ahead); convkit bench, AlexNet fc6 / fc7
// forward at batch 1 against PyTorch: 1.10 / 1.10 -> 0.92 / 0.85 on 1 thread, 0.77 / 0.73 -> 0.67 /
// 0.64 on 2.
template <class T>
bool simd_dots() {
#if defined(__x86_64__) || defined(_M_X64)
  return std::is_same_v<T, float> && cpu_isa() >= Isa::Avx2;
#else
  return false;
#endif
}

template <class T>
void dots_simd(int rows, const T* X, int64_t ld, const T* v, int64_t n, T* res) {
#if defined(__x86_64__) || defined(_M_X64)
  if constexpr (std::is_same_v<T, float>) return gemm_detail::sdots_avx2(rows, X, ld, v, n, res);
#endif
  (void)rows, (void)X, (void)ld, (void)v, (void)n, (void)res;
  throw std::logic_error("gemm: no SIMD dot products for this type");
}

// out[r * os] = alpha * dot(X[r, :K], v) + beta * out[r * os] for r in [0, R); rows of X are ld apart.
template <class T>
void gemv_rows(int64_t R, int64_t K, T alpha, const T* X, int64_t ld, const T* v, T beta, T* out, int64_t os,
               int threads) {
  const bool simd = simd_dots<T>();
  auto body = [&](int64_t r0, int64_t r1) {
    T d[4];
    for (int64_t r = r0; r < r1;) {
      const int n = r + 4 <= r1 ? 4 : 1;
      if (simd) dots_simd(n, X + r * ld, ld, v, K, d);
      else if (n == 4) dots<T, 4>(X + r * ld, ld, v, K, d);
      else dots<T, 1>(X + r * ld, ld, v, K, d);
      for (int i = 0; i < n; ++i, ++r) {
        const T s = alpha * d[i];
        out[r * os] = beta == T(0) ? s : beta * out[r * os] + s;
      }
    }
  };
  const int nt = threads_for(threads, double(R) * double(K), R);
  if (nt <= 1) return body(0, R);
  const int64_t per = ceil_div(R, nt);
  run_threads(nt, [&](int t) { body(std::min(R, t * per), std::min(R, (t + 1) * per)); });
}

// out[j * os] = alpha * sum_k v[k] * X[k, j] + beta * out[j * os] for j in [0, N); rows of X are ld
// apart. Sweeps X row by row (4 rows at a time) into a column block of partial sums, so the matrix
// is read once, sequentially. Per column the order of the additions depends only on K.
template <class T>
void gemv_cols(int64_t K, int64_t N, T alpha, const T* X, int64_t ld, const T* v, T beta, T* out, int64_t os,
               int threads) {
  constexpr int64_t JB = 16384 / sizeof(T);  // 16 KiB of partial sums per block (L1)
  auto body = [&](int64_t j0, int64_t j1) {
    alignas(64) T acc[JB];
    for (int64_t jb = j0; jb < j1; jb += JB) {
      const int64_t n = std::min(JB, j1 - jb);
      for (int64_t j = 0; j < n; ++j) acc[j] = T(0);
      int64_t k = 0;
      for (; k + 4 <= K; k += 4) {
        const T v0 = v[k], v1 = v[k + 1], v2 = v[k + 2], v3 = v[k + 3];
        const T* __restrict x0 = X + k * ld + jb;
        const T* __restrict x1 = x0 + ld;
        const T* __restrict x2 = x1 + ld;
        const T* __restrict x3 = x2 + ld;
        for (int64_t j = 0; j < n; ++j) acc[j] += ((v0 * x0[j] + v1 * x1[j]) + v2 * x2[j]) + v3 * x3[j];
      }
      for (; k < K; ++k) {
        const T vk = v[k];
        const T* __restrict x0 = X + k * ld + jb;
        for (int64_t j = 0; j < n; ++j) acc[j] += vk * x0[j];
      }
      T* o = out + jb * os;
      if (beta == T(0)) {
        for (int64_t j = 0; j < n; ++j) o[j * os] = alpha * acc[j];
      } else {
        for (int64_t j = 0; j < n; ++j) o[j * os] = beta * o[j * os] + alpha * acc[j];
      }
    }
  };
  const int64_t units = ceil_div(N, 64);  // thread ranges in whole cache lines of columns
  const int nt = threads_for(threads, double(K) * double(N), units);
  if (nt <= 1) return body(0, N);
  const int64_t per = ceil_div(units, nt) * 64;
  run_threads(nt, [&](int t) { body(std::min(N, t * per), std::min(N, (t + 1) * per)); });
}

// C[i, j] = alpha * a[i] * b[j] (+ beta * C[i, j]); a and b contiguous.
template <class T>
void rank1(int64_t M, int64_t N, T alpha, const T* a, const T* b, T beta, T* C, int64_t ldc, int threads) {
  auto body = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const T s = alpha * a[i];
      T* __restrict ci = C + i * ldc;
      if (beta == T(0)) {
        for (int64_t j = 0; j < N; ++j) ci[j] = s * b[j];
      } else {
        for (int64_t j = 0; j < N; ++j) ci[j] = beta * ci[j] + s * b[j];
      }
    }
  };
  const int nt = threads_for(threads, double(M) * double(N), M);
  if (nt <= 1) return body(0, M);
  const int64_t per = ceil_div(M, nt);
  run_threads(nt, [&](int t) { body(std::min(M, t * per), std::min(M, (t + 1) * per)); });
}

template <class T>
void scale_c(int64_t M, int64_t N, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    T* ci = C + i * ldc;
    if (beta == T(0)) {
      for (int64_t j = 0; j < N; ++j) ci[j] = T(0);
    } else if (beta != T(1)) {
      for (int64_t j = 0; j < N; ++j) ci[j] *= beta;
    }
  }
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc, int threads) {
  const char* op = "gemm";
  CONVKIT_CHECK(M >= 0 && N >= 0 && K >= 0, op, ": M, N, K must be >= 0, got ", M, ", ", N, ", ", K);
  CONVKIT_CHECK(threads >= 0, op, ": threads must be >= 0, got ", threads);
  const int64_t a_cols = trans_a ? M : K, b_cols = trans_b ? K : N;
  CONVKIT_CHECK(lda >= std::max<int64_t>(1, a_cols), op, ": lda must be >= max(1, ", trans_a ? "M" : "K",
                ") = ", std::max<int64_t>(1, a_cols), ", got ", lda);
  CONVKIT_CHECK(ldb >= std::max<int64_t>(1, b_cols), op, ": ldb must be >= max(1, ", trans_b ? "K" : "N",
                ") = ", std::max<int64_t>(1, b_cols), ", got ", ldb);
  CONVKIT_CHECK(ldc >= std::max<int64_t>(1, N), op, ": ldc must be >= max(1, N) = ", std::max<int64_t>(1, N),
                ", got ", ldc);
  if (M == 0 || N == 0) return;
  CONVKIT_CHECK(C != nullptr, op, ": C is null");
  if (K == 0 || alpha == T(0)) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  CONVKIT_CHECK(A != nullptr && B != nullptr, op, ": A and B must not be null");

  const Mat<T> Am{A, lda, trans_a}, Bm{B, ldb, trans_b};
  if (M == 1) {
    // C[0, :] = alpha * a @ op(B) + beta * C, with a = op(A)[0, :] (stride lda when trans_a)
    const T* a = contiguous(A, K, trans_a ? lda : 1, kSlotA);
    if (trans_b) gemv_rows(N, K, alpha, B, ldb, a, beta, C, 1, threads);  // B is [N, K]
    else gemv_cols(K, N, alpha, B, ldb, a, beta, C, 1, threads);          // B is [K, N]
    return;
  }
  if (N == 1) {
    // C[:, 0] = alpha * op(A) @ b + beta * C, with b = op(B)[:, 0] (stride ldb unless trans_b)
    const T* b = contiguous(B, K, trans_b ? 1 : ldb, kSlotB);
    if (!trans_a) gemv_rows(M, K, alpha, A, lda, b, beta, C, ldc, threads);  // A is [M, K]
    else gemv_cols(K, M, alpha, A, lda, b, beta, C, ldc, threads);           // A is [K, M]
    return;
  }
  if (K == 1) {
    const T* a = contiguous(A, M, trans_a ? 1 : lda, kSlotA);
    const T* b = contiguous(B, N, trans_b ? ldb : 1, kSlotB);
    rank1(M, N, alpha, a, b, beta, C, ldc, threads);
    return;
  }

  const Kernel<T>& kn = kernel<T>();
  with_block_shape(kn, [&](auto mr, auto nr) {
    constexpr int MR = decltype(mr)::value;
    gemm_packed<T, MR, decltype(nr)::value>(kn, M, N, K, alpha, ASource<T, MR>{Am, nullptr, 0, 0}, Bm, beta, C, ldc,
                                            threads);
  });
}

template <class T>
void gemm_packer(bool trans_a, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                 const BPacker<T>& packb, T beta, T* C, int64_t ldc, int threads) {
  const char* op = "gemm_packer";
  CONVKIT_CHECK(M >= 1 && N >= 1 && K >= 1, op, ": M, N, K must be >= 1, got ", M, ", ", N, ", ", K);
  CONVKIT_CHECK(threads >= 0, op, ": threads must be >= 0, got ", threads);
  CONVKIT_CHECK(lda >= (trans_a ? M : K) && ldc >= N, op, ": bad leading dimension");
  CONVKIT_CHECK(A != nullptr && C != nullptr && packb, op, ": null argument");
  const Mat<T> Am{A, lda, trans_a};
  const Kernel<T>& kn = kernel<T>();
  auto pb = [&](int64_t p0, int64_t kc, int64_t j0, int64_t nc, T* dst) { packb(p0, kc, j0, nc, kn.nr, dst); };
  with_block_shape(kn, [&](auto mr, auto nr) {
    constexpr int MR = decltype(mr)::value;
    gemm_packed<T, MR, decltype(nr)::value>(kn, M, N, K, alpha, ASource<T, MR>{Am, nullptr, 0, 0}, pb, beta, C, ldc,
                                            threads);
  });
}

template <class T>
std::size_t gemm_packed_a_size(int64_t M, int64_t K) {
  CONVKIT_CHECK(M >= 1 && K >= 1, "gemm_packed_a_size: M and K must be >= 1, got ", M, ", ", K);
  const int64_t mr = kernel<T>().mr;
  return static_cast<std::size_t>(checked_mul(ceil_div(M, mr) * mr, K, "gemm_packed_a_size"));
}

template <class T>
PackedALayout gemm_packed_a_layout(int64_t M, int64_t K) {
  CONVKIT_CHECK(M >= 1 && K >= 1, "gemm_packed_a_layout: M and K must be >= 1, got ", M, ", ", K);
  const Kernel<T>& kn = kernel<T>();
  return PackedALayout{M, K, kn.mr, k_block(kn, M, K), ceil_div(M, kn.mr) * kn.mr};
}

template <class T>
PackedA<T> gemm_pack_a(bool trans_a, int64_t M, int64_t K, const T* A, int64_t lda, T* dst, int threads) {
  const char* op = "gemm_pack_a";
  CONVKIT_CHECK(M >= 1 && K >= 1, op, ": M and K must be >= 1, got ", M, ", ", K);
  CONVKIT_CHECK(lda >= (trans_a ? M : K), op, ": bad leading dimension");
  CONVKIT_CHECK(A != nullptr && dst != nullptr, op, ": null argument");
  const Kernel<T>& kn = kernel<T>();
  const Mat<T> Am{A, lda, trans_a};
  const int64_t KCb = k_block(kn, M, K), mpad = ceil_div(M, kn.mr) * kn.mr, panels = mpad / kn.mr;
  with_block_shape(kn, [&](auto mr, auto) {
    constexpr int MR = decltype(mr)::value;
    // panels [s0, s1) of every K block; the layout is ASource's
    auto body = [&](int64_t s0, int64_t s1) {
      for (int64_t pc = 0; pc < K; pc += KCb) {
        const int64_t kc = std::min(KCb, K - pc);
        pack_a<T, MR>(Am, s0 * MR, std::min(M, s1 * MR) - s0 * MR, pc, kc, dst + pc * mpad + s0 * MR * kc);
      }
    };
    const int nt = threads_for(threads, double(mpad) * double(K) * 16.0, panels);
    if (nt <= 1) return body(0, panels);
    const int64_t per = ceil_div(panels, nt);
    run_threads(nt, [&](int t) { body(std::min(panels, t * per), std::min(panels, (t + 1) * per)); });
  });
  return PackedA<T>{dst, M, K, kn.mr};
}

// The checks of the PackedA entry points; returns the rows of the packed panels (M rounded up to MR).
template <class T>
int64_t check_packed(const PackedA<T>& A, int64_t N, int threads, const char* op) {
  const Kernel<T>& kn = kernel<T>();
  CONVKIT_CHECK(A.data != nullptr && A.mr == kn.mr, op, ": A was not packed by gemm_pack_a for this kernel");
  CONVKIT_CHECK(A.M >= 1 && N >= 1 && A.K >= 1, op, ": M, N, K must be >= 1, got ", A.M, ", ", N, ", ", A.K);
  CONVKIT_CHECK(threads >= 0, op, ": threads must be >= 0, got ", threads);
  return ceil_div(A.M, kn.mr) * kn.mr;
}

template <class T>
void gemm_packer(const PackedA<T>& A, int64_t N, T alpha, const BPacker<T>& packb, T beta, T* C, int64_t ldc,
                 int threads, const T* row_init) {
  const char* op = "gemm_packer";
  const Kernel<T>& kn = kernel<T>();
  const int64_t mpad = check_packed(A, N, threads, op);
  CONVKIT_CHECK(ldc >= N, op, ": bad leading dimension");
  CONVKIT_CHECK(C != nullptr && packb, op, ": null argument");
  CONVKIT_CHECK(!row_init || beta == T(0), op, ": row_init needs beta = 0");
  auto pb = [&](int64_t p0, int64_t kc, int64_t j0, int64_t nc, T* dst) { packb(p0, kc, j0, nc, kn.nr, dst); };
  with_block_shape(kn, [&](auto mr, auto nr) {
    constexpr int MR = decltype(mr)::value;
    gemm_packed<T, MR, decltype(nr)::value>(kn, A.M, N, A.K, alpha, ASource<T, MR>{Mat<T>{}, A.data, mpad, 0}, pb,
                                            beta, C, ldc, threads, row_init);
  });
}

template <class T>
void gemm(const PackedA<T>& A, bool trans_b, int64_t N, T alpha, const T* B, int64_t ldb, T beta, T* C, int64_t ldc,
          int threads, const RowsDone* rows_done) {
  const char* op = "gemm";
  const Kernel<T>& kn = kernel<T>();
  const int64_t mpad = check_packed(A, N, threads, op);
  CONVKIT_CHECK(ldb >= (trans_b ? A.K : N) && ldc >= N, op, ": bad leading dimension");
  CONVKIT_CHECK(B != nullptr && C != nullptr, op, ": null argument");
  const Mat<T> Bm{B, ldb, trans_b};
  with_block_shape(kn, [&](auto mr, auto nr) {
    constexpr int MR = decltype(mr)::value;
    gemm_packed<T, MR, decltype(nr)::value>(kn, A.M, N, A.K, alpha, ASource<T, MR>{Mat<T>{}, A.data, mpad, 0}, Bm,
                                            beta, C, ldc, threads, rows_done);
  });
}

#define CONVKIT_GEMM_PACKED_A(T)                                                                                  \
  template std::size_t gemm_packed_a_size<T>(int64_t, int64_t);                                                  \
  template PackedALayout gemm_packed_a_layout<T>(int64_t, int64_t);                                              \
  template PackedA<T> gemm_pack_a<T>(bool, int64_t, int64_t, const T*, int64_t, T*, int);                        \
  template void gemm_packer<T>(const PackedA<T>&, int64_t, T, const BPacker<T>&, T, T*, int64_t, int, const T*); \
  template void gemm<T>(const PackedA<T>&, bool, int64_t, T, const T*, int64_t, T, T*, int64_t, int,             \
                        const RowsDone*);
CONVKIT_GEMM_PACKED_A(float)
CONVKIT_GEMM_PACKED_A(double)
#undef CONVKIT_GEMM_PACKED_A

template void gemm_packer<float>(bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                                 const BPacker<float>&, float, float*, int64_t, int);
template void gemm_packer<double>(bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                                  const BPacker<double>&, double, double*, int64_t, int);

namespace {

// Portable probe: 12 chains of 16-byte vectors (SSE2 on baseline x86-64).
float sfma_probe_portable(int64_t iters, int* lanes) {
  constexpr int W = 4;
  *lanes = W;
#if defined(__GNUC__)
  using V = Vec16<float>::type;
  V acc[12];
  const float seed = 1.0f / float(iters + 3);
  for (int i = 0; i < 12; ++i) acc[i] = V{} + seed * float(i + 1);
  const V m = V{} + 0.999999f, a = V{} + 1e-7f;
  for (int64_t k = 0; k < iters; ++k)
    for (int i = 0; i < 12; ++i) acc[i] = acc[i] * m + a;
  V s = acc[0];
  for (int i = 1; i < 12; ++i) s += acc[i];
  return s[0] + s[1] + s[2] + s[3];
#else
  float acc[12][W];
  for (int i = 0; i < 12; ++i)
    for (int l = 0; l < W; ++l) acc[i][l] = 1.0f / float(iters + 3 + i);
  for (int64_t k = 0; k < iters; ++k)
    for (int i = 0; i < 12; ++i)
      for (int l = 0; l < W; ++l) acc[i][l] = acc[i][l] * 0.999999f + 1e-7f;
  float s = 0.0f;
  for (int i = 0; i < 12; ++i)
    for (int l = 0; l < W; ++l) s += acc[i][l];
  return s;
#endif
}

float sfma_probe(int64_t iters, int* lanes) {
#if defined(__x86_64__) || defined(_M_X64)
  switch (cpu_isa()) {
    case Isa::Avx512: *lanes = 16; return gemm_detail::sfma_probe_avx512(iters);
    case Isa::Avx2: *lanes = 8; return gemm_detail::sfma_probe_avx2(iters);
    case Isa::Generic: break;
  }
#endif
  return sfma_probe_portable(iters, lanes);
}

volatile float g_probe_sink = 0.0f;

}  // namespace

double fma_peak_gflops(int threads, int64_t iters) {
  CONVKIT_CHECK(threads >= 0, "fma_peak_gflops: threads must be >= 0, got ", threads);
  CONVKIT_CHECK(iters >= 1, "fma_peak_gflops: iters must be >= 1, got ", iters);
  const int nt = threads > 0 ? threads : num_threads();
  int lanes = 1, team = 1;
  const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(nt)
  {
    int l = 1;
    const float r = sfma_probe(iters, &l);
#ifdef _OPENMP
#pragma omp master
    {
      team = omp_get_num_threads();
      lanes = l;
    }
#else
    lanes = l;
#endif
    g_probe_sink = r;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return double(team) * double(iters) * 12.0 * lanes * 2.0 / s / 1e9;
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                          int64_t, float, float*, int64_t, int);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                           int64_t, double, double*, int64_t, int);

}  // namespace convkit
