// linear: checks, device dispatch and the CPU implementation (formulas in linear.h).
//
// CPU: every product is one convkit::gemm call on the row-major arrays as they are (no copies):
//   forward          y[N, OUT]  = x[N, IN] @ w[OUT, IN]^T (+ b)   gemm(no, trans)
//   backward data    dx[N, IN]  = dy[N, OUT] @ w[OUT, IN]          gemm(no, no)
//   backward weight  dw[OUT, IN] = dy[N, OUT]^T @ x[N, IN]         gemm(trans, no)
//   backward bias    db[OUT]    = column sums of dy                one pass over dy, per column block
// At batch 1 gemm takes its matrix-vector paths (forward: one dot product per row of w; backward
// data: one sequential sweep over the rows of w; backward weight: a rank-1 write of dw), so each
// reads or writes the weight matrix exactly once, threaded over independent outputs.
// Bias: y is first filled with b, then gemm adds x @ w^T to it (beta = 1).
// Every output is overwritten, and no result depends on the thread count (gemm's splits and the
// column blocks of the bias sum never change the order of an addition).
#include "ops/linear.h"

#include <algorithm>

#include "convkit/parallel.h"
#include "gemm/gemm.h"

namespace convkit {
namespace {

void check_matrix(const Tensor& t, const char* op, const char* name, const char* layout) {
  check_float(t, op, name);
  check_ndim(t, 2, op, name, layout);
  check_nonempty(t, op, name);
}

// `t` must have `ref`'s dtype and device (the message names both).
void check_like(const Tensor& t, const Tensor& ref, const char* op, const char* name, const char* ref_name) {
  check_same_device(ref, t, op, ref_name, name);
  CONVKIT_CHECK(t.dtype == ref.dtype, op, ": ", name, " has dtype ", dtype_name(t.dtype), " but ", ref_name,
                " has ", dtype_name(ref.dtype), "; they must match");
}

}  // namespace

// ---- checked entry points -----------------------------------------------------------------------

void linear_forward(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y) {
  const char* op = "linear_forward";
  check_matrix(x, op, "x", "[N, IN]");
  check_ndim(w, 2, op, "weight", "[OUT, IN]");
  check_like(w, x, op, "weight", "x");
  check_shape(w, {-1, x.shape[1]}, op, "weight");
  check_nonempty(w, op, "weight");
  if (b) {
    check_like(*b, x, op, "bias", "x");
    check_shape(*b, {w.shape[0]}, op, "bias");
  }
  check_like(y, x, op, "y", "x");
  check_shape(y, {x.shape[0], w.shape[0]}, op, "y");
  if (x.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, linear_forward_cuda(x, w, b, y));
    return;
  }
  linear_forward_cpu(x, w, b, y);
}

void linear_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx) {
  const char* op = "linear_backward_data";
  check_matrix(dy, op, "dy", "[N, OUT]");
  check_ndim(w, 2, op, "weight", "[OUT, IN]");
  check_like(w, dy, op, "weight", "dy");
  check_shape(w, {dy.shape[1], -1}, op, "weight");
  check_nonempty(w, op, "weight");
  check_like(dx, dy, op, "dx", "dy");
  check_shape(dx, {dy.shape[0], w.shape[1]}, op, "dx");
  if (dy.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, linear_backward_data_cuda(dy, w, dx));
    return;
  }
  linear_backward_data_cpu(dy, w, dx);
}

void linear_backward_weight(const Tensor& x, const Tensor& dy, const Tensor& dw) {
  const char* op = "linear_backward_weight";
  check_matrix(x, op, "x", "[N, IN]");
  check_ndim(dy, 2, op, "dy", "[N, OUT]");
  check_like(dy, x, op, "dy", "x");
  check_shape(dy, {x.shape[0], -1}, op, "dy");
  check_nonempty(dy, op, "dy");
  check_like(dw, x, op, "dw", "x");
  check_shape(dw, {dy.shape[1], x.shape[1]}, op, "dw");
  if (x.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, linear_backward_weight_cuda(x, dy, dw));
    return;
  }
  linear_backward_weight_cpu(x, dy, dw);
}

