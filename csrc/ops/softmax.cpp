// Softmax family: checks, device dispatch and the CPU kernels (formulas in softmax.h).
//
// CPU decomposition: one task per row, split over the threads by parallel_for; a row is reduced by
// one thread in index order, so results do not depend on the thread count. Stability: the row max
// m is subtracted before exp, so every exp(x - m) is in (0, 1] and the sum in [1, K]: logits of
// magnitude 1e4 (or 1e38) give no inf or NaN. Sums are accumulated in double for float32 too (K
// is at most a few thousand here, so this is cheap and keeps rows of many tiny terms exact).
// Cross-entropy is computed as (m - x[label]) + log(sum exp(x - m)), both terms well conditioned.
//
// Non-finite input is passed through, not hidden: a row with NaN gives NaN, a row with +inf gives
// NaN (inf - inf), like PyTorch.
#include "ops/softmax.h"

#include <algorithm>
#include <cmath>

#include "convkit/parallel.h"

namespace convkit {
namespace {

int64_t row_grain(int64_t K) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(K, 1)); }

void check_rows(const char* op, const Tensor& x, const char* nx) {
  check_float(x, op, nx);
  check_ndim(x, 2, op, nx, "[N, K]");
  check_nonempty(x, op, nx);
}

void check_like(const char* op, const Tensor& x, const char* nx, const Tensor& t, const char* nt) {
  check_same_device(x, t, op, nx, nt);
  check_dtype(t, x.dtype, op, nt);
  check_shape(t, {x.shape[0], x.shape[1]}, op, nt);
  CONVKIT_CHECK(t.data != nullptr, op, ": ", nt, " has no data");
}

void check_vector(const char* op, const Tensor& x, const char* nx, const Tensor& t, const char* nt, DType dt) {
  check_same_device(x, t, op, nx, nt);
  check_dtype(t, dt, op, nt);
  check_shape(t, {x.shape[0]}, op, nt);
  CONVKIT_CHECK(t.data != nullptr, op, ": ", nt, " has no data");
}

// Labels must lie in [0, K): scanned before any output is written.
void check_labels_cpu(const char* op, const Tensor& labels, int64_t K) {
  const int64_t* lab = labels.ptr<int64_t>();
  for (int64_t n = 0; n < labels.shape[0]; ++n) {
    CONVKIT_CHECK(lab[n] >= 0 && lab[n] < K, op, ": labels must lie in [0, ", K, "), got labels[", n, "] = ", lab[n]);
  }
}

// Row max and sum of exp(x - max), in order.
template <class T>
inline void max_and_sum(const T* x, int64_t K, T* m_out, double* sum_out) {
  T m = x[0];
  for (int64_t k = 1; k < K; ++k) m = (x[k] > m || x[k] != x[k]) ? x[k] : m;  // NaN propagates
  double s = 0;
  for (int64_t k = 0; k < K; ++k) s += static_cast<double>(std::exp(x[k] - m));
  *m_out = m;
  *sum_out = s;
}

}  // namespace

// ---- checked entry points -----------------------------------------------------------------------

void softmax_forward(const Tensor& x, const Tensor& y) {
  const char* op = "softmax_forward";
  check_rows(op, x, "x");
  check_like(op, x, "x", y, "y");
  if (x.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, softmax_forward_cuda(x, y));
    return;
  }
  softmax_forward_cpu(x, y);
}

void softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx) {
  const char* op = "softmax_backward";
  check_rows(op, y, "y");
  check_like(op, y, "y", dy, "dy");
  check_like(op, y, "y", dx, "dx");
  if (y.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, softmax_backward_cuda(y, dy, dx));
    return;
  }
  softmax_backward_cpu(y, dy, dx);
}

void log_softmax_forward(const Tensor& x, const Tensor& y) {
  const char* op = "log_softmax_forward";
  check_rows(op, x, "x");
  check_like(op, x, "x", y, "y");
  if (x.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, log_softmax_forward_cuda(x, y));
    return;
  }
  log_softmax_forward_cpu(x, y);
}

