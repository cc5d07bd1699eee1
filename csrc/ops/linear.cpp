// PLACEHOLDER: replaced by the real implementation before this lands on main.
#include "ops/linear.h"
namespace convkit {
void linear_forward(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y) { throw std::runtime_error("linear_forward: not implemented yet"); }
void linear_backward_data(const Tensor& dy, const Tensor& w, const Tensor& dx) { throw std::runtime_error("linear_backward_data: not implemented yet"); }
void linear_backward_weight(const Tensor& x, const Tensor& dy, const Tensor& dw) { throw std::runtime_error("linear_backward_weight: not implemented yet"); }
void linear_backward_bias(const Tensor& dy, const Tensor& db) { throw std::runtime_error("linear_backward_bias: not implemented yet"); }
void linear_forward_cpu(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y) { throw std::runtime_error("linear_forward_cpu: not implemented yet"); }
void linear_backward_data_cpu(const Tensor& dy, const Tensor& w, const Tensor& dx) { throw std::runtime_error("linear_backward_data_cpu: not implemented yet"); }
void linear_backward_weight_cpu(const Tensor& x, const Tensor& dy, const Tensor& dw) { throw std::runtime_error("linear_backward_weight_cpu: not implemented yet"); }
void linear_backward_bias_cpu(const Tensor& dy, const Tensor& db) { throw std::runtime_error("linear_backward_bias_cpu: not implemented yet"); }
}
