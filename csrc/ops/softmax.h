// Softmax family over the last axis of a [N, K] array, numerically stable (the row max is
// subtracted first, so logits of magnitude 1e4 are fine).
//
//   softmax:      y = exp(x - m) / sum exp(x - m);          dx = y * (dy - sum(dy * y))
//   log_softmax:  y = x - m - log(sum exp(x - m));          dx = dy - exp(y) * sum(dy)
//   cross-entropy per row: loss[n] = logsumexp(x[n]) - x[n, label[n]], also writes probs = softmax(x)
//                 backward: dx[n, k] = dloss[n] * (probs[n, k] - [k == label[n]])
// Labels must lie in [0, K); the CPU path checks and throws, the CUDA path checks before launch.
// Every function OVERWRITES its output.
#pragma once
#include "convkit/tensor.h"

namespace convkit {

void softmax_forward(const Tensor& x, const Tensor& y);                          // [N, K]
void softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx);      // [N, K]
void log_softmax_forward(const Tensor& x, const Tensor& y);                      // [N, K]
void log_softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx);  // [N, K]
void softmax_cross_entropy_forward(const Tensor& logits,  // [N, K]
                                   const Tensor& labels,  // [N] int64
                                   const Tensor& loss,    // [N]    overwritten
                                   const Tensor& probs);  // [N, K] overwritten
void softmax_cross_entropy_backward(const Tensor& probs,    // [N, K]
                                    const Tensor& labels,   // [N] int64
                                    const Tensor& dloss,    // [N]
                                    const Tensor& dlogits);  // [N, K] overwritten

void softmax_forward_cpu(const Tensor& x, const Tensor& y);
void softmax_backward_cpu(const Tensor& y, const Tensor& dy, const Tensor& dx);
void log_softmax_forward_cpu(const Tensor& x, const Tensor& y);
void log_softmax_backward_cpu(const Tensor& y, const Tensor& dy, const Tensor& dx);
void softmax_cross_entropy_forward_cpu(const Tensor& logits, const Tensor& labels, const Tensor& loss,
                                       const Tensor& probs);
void softmax_cross_entropy_backward_cpu(const Tensor& probs, const Tensor& labels, const Tensor& dloss,
                                        const Tensor& dlogits);
void softmax_forward_cuda(const Tensor& x, const Tensor& y);
void softmax_backward_cuda(const Tensor& y, const Tensor& dy, const Tensor& dx);
void log_softmax_forward_cuda(const Tensor& x, const Tensor& y);
void log_softmax_backward_cuda(const Tensor& y, const Tensor& dy, const Tensor& dx);
void softmax_cross_entropy_forward_cuda(const Tensor& logits, const Tensor& labels, const Tensor& loss,
                                        const Tensor& probs);
void softmax_cross_entropy_backward_cuda(const Tensor& probs, const Tensor& labels, const Tensor& dloss,
                                         const Tensor& dlogits);

}  // namespace convkit
