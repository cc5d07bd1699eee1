// PLACEHOLDER: replaced by the real implementation before this lands on main.
#include <stdexcept>
#include "ops/linear.h"
namespace convkit {
void linear_forward_cuda(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y) { throw std::runtime_error("linear_forward_cuda: not implemented yet"); }
void linear_backward_data_cuda(const Tensor& dy, const Tensor& w, const Tensor& dx) { throw std::runtime_error("linear_backward_data_cuda: not implemented yet"); }
void linear_backward_weight_cuda(const Tensor& x, const Tensor& dy, const Tensor& dw) { throw std::runtime_error("linear_backward_weight_cuda: not implemented yet"); }
void linear_backward_bias_cuda(const Tensor& dy, const Tensor& db) { throw std::runtime_error("linear_backward_bias_cuda: not implemented yet"); }
}
