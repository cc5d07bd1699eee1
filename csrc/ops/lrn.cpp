// PLACEHOLDER: replaced by the real implementation before this lands on main.
#include "ops/lrn.h"
namespace convkit {
void lrn_check(const char* op, const Tensor& x, const Tensor& y, const Tensor& scale, const LrnParams& p) { throw std::runtime_error("lrn_check: not implemented yet"); }
void lrn_backward(const Tensor& x, const Tensor& y, const Tensor& scale, const Tensor& dy, const Tensor& dx, const LrnParams& p) { throw std::runtime_error("lrn_backward: not implemented yet"); }
void lrn_forward_cpu(const Tensor& x, const Tensor& y, const Tensor& scale, const LrnParams& p) { throw std::runtime_error("lrn_forward_cpu: not implemented yet"); }
void lrn_backward_cpu(const Tensor& x, const Tensor& y, const Tensor& scale, const Tensor& dy, const Tensor& dx, const LrnParams& p) { throw std::runtime_error("lrn_backward_cpu: not implemented yet"); }
void lrn_forward(const Tensor& x, const Tensor& y, const Tensor& scale, const LrnParams& p) { throw std::runtime_error("lrn_forward: not implemented yet"); }
}