void log_softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx) {
  const char* op = "log_softmax_backward";
  check_rows(op, y, "y");
  check_like(op, y, "y", dy, "dy");
  check_like(op, y, "y", dx, "dx");
  if (y.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, log_softmax_backward_cuda(y, dy, dx));
    return;
  }
  log_softmax_backward_cpu(y, dy, dx);
}

void softmax_cross_entropy_forward(const Tensor& logits, const Tensor& labels, const Tensor& loss,
                                   const Tensor& probs) {
  const char* op = "softmax_cross_entropy_forward";
  check_rows(op, logits, "logits");
  check_ndim(labels, 1, op, "labels", "[N]");
  check_vector(op, logits, "logits", labels, "labels", DType::Int64);
  check_vector(op, logits, "logits", loss, "loss", logits.dtype);
  check_like(op, logits, "logits", probs, "probs");
  if (logits.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, softmax_cross_entropy_forward_cuda(logits, labels, loss, probs));
    return;
  }
  softmax_cross_entropy_forward_cpu(logits, labels, loss, probs);
}

void softmax_cross_entropy_backward(const Tensor& probs, const Tensor& labels, const Tensor& dloss,
                                    const Tensor& dlogits) {
  const char* op = "softmax_cross_entropy_backward";
  check_rows(op, probs, "probs");
  check_ndim(labels, 1, op, "labels", "[N]");
  check_vector(op, probs, "probs", labels, "labels", DType::Int64);
  check_ndim(dloss, 1, op, "dloss", "[N]");
  check_vector(op, probs, "probs", dloss, "dloss", probs.dtype);
  check_like(op, probs, "probs", dlogits, "dlogits");
  if (probs.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, softmax_cross_entropy_backward_cuda(probs, labels, dloss, dlogits));
    return;
  }
  softmax_cross_entropy_backward_cpu(probs, labels, dloss, dlogits);
}

// ---- CPU kernels --------------------------------------------------------------------------------

void softmax_forward_cpu(const Tensor& x, const Tensor& y) {
  const int64_t N = x.shape[0], K = x.shape[1];
  CONVKIT_DISPATCH_FLOAT(x.dtype, "softmax_forward", [&] {
    const scalar_t* xs = x.ptr<scalar_t>();
    scalar_t* ys = y.ptr<scalar_t>();
    parallel_for(N, row_grain(K), [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) {
        const scalar_t* xr = xs + n * K;
        scalar_t* yr = ys + n * K;
        scalar_t m;
        double s;
        max_and_sum(xr, K, &m, &s);
        const double inv = 1.0 / s;
        for (int64_t k = 0; k < K; ++k) yr[k] = static_cast<scalar_t>(static_cast<double>(std::exp(xr[k] - m)) * inv);
      }
    });
  });
}

void softmax_backward_cpu(const Tensor& y, const Tensor& dy, const Tensor& dx) {
  const int64_t N = y.shape[0], K = y.shape[1];
  CONVKIT_DISPATCH_FLOAT(y.dtype, "softmax_backward", [&] {
    const scalar_t* ys = y.ptr<scalar_t>();
    const scalar_t* gs = dy.ptr<scalar_t>();
    scalar_t* ds = dx.ptr<scalar_t>();
    parallel_for(N, row_grain(K), [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) {
        const scalar_t* yr = ys + n * K;
        const scalar_t* gr = gs + n * K;
        scalar_t* dr = ds + n * K;
        double dot = 0;
        for (int64_t k = 0; k < K; ++k) dot += static_cast<double>(gr[k]) * static_cast<double>(yr[k]);
        const scalar_t d = static_cast<scalar_t>(dot);
        for (int64_t k = 0; k < K; ++k) dr[k] = yr[k] * (gr[k] - d);
      }
    });
  });
}

