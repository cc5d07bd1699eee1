// conv2d_impl.h: conv2d's CPU implementations, internal to csrc/ops/conv2d*.cpp.
//
// Implementations in order of preference; conv2d.cpp tries them in this order:
//   conv2d_gemm.cpp  im2col (skipped for 1x1 stride-1 unpadded convs) + convkit::gemm. Returns false
//                    (declines) when it cannot run the shape, e.g. when its scratch would be too large.
//   conv2d_ref.cpp   plain loops straight from the formula in conv2d.h. Handles every shape; it is the
//                    specification the others are tested against (CONVKIT_CONV_IMPL=ref forces it).
// All arguments are already checked (conv2d_check) when these run; every function overwrites its output.
#pragma once

#include "ops/conv2d.h"

namespace convkit {
namespace conv2d_detail {

// Sizes of one checked problem, read from the tensors.
struct Dims {
  int64_t N, C, H, W;      // input  [N, C, H, W]
  int64_t OC, KH, KW;      // weight [OC, C/groups, KH, KW]
  int64_t OH, OW;          // output [N, OC, OH, OW]
  int64_t G, Cg, OCg;      // groups, input and output channels per group
};
Dims dims_of(const Tensor& x, const Tensor& w, const Tensor& y, const Conv2dParams& p);

void forward_ref(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p);
void backward_data_ref(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p);
void backward_weight_ref(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p);

// The GEMM path: returns false (and writes nothing) when it declines the shape.
bool forward_gemm(const Tensor& x, const Tensor& w, const Tensor* b, const Tensor& y, const Conv2dParams& p);
bool backward_data_gemm(const Tensor& dy, const Tensor& w, const Tensor& dx, const Conv2dParams& p);
bool backward_weight_gemm(const Tensor& x, const Tensor& dy, const Tensor& dw, const Conv2dParams& p);

}  // namespace conv2d_detail
}  // namespace convkit
