// lrn: local response normalization across channels (AlexNet), NCHW. Same convention as Caffe and
// PyTorch's torch.nn.functional.local_response_norm: alpha is divided by the window size n.
//
//   scale[n, c, h, w] = k + (alpha / size) * sum_{c' = c - size/2}^{c + (size-1)/2} x[n, c', h, w]^2
//   y[n, c, h, w]     = x[n, c, h, w] * scale[n, c, h, w]^(-beta)
//
// (integer division; channels outside [0, C) contribute zero, and the divisor stays `size` at the
// edges). For even sizes the window is asymmetric: size/2 channels before c, size/2 - 1 after.
//
// Backward (derived in lrn.cpp):
//   dx[c] = dy[c] * scale[c]^(-beta)
//           - (2 * alpha * beta / size) * x[c] * sum_{c' : c in window(c')} dy[c'] * y[c'] / scale[c']
// with window(c') as above, i.e. c' from c - (size-1)/2 to c + size/2.
#pragma once
#include "convkit/tensor.h"

namespace convkit {

struct LrnParams {
  int64_t size = 5;
  double alpha = 1e-4;
  double beta = 0.75;
  double k = 1.0;
};

void lrn_check(const char* op, const Tensor& x, const Tensor& y, const Tensor& scale, const LrnParams& p);

void lrn_forward(const Tensor& x,      // [N, C, H, W]
                 const Tensor& y,      // [N, C, H, W]  overwritten
                 const Tensor& scale,  // [N, C, H, W]  overwritten; kept for backward
                 const LrnParams& p);
void lrn_backward(const Tensor& x, const Tensor& y, const Tensor& scale,
                  const Tensor& dy,  // [N, C, H, W]
                  const Tensor& dx,  // [N, C, H, W]  overwritten
                  const LrnParams& p);

void lrn_forward_cpu(const Tensor& x, const Tensor& y, const Tensor& scale, const LrnParams& p);
void lrn_backward_cpu(const Tensor& x, const Tensor& y, const Tensor& scale, const Tensor& dy, const Tensor& dx,
                      const LrnParams& p);
void lrn_forward_cuda(const Tensor& x, const Tensor& y, const Tensor& scale, const LrnParams& p);
void lrn_backward_cuda(const Tensor& x, const Tensor& y, const Tensor& scale, const Tensor& dy, const Tensor& dx,
                       const LrnParams& p);

}  // namespace convkit
