// linear: fully connected layer, PyTorch's weight layout.
//
//   y[n, o] = b[o] + sum_i x[n, i] * w[o, i]
//   backward: dx = dy @ w,  dw = dy^T @ x,  db = sum_n dy[n, :]
// Every function OVERWRITES its output.
#pragma once
#include "convkit/tensor.h"

namespace convkit {

void linear_forward(const Tensor& x,   // [N, IN]
                    const Tensor& w,   // [OUT, IN]
                    const Tensor* b,   // [OUT] or null
                    const Tensor& y);  // [N, OUT]
void linear_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx);    // dx [N, IN]
void linear_backward_weight(const Tensor& x, const Tensor& dy, const Tensor& dw);  // dw [OUT, IN]
void linear_backward_bias(const Tensor& dy, const Tensor& db);                     // db [OUT]

void linear_forward_cpu(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y);
void linear_backward_data_cpu(const Tensor& dy, const Tensor& w, const Tensor& dx);
void linear_backward_weight_cpu(const Tensor& x, const Tensor& dy, const Tensor& dw);
void linear_backward_bias_cpu(const Tensor& dy, const Tensor& db);
void linear_forward_cuda(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y);
void linear_backward_data_cuda(const Tensor& dy, const Tensor& w, const Tensor& dx);
void linear_backward_weight_cuda(const Tensor& x, const Tensor& dy, const Tensor& dw);
void linear_backward_bias_cuda(const Tensor& dy, const Tensor& db);

}  // namespace convkit
