// gemm_avx512.cpp: AVX-512F microkernels (compiled with -mavx512f ...; called only when
// convkit::cpu_isa() reports avx512). float: 12 x 32 (24 zmm accumulators), double: 12 x 16
// (24 zmm accumulators), leaving 8 of the 32 zmm registers for the two B vectors and the A
// broadcast. The kernel body is the one the AVX2 path runs and the tests exercise
// (gemm_ukernel.h); only these traits differ, each a single AVX-512F intrinsic.
#include "gemm/gemm_internal.h"
#include "gemm/gemm_ukernel.h"

namespace {

struct Avx512F {
  using T = float;
  using R = __m512;
  static constexpr int kWidth = 16;
  static R zero() { return _mm512_setzero_ps(); }
  static R set1(T x) { return _mm512_set1_ps(x); }
  static R load(const T* p) { return _mm512_loadu_ps(p); }
  static R bcast(const T* p) { return _mm512_set1_ps(*p); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static void store(T* p, R x) { _mm512_storeu_ps(p, x); }
};

struct Avx512D {
  using T = double;
  using R = __m512d;
  static constexpr int kWidth = 8;
  static R zero() { return _mm512_setzero_pd(); }
  static R set1(T x) { return _mm512_set1_pd(x); }
  static R load(const T* p) { return _mm512_loadu_pd(p); }
  static R bcast(const T* p) { return _mm512_set1_pd(*p); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_pd(a, b, c); }
  static R mul(R a, R b) { return _mm512_mul_pd(a, b); }
  static void store(T* p, R x) { _mm512_storeu_pd(p, x); }
};

}  // namespace

namespace convkit {
namespace gemm_detail {

void sgemm_ukernel_avx512_12x32(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                                float beta) {
  ukernel_fma<Avx512F, 12, 2>(kc, a, b, c, ldc, alpha, beta);
}

void dgemm_ukernel_avx512_12x16(int64_t kc, const double* a, const double* b, double* c, int64_t ldc,
                                double alpha, double beta) {
  ukernel_fma<Avx512D, 12, 2>(kc, a, b, c, ldc, alpha, beta);
}

void sgemm_ukernel_avx512_12x16_of32(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                                     float beta) {
  ukernel_fma<Avx512F, 12, 1, 12, 32>(kc, a, b, c, ldc, alpha, beta);
}

void dgemm_ukernel_avx512_12x8_of16(int64_t kc, const double* a, const double* b, double* c, int64_t ldc,
                                    double alpha, double beta) {
  ukernel_fma<Avx512D, 12, 1, 12, 16>(kc, a, b, c, ldc, alpha, beta);
}

void sgemm_ukernel_avx512_rows_x32(int rows, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                   float alpha, float beta) {
  ukernel_rows_of12<Avx512F, 2>(rows, kc, a, b, c, ldc, alpha, beta);
}

void dgemm_ukernel_avx512_rows_x16(int rows, int64_t kc, const double* a, const double* b, double* c, int64_t ldc,
                                   double alpha, double beta) {
  ukernel_rows_of12<Avx512D, 2>(rows, kc, a, b, c, ldc, alpha, beta);
}

float sfma_probe_avx512(int64_t iters) { return fma_throughput<Avx512F, 12>(iters); }

}  // namespace gemm_detail
}  // namespace convkit
