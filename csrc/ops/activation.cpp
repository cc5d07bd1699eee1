// relu and dropout: checks, device dispatch and the CPU kernels (see activation.h for the formulas).
// CPU decomposition: the flat array is split into one contiguous chunk per thread; the loops are
// simple enough for the compiler to vectorize.
#include "ops/activation.h"

#include "convkit/parallel.h"

namespace convkit {
namespace {

constexpr int64_t kGrain = 1 << 15;  // elements per thread before threading pays off

void check_same_shape(const char* op, const Tensor& a, const char* na, const Tensor& b, const char* nb) {
  check_same_device(a, b, op, na, nb);
  bool same = a.ndim == b.ndim;
  for (int i = 0; same && i < a.ndim; ++i) same = a.shape[i] == b.shape[i];
  CONVKIT_CHECK(same, op, ": ", nb, " must have the shape of ", na, " ", a.shape_str(), ", got ", b.shape_str());
}

void check_unary(const char* op, const Tensor& x, const char* nx, const Tensor& y, const char* ny) {
  check_float(x, op, nx);
  check_nonempty(x, op, nx);
  check_same_shape(op, x, nx, y, ny);
  check_dtype(y, x.dtype, op, ny);
}

void check_p(const char* op, double p) {
  CONVKIT_CHECK(p >= 0.0 && p < 1.0, op, ": p must be in [0, 1), got ", p);
}

}  // namespace

// ---- checked entry points -----------------------------------------------------------------------

void relu_forward(const Tensor& x, const Tensor& y) {
  check_unary("relu_forward", x, "x", y, "y");
  if (x.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW("relu_forward", relu_forward_cuda(x, y));
    return;
  }
  relu_forward_cpu(x, y);
}

void relu_backward(const Tensor& dy, const Tensor& y, const Tensor& dx) {
  check_unary("relu_backward", y, "y", dy, "dy");
  check_unary("relu_backward", y, "y", dx, "dx");
  if (y.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW("relu_backward", relu_backward_cuda(dy, y, dx));
    return;
  }
  relu_backward_cpu(dy, y, dx);
}

void dropout_forward(const Tensor& x, const Tensor& y, const Tensor& mask, double p, uint64_t seed) {
  const char* op = "dropout_forward";
  check_unary(op, x, "x", y, "y");
  check_same_shape(op, x, "x", mask, "mask");
  check_dtype(mask, DType::UInt8, op, "mask");
  check_p(op, p);
  if (x.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, dropout_forward_cuda(x, y, mask, p, seed));
    return;
  }
  dropout_forward_cpu(x, y, mask, p, seed);
}

void dropout_backward(const Tensor& dy, const Tensor& mask, const Tensor& dx, double p) {
  const char* op = "dropout_backward";
  check_unary(op, dy, "dy", dx, "dx");
  check_same_shape(op, dy, "dy", mask, "mask");
  check_dtype(mask, DType::UInt8, op, "mask");
  check_p(op, p);
  if (dy.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, dropout_backward_cuda(dy, mask, dx, p));
    return;
  }
  dropout_backward_cpu(dy, mask, dx, p);
}

// ---- CPU kernels --------------------------------------------------------------------------------

void relu_forward_cpu(const Tensor& x, const Tensor& y) {
  CONVKIT_DISPATCH_FLOAT(x.dtype, "relu_forward", [&] {
    const scalar_t* xs = x.ptr<scalar_t>();
    scalar_t* ys = y.ptr<scalar_t>();
    parallel_for(x.numel(), kGrain, [&](int64_t b, int64_t e) {
      // !(x <= 0), not x > 0: NaN propagates (as np.maximum and torch.relu do), -0 gives +0
      for (int64_t i = b; i < e; ++i) ys[i] = !(xs[i] <= scalar_t(0)) ? xs[i] : scalar_t(0);
    });
  });
}

void relu_backward_cpu(const Tensor& dy, const Tensor& y, const Tensor& dx) {
  CONVKIT_DISPATCH_FLOAT(y.dtype, "relu_backward", [&] {
    const scalar_t* g = dy.ptr<scalar_t>();
    const scalar_t* ys = y.ptr<scalar_t>();
    scalar_t* d = dx.ptr<scalar_t>();
    parallel_for(y.numel(), kGrain, [&](int64_t b, int64_t e) {
      // g[i] is loaded whatever the sign of y[i]: the select then compiles to a vector blend. With
      // the load inside the condition the compiler keeps a branch, which mispredicts about half
      // the time on a ReLU's output (10-20x slower).
      for (int64_t i = b; i < e; ++i) {
        const scalar_t gi = g[i];
        d[i] = ys[i] > scalar_t(0) ? gi : scalar_t(0);
      }
    });
  });
}

void dropout_forward_cpu(const Tensor& x, const Tensor& y, const Tensor& mask, double p, uint64_t seed) {
  CONVKIT_DISPATCH_FLOAT(x.dtype, "dropout_forward", [&] {
    const scalar_t* xs = x.ptr<scalar_t>();
    scalar_t* ys = y.ptr<scalar_t>();
    uint8_t* m = mask.ptr<uint8_t>();
    const scalar_t scale = scalar_t(1.0 / (1.0 - p));
    parallel_for(x.numel(), kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        uint8_t keep = dropout_uniform(seed, static_cast<uint64_t>(i)) >= p;
        m[i] = keep;
        ys[i] = keep ? xs[i] * scale : scalar_t(0);
      }
    });
  });
}

void dropout_backward_cpu(const Tensor& dy, const Tensor& mask, const Tensor& dx, double p) {
  CONVKIT_DISPATCH_FLOAT(dy.dtype, "dropout_backward", [&] {
    const scalar_t* g = dy.ptr<scalar_t>();
    const uint8_t* m = mask.ptr<uint8_t>();
    scalar_t* d = dx.ptr<scalar_t>();
    const scalar_t scale = scalar_t(1.0 / (1.0 - p));
    parallel_for(dy.numel(), kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {  // unconditional load: a blend, not a branch (see relu_backward)
        const scalar_t gi = g[i] * scale;
        d[i] = m[i] ? gi : scalar_t(0);
      }
    });
  });
}

}  // namespace convkit
