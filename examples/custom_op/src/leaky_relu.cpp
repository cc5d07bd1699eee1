// Leaky ReLU: checks, device dispatch and the CPU kernels (formulas in leaky_relu.h).
// CPU decomposition: the flat array is split into one contiguous chunk per thread
// (convkit::parallel_for, which follows convkit.set_num_threads()); the loops vectorize.
#include "leaky_relu.h"

#include <cmath>

namespace custom_op {
using namespace convkit;

namespace {

constexpr int64_t kGrain = 1 << 15;  // elements per thread before threading pays off

void check_args(const char* op, const Tensor& x, const char* nx, const Tensor& a, const char* na,
                const Tensor& b, const char* nb, double slope) {
  check_float(x, op, nx);
  check_nonempty(x, op, nx);
  check_same_shape(op, x, nx, a, na);
  check_dtype(a, x.dtype, op, na);
  check_same_shape(op, x, nx, b, nb);
  check_dtype(b, x.dtype, op, nb);
  CONVKIT_CHECK(std::isfinite(slope), op, ": slope must be finite, got ", slope);
}

}  // namespace

void leaky_relu_forward(const Tensor& x, const Tensor& y, double slope) {
  check_args("leaky_relu_forward", x, "x", y, "y", y, "y", slope);
  if (x.device == Device::CUDA) {
    CONVKIT_EXT_CUDA_OR_THROW("leaky_relu_forward", leaky_relu_forward_cuda(x, y, slope));
    return;
  }
  leaky_relu_forward_cpu(x, y, slope);
}

void leaky_relu_backward(const Tensor& dy, const Tensor& x, const Tensor& dx, double slope) {
  check_args("leaky_relu_backward", x, "x", dy, "dy", dx, "dx", slope);
  if (x.device == Device::CUDA) {
    CONVKIT_EXT_CUDA_OR_THROW("leaky_relu_backward", leaky_relu_backward_cuda(dy, x, dx, slope));
    return;
  }
  leaky_relu_backward_cpu(dy, x, dx, slope);
}

void leaky_relu_forward_cpu(const Tensor& x, const Tensor& y, double slope) {
  CONVKIT_DISPATCH_FLOAT(x.dtype, "leaky_relu_forward", [&] {
    const scalar_t* xs = x.ptr<scalar_t>();
    scalar_t* ys = y.ptr<scalar_t>();
    const scalar_t s = static_cast<scalar_t>(slope);
    parallel_for(x.numel(), kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) ys[i] = xs[i] > scalar_t(0) ? xs[i] : s * xs[i];
    });
  });
}

void leaky_relu_backward_cpu(const Tensor& dy, const Tensor& x, const Tensor& dx, double slope) {
  CONVKIT_DISPATCH_FLOAT(x.dtype, "leaky_relu_backward", [&] {
    const scalar_t* g = dy.ptr<scalar_t>();
    const scalar_t* xs = x.ptr<scalar_t>();
    scalar_t* d = dx.ptr<scalar_t>();
    const scalar_t s = static_cast<scalar_t>(slope);
    parallel_for(x.numel(), kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) d[i] = xs[i] > scalar_t(0) ? g[i] : s * g[i];
    });
  });
}

}  // namespace custom_op
