// max_pool2d: NCHW max pooling with padding (padded cells are -inf, never chosen) and ceil_mode.
//
//   y[n, c, i, j] = max_{p < kh, q < kw} x[n, c, i*sh - ph + p, j*sw - pw + q]
//   idx[n, c, i, j] = (row * W + col) of that max inside the (H, W) plane (PyTorch's convention);
//                     ties go to the first element in row-major window order.
//
// Output size: floor mode: floor((in + 2*pad - k) / stride) + 1; ceil mode: ceil(...) + 1, minus one
// when the last window would start at or past in + pad (so every window starts inside the input or
// the left padding, as in PyTorch). Padding must be <= k / 2.
// backward ACCUMULATES dy into dx at idx (overlapping windows), after zeroing dx: dx is overwritten.
#pragma once
#include "convkit/tensor.h"

namespace convkit {

struct Pool2dParams {
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  bool ceil_mode = false;
};

int64_t pool2d_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, bool ceil_mode);

void max_pool2d_check(const char* op, const Tensor& x,  // [N, C, H, W]
                      const Tensor& y,                  // [N, C, OH, OW]
                      const Tensor& idx,                // [N, C, OH, OW] int64
                      const Pool2dParams& p);

void max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& idx, const Pool2dParams& p);
void max_pool2d_backward(const Tensor& dy,   // [N, C, OH, OW]
                         const Tensor& idx,  // [N, C, OH, OW] int64
                         const Tensor& dx,   // [N, C, H, W]   overwritten
                         const Pool2dParams& p);

void max_pool2d_forward_cpu(const Tensor& x, const Tensor& y, const Tensor& idx, const Pool2dParams& p);
void max_pool2d_backward_cpu(const Tensor& dy, const Tensor& idx, const Tensor& dx, const Pool2dParams& p);
void max_pool2d_forward_cuda(const Tensor& x, const Tensor& y, const Tensor& idx, const Pool2dParams& p);
void max_pool2d_backward_cuda(const Tensor& dy, const Tensor& idx, const Tensor& dx, const Pool2dParams& p);

}  // namespace convkit
