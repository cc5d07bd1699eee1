// PLACEHOLDER: replaced by the real implementation before this lands on main.
#include "ops/conv2d.h"
namespace convkit {
int64_t conv2d_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dil) { throw std::runtime_error("conv2d_out_size: not implemented yet"); }
void conv2d_check(const char* op, const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p) { throw std::runtime_error("conv2d_check: not implemented yet"); }
void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p) { throw std::runtime_error("conv2d_forward: not implemented yet"); }
void conv2d_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p) { throw std::runtime_error("conv2d_backward_data: not implemented yet"); }
void conv2d_backward_weight(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p) { throw std::runtime_error("conv2d_backward_weight: not implemented yet"); }
void conv2d_backward_bias(const Tensor& dy, const Tensor& db) { throw std::runtime_error("conv2d_backward_bias: not implemented yet"); }
void conv2d_forward_cpu(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p) { throw std::runtime_error("conv2d_forward_cpu: not implemented yet"); }
void conv2d_backward_data_cpu(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p) { throw std::runtime_error("conv2d_backward_data_cpu: not implemented yet"); }
void conv2d_backward_weight_cpu(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p) { throw std::runtime_error("conv2d_backward_weight_cpu: not implemented yet"); }
void conv2d_backward_bias_cpu(const Tensor& dy, const Tensor& db) { throw std::runtime_error("conv2d_backward_bias_cpu: not implemented yet"); }
}
