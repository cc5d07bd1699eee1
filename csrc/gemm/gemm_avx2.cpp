// gemm_avx2.cpp: AVX2 + FMA microkernels (this file is compiled with -mavx2 -mfma and only called
// when convkit::cpu_isa() reports avx2 or better). float: 6 x 16 (12 ymm accumulators), double:
// 6 x 8 (12 ymm accumulators); with two FMA pipes of latency 4-5 cycles, 12 independent
// accumulators keep both pipes busy. The kernel body is shared with AVX-512 (gemm_ukernel.h).
#include "gemm/gemm_internal.h"
#include "gemm/gemm_ukernel.h"

namespace {

struct Avx2F {
  using T = float;
  using R = __m256;
  static constexpr int kWidth = 8;
  static R zero() { return _mm256_setzero_ps(); }
  static R set1(T x) { return _mm256_set1_ps(x); }
  static R load(const T* p) { return _mm256_loadu_ps(p); }
  static R bcast(const T* p) { return _mm256_broadcast_ss(p); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static void store(T* p, R x) { _mm256_storeu_ps(p, x); }
  static T fma1(T a, T b, T c) { return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c))); }
};

struct Avx2D {
  using T = double;
  using R = __m256d;
  static constexpr int kWidth = 4;
  static R zero() { return _mm256_setzero_pd(); }
  static R set1(T x) { return _mm256_set1_pd(x); }
  static R load(const T* p) { return _mm256_loadu_pd(p); }
  static R bcast(const T* p) { return _mm256_broadcast_sd(p); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_pd(a, b, c); }
  static R mul(R a, R b) { return _mm256_mul_pd(a, b); }
  static void store(T* p, R x) { _mm256_storeu_pd(p, x); }
};

}  // namespace

