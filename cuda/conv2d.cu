// PLACEHOLDER: replaced by the real implementation before this lands on main.
#include <stdexcept>
#include "ops/conv2d.h"
namespace convkit {
void conv2d_forward_cuda(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p) { throw std::runtime_error("conv2d_forward_cuda: not implemented yet"); }
void conv2d_backward_data_cuda(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p) { throw std::runtime_error("conv2d_backward_data_cuda: not implemented yet"); }
void conv2d_backward_weight_cuda(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p) { throw std::runtime_error("conv2d_backward_weight_cuda: not implemented yet"); }
void conv2d_backward_bias_cuda(const Tensor& dy, const Tensor& db) { throw std::runtime_error("conv2d_backward_bias_cuda: not implemented yet"); }
}
