// PLACEHOLDER: replaced by the real implementation before this lands on main.
#include <stdexcept>
#include "ops/max_pool2d.h"
namespace convkit {
void max_pool2d_forward_cuda(const Tensor& x, const Tensor& y, const Tensor& idx, const Pool2dParams& p) { throw std::runtime_error("max_pool2d_forward_cuda: not implemented yet"); }
void max_pool2d_backward_cuda(const Tensor& dy, const Tensor& idx, const Tensor& dx, const Pool2dParams& p) { throw std::runtime_error("max_pool2d_backward_cuda: not implemented yet"); }
}