void linear_backward_bias(const Tensor& dy, const Tensor& db) {
  const char* op = "linear_backward_bias";
  check_matrix(dy, op, "dy", "[N, OUT]");
  check_like(db, dy, op, "db", "dy");
  check_shape(db, {dy.shape[1]}, op, "db");
  if (dy.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, linear_backward_bias_cuda(dy, db));
    return;
  }
  linear_backward_bias_cpu(dy, db);
}

// ---- CPU ----------------------------------------------------------------------------------------

void linear_forward_cpu(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y) {
  const int64_t N = x.shape[0], IN = x.shape[1], OUT = w.shape[0];
  CONVKIT_DISPATCH_FLOAT(x.dtype, "linear_forward", [&] {
    scalar_t* ys = y.ptr<scalar_t>();
    scalar_t beta = 0;
    if (b) {
      const scalar_t* bs = b->ptr<scalar_t>();
      for (int64_t n = 0; n < N; ++n) std::copy(bs, bs + OUT, ys + n * OUT);
      beta = 1;
    }
    gemm<scalar_t>(false, true, N, OUT, IN, scalar_t(1), x.ptr<scalar_t>(), IN, w.ptr<scalar_t>(), IN, beta, ys,
                   OUT);
  });
}

void linear_backward_data_cpu(const Tensor& dy, const Tensor& w, const Tensor& dx) {
  const int64_t N = dy.shape[0], OUT = dy.shape[1], IN = w.shape[1];
  CONVKIT_DISPATCH_FLOAT(dy.dtype, "linear_backward_data", [&] {
    gemm<scalar_t>(false, false, N, IN, OUT, scalar_t(1), dy.ptr<scalar_t>(), OUT, w.ptr<scalar_t>(), IN,
                   scalar_t(0), dx.ptr<scalar_t>(), IN);
  });
}

void linear_backward_weight_cpu(const Tensor& x, const Tensor& dy, const Tensor& dw) {
  const int64_t N = x.shape[0], IN = x.shape[1], OUT = dy.shape[1];
  CONVKIT_DISPATCH_FLOAT(x.dtype, "linear_backward_weight", [&] {
    gemm<scalar_t>(true, false, OUT, IN, N, scalar_t(1), dy.ptr<scalar_t>(), OUT, x.ptr<scalar_t>(), IN,
                   scalar_t(0), dw.ptr<scalar_t>(), IN);
  });
}

// db[o] = sum_n dy[n, o]: threads take column blocks; within a block the rows are added in order
// n = 0, 1, ..., so the sum of each column is the same whatever the thread count.
void linear_backward_bias_cpu(const Tensor& dy, const Tensor& db) {
  const int64_t N = dy.shape[0], OUT = dy.shape[1];
  CONVKIT_DISPATCH_FLOAT(dy.dtype, "linear_backward_bias", [&] {
    const scalar_t* g = dy.ptr<scalar_t>();
    scalar_t* out = db.ptr<scalar_t>();
    constexpr int64_t JB = 1024;
    const int64_t blocks = (OUT + JB - 1) / JB;
    const int64_t min_blocks = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, N * JB));
    parallel_for(blocks, min_blocks, [&](int64_t b0, int64_t b1) {
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t j0 = blk * JB, nj = std::min(JB, OUT - j0);
        scalar_t* acc = out + j0;
        for (int64_t j = 0; j < nj; ++j) acc[j] = g[j0 + j];
        for (int64_t n = 1; n < N; ++n) {
          const scalar_t* row = g + n * OUT + j0;
          for (int64_t j = 0; j < nj; ++j) acc[j] += row[j];
        }
      }
    });
  });
}

}  // namespace convkit