namespace convkit {
namespace gemm_detail {

void sgemm_ukernel_avx2_6x16(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                             float beta) {
  ukernel_fma<Avx2F, 6, 2>(kc, a, b, c, ldc, alpha, beta);
}

void sgemm_ukernel_avx2_6x16_init(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                                  const float* init) {
  ukernel_fma<Avx2F, 6, 2>(kc, a, b, c, ldc, alpha, 0.0f, init);
}

void sgemm_ukernel_avx2_rows_x16(int rows, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                 float alpha, float beta) {
  switch (rows) {
    case 1: return ukernel_fma<Avx2F, 1, 2, 6>(kc, a, b, c, ldc, alpha, beta);
    case 2: return ukernel_fma<Avx2F, 2, 2, 6>(kc, a, b, c, ldc, alpha, beta);
    case 3: return ukernel_fma<Avx2F, 3, 2, 6>(kc, a, b, c, ldc, alpha, beta);
    case 4: return ukernel_fma<Avx2F, 4, 2, 6>(kc, a, b, c, ldc, alpha, beta);
    case 5: return ukernel_fma<Avx2F, 5, 2, 6>(kc, a, b, c, ldc, alpha, beta);
    default: return ukernel_fma<Avx2F, 6, 2>(kc, a, b, c, ldc, alpha, beta);
  }
}

void sgemm_ukernel_avx2_rows_x32(int rows, int64_t kc, const float* a, const float* b, int64_t bstride, float* c,
                                 int64_t ldc, float alpha, float beta) {
  switch (rows) {
    case 1: return ukernel_fma_2b<Avx2F, 1, 2, 6>(kc, a, b, bstride, c, ldc, alpha, beta);
    case 2: return ukernel_fma_2b<Avx2F, 2, 2, 6>(kc, a, b, bstride, c, ldc, alpha, beta);
    default: return ukernel_fma_2b<Avx2F, 3, 2, 6>(kc, a, b, bstride, c, ldc, alpha, beta);
  }
}

void sgemm_ukernel_avx2_12x8_pair(int cols, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                  float alpha, float beta, const float* init) {
  if (cols == 9) return upair_fma<Avx2F, 6, 16, true>(kc, a, b, c, ldc, alpha, beta, init);
  upair_fma<Avx2F, 6, 16, false>(kc, a, b, c, ldc, alpha, beta, init);
}

void sgemm_column_avx2_x16(int rows, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                           float alpha, float beta, const float* init) {
  const int64_t ps = 6 * kc;
  const int np = (rows + 5) / 6;
  int p = 0;
  auto at = [&](int q) { return init ? init + q * 6 : nullptr; };
  for (; p + 8 <= np; p += 8)
    ucolumn_fma<Avx2F, 6, 16, 8>(kc, a + p * ps, ps, b, c + p * 6 * ldc, ldc, rows - p * 6, alpha, beta, at(p));
  if (np - p >= 4) {
    ucolumn_fma<Avx2F, 6, 16, 4>(kc, a + p * ps, ps, b, c + p * 6 * ldc, ldc, rows - p * 6, alpha, beta, at(p));
    p += 4;
  }
  if (np - p >= 2) {
    ucolumn_fma<Avx2F, 6, 16, 2>(kc, a + p * ps, ps, b, c + p * 6 * ldc, ldc, rows - p * 6, alpha, beta, at(p));
    p += 2;
  }
  if (np - p >= 1)
    ucolumn_fma<Avx2F, 6, 16, 1>(kc, a + p * ps, ps, b, c + p * 6 * ldc, ldc, rows - p * 6, alpha, beta, at(p));
}

void dgemm_ukernel_avx2_6x8(int64_t kc, const double* a, const double* b, double* c, int64_t ldc, double alpha,
                            double beta) {
  ukernel_fma<Avx2D, 6, 2>(kc, a, b, c, ldc, alpha, beta);
}

void sgemm_ukernel_avx2_12x32(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                              float beta) {
  ukernel_fma<Avx2F, 12, 4>(kc, a, b, c, ldc, alpha, beta);
}

void dgemm_ukernel_avx2_12x16(int64_t kc, const double* a, const double* b, double* c, int64_t ldc, double alpha,
                              double beta) {
  ukernel_fma<Avx2D, 12, 4>(kc, a, b, c, ldc, alpha, beta);
}

void sgemm_ukernel_avx2_12x16_of32(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                                   float beta) {
  ukernel_fma<Avx2F, 12, 2, 12, 32>(kc, a, b, c, ldc, alpha, beta);
}

void dgemm_ukernel_avx2_12x8_of16(int64_t kc, const double* a, const double* b, double* c, int64_t ldc,
                                  double alpha, double beta) {
  ukernel_fma<Avx2D, 12, 2, 12, 16>(kc, a, b, c, ldc, alpha, beta);
}

void sgemm_ukernel_avx2_rows_x32(int rows, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                 float alpha, float beta) {
  ukernel_rows_of12<Avx2F, 4>(rows, kc, a, b, c, ldc, alpha, beta);
}

void dgemm_ukernel_avx2_rows_x16(int rows, int64_t kc, const double* a, const double* b, double* c, int64_t ldc,
                                 double alpha, double beta) {
  ukernel_rows_of12<Avx2D, 4>(rows, kc, a, b, c, ldc, alpha, beta);
}

float sfma_probe_avx2(int64_t iters) { return fma_throughput<Avx2F, 12>(iters); }

namespace {

// R rows at once, each with exactly the arithmetic of a row alone (see sdots_avx2 in gemm_internal.h).
template <int R>
void sdots(const float* __restrict X, int64_t ld, const float* __restrict v, int64_t n, float* res) {
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) {
    const __m256 v0 = _mm256_loadu_ps(v + k), v1 = _mm256_loadu_ps(v + k + 8);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      acc[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(X + r * ld + k), v0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(X + r * ld + k + 8), v1, acc[r][1]);
    }
  }
  const bool eight = k + 8 <= n;
  if (eight) {
    const __m256 v0 = _mm256_loadu_ps(v + k);
    for (int r = 0; r < R; ++r) acc[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(X + r * ld + k), v0, acc[r][0]);
  }
  const int64_t k_tail = eight ? k + 8 : k;
  for (int r = 0; r < R; ++r) {
    alignas(32) float t[8];
    _mm256_store_ps(t, _mm256_add_ps(acc[r][0], acc[r][1]));
    for (int w = 4; w > 0; w /= 2)
      for (int l = 0; l < w; ++l) t[l] += t[l + w];
    float tail = 0.0f;
    for (int64_t kk = k_tail; kk < n; ++kk) tail += X[r * ld + kk] * v[kk];
    res[r] = t[0] + tail;
  }
}

}  // namespace

void sdots_avx2(int rows, const float* X, int64_t ld, const float* v, int64_t n, float* res) {
  if (rows == 4) return sdots<4>(X, ld, v, n, res);
  for (int r = 0; r < rows; ++r) sdots<1>(X + r * ld, ld, v, n, res + r);
}

}  // namespace gemm_detail
}  // namespace convkit
