// PLACEHOLDER: replaced by the real implementation before this lands on main.
#include "ops/max_pool2d.h"
namespace convkit {
int64_t pool2d_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, bool ceil_mode) { throw std::runtime_error("pool2d_out_size: not implemented yet"); }
void max_pool2d_check(const char* op, const Tensor& x, const Tensor& y, const Tensor& idx, const Pool2dParams& p) { throw std::runtime_error("max_pool2d_check: not implemented yet"); }
void max_pool2d_forward(const Tensor& x, const Tensor& y, const Tensor& idx, const Pool2dParams& p) { throw std::runtime_error("max_pool2d_forward: not implemented yet"); }
void max_pool2d_backward(const Tensor& dy, const Tensor& idx, const Tensor& dx, const Pool2dParams& p) { throw std::runtime_error("max_pool2d_backward: not implemented yet"); }
void max_pool2d_forward_cpu(const Tensor& x, const Tensor& y, const Tensor& idx, const Pool2dParams& p) { throw std::runtime_error("max_pool2d_forward_cpu: not implemented yet"); }
void max_pool2d_backward_cpu(const Tensor& dy, const Tensor& idx, const Tensor& dx, const Pool2dParams& p) { throw std::runtime_error("max_pool2d_backward_cpu: not implemented yet"); }
}
