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

void dgemm_ukernel_avx2_6x8(int64_t kc, const double* a, const double* b, double* c, int64_t ldc, double alpha,
                            double beta) {
  ukernel_fma<Avx2D, 6, 2>(kc, a, b, c, ldc, alpha, beta);
}

float sfma_probe_avx2(int64_t iters) { return fma_throughput<Avx2F, 12>(iters); }

}  // namespace gemm_detail
}  // namespace convkit