void log_softmax_forward_cpu(const Tensor& x, const Tensor& y) {
  const int64_t N = x.shape[0], K = x.shape[1];
  CONVKIT_DISPATCH_FLOAT(x.dtype, "log_softmax_forward", [&] {
    const scalar_t* xs = x.ptr<scalar_t>();
    scalar_t* ys = y.ptr<scalar_t>();
    parallel_for(N, row_grain(K), [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) {
        const scalar_t* xr = xs + n * K;
        scalar_t* yr = ys + n * K;
        scalar_t m;
        double s;
        max_and_sum(xr, K, &m, &s);
        const scalar_t lse = static_cast<scalar_t>(std::log(s));  // log sum exp(x - m), in [0, log K]
        for (int64_t k = 0; k < K; ++k) yr[k] = (xr[k] - m) - lse;
      }
    });
  });
}

void log_softmax_backward_cpu(const Tensor& y, const Tensor& dy, const Tensor& dx) {
  const int64_t N = y.shape[0], K = y.shape[1];
  CONVKIT_DISPATCH_FLOAT(y.dtype, "log_softmax_backward", [&] {
    const scalar_t* ys = y.ptr<scalar_t>();
    const scalar_t* gs = dy.ptr<scalar_t>();
    scalar_t* ds = dx.ptr<scalar_t>();
    parallel_for(N, row_grain(K), [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) {
        const scalar_t* yr = ys + n * K;
        const scalar_t* gr = gs + n * K;
        scalar_t* dr = ds + n * K;
        double sum = 0;
        for (int64_t k = 0; k < K; ++k) sum += static_cast<double>(gr[k]);
        const scalar_t s = static_cast<scalar_t>(sum);
        for (int64_t k = 0; k < K; ++k) dr[k] = gr[k] - std::exp(yr[k]) * s;
      }
    });
  });
}

void softmax_cross_entropy_forward_cpu(const Tensor& logits, const Tensor& labels, const Tensor& loss,
                                       const Tensor& probs) {
  const int64_t N = logits.shape[0], K = logits.shape[1];
  check_labels_cpu("softmax_cross_entropy_forward", labels, K);
  CONVKIT_DISPATCH_FLOAT(logits.dtype, "softmax_cross_entropy_forward", [&] {
    const scalar_t* xs = logits.ptr<scalar_t>();
    const int64_t* lab = labels.ptr<int64_t>();
    scalar_t* ls = loss.ptr<scalar_t>();
    scalar_t* ps = probs.ptr<scalar_t>();
    parallel_for(N, row_grain(K), [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) {
        const scalar_t* xr = xs + n * K;
        scalar_t* pr = ps + n * K;
        scalar_t m;
        double s;
        max_and_sum(xr, K, &m, &s);
        const double inv = 1.0 / s;
        for (int64_t k = 0; k < K; ++k) pr[k] = static_cast<scalar_t>(static_cast<double>(std::exp(xr[k] - m)) * inv);
        // loss = logsumexp(x) - x[label] = (m - x[label]) + log(sum exp(x - m))
        ls[n] = static_cast<scalar_t>(static_cast<double>(m - xr[lab[n]]) + std::log(s));
      }
    });
  });
}

void softmax_cross_entropy_backward_cpu(const Tensor& probs, const Tensor& labels, const Tensor& dloss,
                                        const Tensor& dlogits) {
  const int64_t N = probs.shape[0], K = probs.shape[1];
  check_labels_cpu("softmax_cross_entropy_backward", labels, K);
  CONVKIT_DISPATCH_FLOAT(probs.dtype, "softmax_cross_entropy_backward", [&] {
    const scalar_t* ps = probs.ptr<scalar_t>();
    const int64_t* lab = labels.ptr<int64_t>();
    const scalar_t* gl = dloss.ptr<scalar_t>();
    scalar_t* ds = dlogits.ptr<scalar_t>();
    parallel_for(N, row_grain(K), [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) {
        const scalar_t* pr = ps + n * K;
        scalar_t* dr = ds + n * K;
        const scalar_t g = gl[n];
        for (int64_t k = 0; k < K; ++k) dr[k] = g * pr[k];
        dr[lab[n]] = g * (pr[lab[n]] - scalar_t(1));
      }
    });
  });
}

}  // namespace convkit
