// gemm_internal.h: what the GEMM driver (gemm.cpp) and the ISA-specific microkernels
// (gemm_avx2.cpp, gemm_avx512.cpp) share. Not part of the public interface (that is gemm.h).
//
// Microkernel contract (every ISA, float and double):
//   a: packed A micro-panel, kc steps of MR values: a[k * MR + i] = op(A)[i, k]
//   b: packed B micro-panel, kc steps of NR values: b[k * NR + j] = op(B)[k, j]
//   c: a full MR x NR tile of C, rows ldc apart
//   c = alpha * sum_k a[k, :]^T b[k, :] + beta * c;   beta == 0: c is written, never read.
// Edge tiles (fewer than MR rows or NR columns) never reach a microkernel: the driver runs the
// kernel into a private MR x NR tile with beta = 0 and merges the valid part. The exceptions are the
// optional edge kernels below, which write C directly: an edge-row kernel (EdgeRows) computes only
// the first `rows` (1 .. MR - 1) rows of a full-width tile from a panel packed MR tall, so the last
// rows of a matrix cost about rows / MR of a full tile instead of a whole one (AlexNet's 128
// channels per group end in a tile of 2 rows of 6); EdgeRows2, HalfPair and Column do the same for
// short panels over two strips and for narrow last strips.
//
// The ISA files hold only microkernels, and only functions with external names declared here:
// anything inline they share with baseline code could be merged by the linker into the
// AVX-encoded copy and then run on a CPU without AVX.
#pragma once

#include <cstdint>

