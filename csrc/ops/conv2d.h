// conv2d: 2-D cross-correlation (what every CNN framework calls convolution), NCHW, with stride,
// zero padding, dilation and groups.
//
//   y[n, o, i, j] = b[o] + sum_{c in group(o), p, q} x[n, c, i*sh - ph + p*dh, j*sw - pw + q*dw] * w[o, c', p, q]
//
// where group(o) = the C/groups input channels of o's group, c' = c - g*C/groups, and x outside the
// image is zero. Output size per axis: floor((in + 2*pad - dil*(k-1) - 1) / stride) + 1.
// Every function OVERWRITES its output (no accumulation); the caller adds gradients up.
#pragma once
#include <string>

#include "convkit/tensor.h"

namespace convkit {

struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dil_h = 1, dil_w = 1;
  int64_t groups = 1;
};

int64_t conv2d_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil);

// Checks every shape, dtype and device; throws std::invalid_argument naming the argument.
// b may be null (no bias).
void conv2d_check(const char* op, const Tensor& x,   // [N, C, H, W]
                  const Tensor& w,                   // [OC, C/groups, KH, KW]
                  const Tensor* b,                   // [OC] or null
                  const Tensor& y,                   // [N, OC, OH, OW]
                  const Conv2dParams& p);

// Checked, device-dispatching entry points (what the binding calls).
void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p);
void conv2d_backward_data(const Tensor& dy,  // [N, OC, OH, OW]
                          const Tensor& w,   // [OC, C/groups, KH, KW]
                          const Tensor& dx,  // [N, C, H, W]   overwritten
                          const Conv2dParams& p);
void conv2d_backward_weight(const Tensor& x,   // [N, C, H, W]
                            const Tensor& dy,  // [N, OC, OH, OW]
                            const Tensor& dw,  // [OC, C/groups, KH, KW]   overwritten
                            const Conv2dParams& p);
void conv2d_backward_bias(const Tensor& dy,  // [N, OC, OH, OW]
                          const Tensor& db);  // [OC]   overwritten

// Implementations; arguments already checked.
void conv2d_forward_cpu(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p);
void conv2d_backward_data_cpu(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p);
void conv2d_backward_weight_cpu(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p);
void conv2d_backward_bias_cpu(const Tensor& dy, const Tensor& db);
void conv2d_forward_cuda(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p);
void conv2d_backward_data_cuda(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p);
void conv2d_backward_weight_cuda(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p);
void conv2d_backward_bias_cuda(const Tensor& dy, const Tensor& db);

// Which CPU implementation the *_cpu functions use (a test and benchmark hook, not a mode to run in):
//   "auto"   the fastest path that accepts the shape, the reference last (the default);
//   "ref"    always the plain reference loops;
//   "gemm"   the im2col + GEMM path only, throwing std::runtime_error where it would decline;
//   "direct" forward: the direct kernel for every shape it supports (float, stride 1, AVX2), throwing
//            std::runtime_error for the others; the backward passes run as in "auto".
// The initial value comes from $CONVKIT_CONV_IMPL (read once). Returns the previous setting; throws
// std::invalid_argument for any other name. Bound as convkit._core._conv2d_set_cpu_impl.
std::string conv2d_set_cpu_impl(const std::string& impl);

}  // namespace convkit
