// PLACEHOLDER: replaced by the real implementation before this lands on main.
#include <stdexcept>
#include "ops/softmax.h"
namespace convkit {
void softmax_forward_cuda(const Tensor& x, const Tensor& y) { throw std::runtime_error("softmax_forward_cuda: not implemented yet"); }
void softmax_backward_cuda(const Tensor& y, const Tensor& dy, const Tensor& dx) { throw std::runtime_error("softmax_backward_cuda: not implemented yet"); }
void log_softmax_forward_cuda(const Tensor& x, const Tensor& y) { throw std::runtime_error("log_softmax_forward_cuda: not implemented yet"); }
void log_softmax_backward_cuda(const Tensor& y, const Tensor& dy, const Tensor& dx) { throw std::runtime_error("log_softmax_backward_cuda: not implemented yet"); }
void softmax_cross_entropy_forward_cuda(const Tensor& logits, const Tensor& labels, const Tensor& loss, const Tensor& probs) { throw std::runtime_error("softmax_cross_entropy_forward_cuda: not implemented yet"); }
void softmax_cross_entropy_backward_cuda(const Tensor& probs, const Tensor& labels, const Tensor& dloss, const Tensor& dlogits) { throw std::runtime_error("softmax_cross_entropy_backward_cuda: not implemented yet"); }
}
