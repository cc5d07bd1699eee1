// Leaky ReLU, elementwise over arrays of any shape (treated as flat):
//
//   y  = x          if x > 0,   slope * x    otherwise
//   dx = dy         if x > 0,   slope * dy   otherwise   (at x == 0 the gradient is slope, as PyTorch)
//
// slope is any finite number (0 gives ReLU). Both functions OVERWRITE their output. x, y, dy, dx:
// one shape, one float dtype (float32 or float64), one device.
#pragma once
#include "convkit/extension.h"

namespace custom_op {
using convkit::Tensor;

// Checked entry points: validate, then dispatch on the arrays' device.
void leaky_relu_forward(const Tensor& x, const Tensor& y, double slope);
void leaky_relu_backward(const Tensor& dy, const Tensor& x, const Tensor& dx, double slope);

// Implementations (arguments already checked).
void leaky_relu_forward_cpu(const Tensor& x, const Tensor& y, double slope);
void leaky_relu_backward_cpu(const Tensor& dy, const Tensor& x, const Tensor& dx, double slope);
void leaky_relu_forward_cuda(const Tensor& x, const Tensor& y, double slope);
void leaky_relu_backward_cuda(const Tensor& dy, const Tensor& x, const Tensor& dx, double slope);

}  // namespace custom_op