namespace convkit {
namespace gemm_detail {

template <class T>
using Ukernel = void (*)(int64_t kc, const T* a, const T* b, T* c, int64_t ldc, T alpha, T beta);
template <class T>
using EdgeRows = void (*)(int rows, int64_t kc, const T* a, const T* b, T* c, int64_t ldc, T alpha, T beta);
// Optional too: a full tile written as C[i, :] = init[i] + alpha * (A B)[i, :], the same operations as
// the microkernel with beta = 1 on a tile filled with init[i] first, without that fill (the GEMM's
// row_init: a convolution's bias as each output tile's starting value). C is not read.
template <class T>
using InitTile = void (*)(int64_t kc, const T* a, const T* b, T* c, int64_t ldc, T alpha, const T* init);

// Optional too: EdgeRows over two adjacent full-width B panels (b and b + bstride) at once, C
// columns 0 .. 2 NR - 1, for 1 .. the kernel's edge2_rows rows (gemm.cpp's Kernel).
template <class T>
using EdgeRows2 = void (*)(int rows, int64_t kc, const T* a, const T* b, int64_t bstride, T* c, int64_t ldc,
                           T alpha, T beta);
// Optional, for a last column strip of NR / 2 or NR / 2 + 1 columns (AlexNet's 13 x 13 = 10 x 16 + 9
// and 27 x 27 = 45 x 16 + 9 pixels) or of 1-2, which the full kernel would compute NR wide:
//   HalfPair: C[0 : 2 MR, 0 : cols] (cols = NR / 2 or NR / 2 + 1) from two consecutive full A panels
//             (a and a + MR * kc) and the first cols columns of the B panel, straight into C
//             (init as in InitTile when given, else beta);
//   Column:   C[0 : rows, 0] from column 0 of the B panel at b (b[k * NR]) and the A panels from a,
//             vectorized along the rows.
// Both give every C value the same operations as the full kernel, so the result does not depend
// on which kernel computed it.
template <class T>
using HalfPair = void (*)(int cols, int64_t kc, const T* a, const T* b, T* c, int64_t ldc, T alpha, T beta,
                          const T* init);
template <class T>
using Column = void (*)(int rows, int64_t kc, const T* a, const T* b, T* c, int64_t ldc, T alpha, T beta,
                        const T* init);

// Optional too: the first NR / 2 columns of a full-height tile, from a B panel packed NR wide, written
// to c like Ukernel (the driver gives it its private tile): a last strip of at most NR / 2 columns
// that no narrow kernel above takes costs about half a tile instead of a whole one (AVX-512's
// 32-column tiles: AlexNet conv3-conv5's 169 pixels end in a strip of 9). The same operations per
// C value as the full kernel.
template <class T>
using HalfCols = Ukernel<T>;

// x86-64 only (the CMake build compiles gemm_avx2.cpp / gemm_avx512.cpp there and nowhere else).
void sgemm_ukernel_avx2_6x16(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                             float beta);
void sgemm_ukernel_avx2_rows_x16(int rows, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                 float alpha, float beta);  // EdgeRows of the 6 x 16 kernel
void sgemm_ukernel_avx2_6x16_init(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                                  const float* init);  // InitTile of the 6 x 16 kernel
void sgemm_ukernel_avx2_rows_x32(int rows, int64_t kc, const float* a, const float* b, int64_t bstride, float* c,
                                 int64_t ldc, float alpha, float beta);  // EdgeRows2 of the 6 x 16 kernel, rows <= 3
void sgemm_ukernel_avx2_12x8_pair(int cols, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                  float alpha, float beta, const float* init);  // HalfPair of the 6 x 16 kernel
void sgemm_column_avx2_x16(int rows, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                           float alpha, float beta, const float* init);  // Column of the 6 x 16 kernel
// The AVX-512 kernels' tile shapes in AVX2 code (route_isa() avx512 on an AVX2 CPU, for the tests):
// the same template as every kernel, so each C value is the same sum in the same order as the
// AVX-512 kernel's; 48 accumulators in 16 ymm registers, so slow (spills), never used for speed.
void sgemm_ukernel_avx2_12x32(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                              float beta);
void dgemm_ukernel_avx2_12x16(int64_t kc, const double* a, const double* b, double* c, int64_t ldc, double alpha,
                              double beta);
void sgemm_ukernel_avx2_12x16_of32(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                                   float beta);  // HalfCols of the emulated 12 x 32 kernel
void dgemm_ukernel_avx2_12x8_of16(int64_t kc, const double* a, const double* b, double* c, int64_t ldc,
                                  double alpha, double beta);  // HalfCols of the emulated 12 x 16 kernel
void sgemm_ukernel_avx2_rows_x32(int rows, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                 float alpha, float beta);  // EdgeRows of the emulated 12 x 32 kernel
void dgemm_ukernel_avx2_rows_x16(int rows, int64_t kc, const double* a, const double* b, double* c, int64_t ldc,
                                 double alpha, double beta);  // EdgeRows of the emulated 12 x 16 kernel
void dgemm_ukernel_avx2_6x8(int64_t kc, const double* a, const double* b, double* c, int64_t ldc, double alpha,
                            double beta);
void sgemm_ukernel_avx512_12x32(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                                float beta);
void dgemm_ukernel_avx512_12x16(int64_t kc, const double* a, const double* b, double* c, int64_t ldc,
                                double alpha, double beta);
void sgemm_ukernel_avx512_12x16_of32(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                                     float beta);  // HalfCols of the 12 x 32 kernel
void dgemm_ukernel_avx512_12x8_of16(int64_t kc, const double* a, const double* b, double* c, int64_t ldc,
                                    double alpha, double beta);  // HalfCols of the 12 x 16 kernel
void sgemm_ukernel_avx512_rows_x32(int rows, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                   float alpha, float beta);  // EdgeRows of the 12 x 32 kernel
void dgemm_ukernel_avx512_rows_x16(int rows, int64_t kc, const double* a, const double* b, double* c, int64_t ldc,
                                   double alpha, double beta);  // EdgeRows of the 12 x 16 kernel

// Matrix-vector dot products (gemm.cpp's gemv_rows, float, AVX2 + FMA): res[r] = sum_k X[r * ld + k] *
// v[k] for r < rows (4, or any count one row at a time). Each row the same arithmetic whatever
// rows is: two 8-lane FMA accumulators over steps of 16 values (one more 8-value step into the
// first when 8-15 are left), added, their 8 lanes summed pairwise 4, 2 and 1 apart, plus the last
// 0-7 products one by one. No software prefetch: it made the hardware prefetcher's streams slower.
void sdots_avx2(int rows, const float* X, int64_t ld, const float* v, int64_t n, float* res);

// FMA throughput probes (gemm_ukernel.h's fma_throughput): iters * 12 FMAs of one full vector each.
float sfma_probe_avx2(int64_t iters);    // 8 lanes
float sfma_probe_avx512(int64_t iters);  // 16 lanes

}  // namespace gemm_detail
}  // namespace convkit
