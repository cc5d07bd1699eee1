// The Python binding of convkit's core (module convkit._core). Each op gets a few lines: convert
// the arguments to views, allocate the outputs on the inputs' device, release the GIL, call the
// checked entry point (which dispatches to the CPU or CUDA implementation).
//
// Exceptions: std::invalid_argument -> ValueError, std::overflow_error -> OverflowError,
// std::bad_alloc -> MemoryError, std::runtime_error -> RuntimeError.
#include <pybind11/stl.h>

#include "bind_util.h"
#include "convkit/parallel.h"
#include "convkit/runtime.h"
#include "gemm/gemm.h"
#include "ops/activation.h"
#include "ops/conv2d.h"
#include "ops/linear.h"
#include "ops/lrn.h"
#include "ops/max_pool2d.h"
#include "ops/softmax.h"

#ifndef CONVKIT_VERSION
#define CONVKIT_VERSION "0.0.0"
#endif
#ifndef CONVKIT_CXX_COMPILER
#define CONVKIT_CXX_COMPILER "unknown"
#endif

namespace py = pybind11;
using namespace convkit;

void bind_device_array(py::module_& m);  // device_array_bind.cpp
void bind_elementwise(py::module_& m);   // elementwise_bind.cpp

namespace {

using Pair = std::array<int64_t, 2>;
using py::arg;

// out= (no allocation on the hot path): `out` None -> a new array; otherwise a writable, contiguous
// array of exactly this dtype, device and shape, sharing no memory with the inputs (the kernels read
// their inputs while writing the output), which is returned as the result.
std::pair<py::object, Tensor> output(py::handle out, const Tensor& like, DType dtype, const std::vector<int64_t>& shape,
                                     const char* op, const char* name, std::initializer_list<const Tensor*> inputs) {
  if (out.is_none()) return new_array(like.device, dtype, shape);
  Tensor t = as_tensor(out, op, name, true);
  CONVKIT_CHECK(t.dtype == dtype, op, ": ", name, " must be ", dtype_name(dtype), ", got ", dtype_name(t.dtype));
  check_same_device(like, t, op, "the inputs", name);
  Tensor want;
  want.ndim = static_cast<int>(shape.size());
  for (int i = 0; i < want.ndim; ++i) want.shape[i] = shape[i];
  bool same = t.ndim == want.ndim;
  for (int i = 0; same && i < t.ndim; ++i) same = t.shape[i] == want.shape[i];
  CONVKIT_CHECK(same, op, ": ", name, " must have shape ", want.shape_str(), ", got ", t.shape_str());
  const char* b = static_cast<const char*>(t.data);
  for (const Tensor* in : inputs) {
    if (!in || !in->defined()) continue;
    const char* a = static_cast<const char*>(in->data);
    CONVKIT_CHECK(b + t.nbytes() <= a || a + in->nbytes() <= b, op, ": ", name,
                  " must not share memory with the inputs");
  }
  return {py::reinterpret_borrow<py::object>(out), t};
}

py::handle out_item(py::handle out, int i, const char* op) {
  if (out.is_none()) return out;
  CONVKIT_CHECK(py::isinstance<py::tuple>(out) && py::len(out) == 2, op, ": out must be a tuple of two arrays");
  return out.cast<py::tuple>()[i];
}

Conv2dParams conv_params(Pair stride, Pair padding, Pair dilation, int64_t groups) {
  Conv2dParams p;
  p.stride_h = stride[0], p.stride_w = stride[1];
  p.pad_h = padding[0], p.pad_w = padding[1];
  p.dil_h = dilation[0], p.dil_w = dilation[1];
  p.groups = groups;
  return p;
}

Pool2dParams pool_params(Pair kernel, Pair stride, Pair padding, bool ceil_mode) {
  Pool2dParams p;
  p.kernel_h = kernel[0], p.kernel_w = kernel[1];
  p.stride_h = stride[0], p.stride_w = stride[1];
  p.pad_h = padding[0], p.pad_w = padding[1];
  p.ceil_mode = ceil_mode;
  return p;
}

void bind_conv2d(py::module_& m) {
  m.def("conv2d_forward", [](py::object x, py::object w, py::object b, Pair stride, Pair padding, Pair dilation,
                             int64_t groups, py::object out) {
    const char* op = "conv2d_forward";
    Tensor tx = as_tensor(x, op, "x"), tw = as_tensor(w, op, "weight"), tb;
    bool has_b = as_optional_tensor(b, op, "bias", &tb);
    Conv2dParams p = conv_params(stride, padding, dilation, groups);
    check_ndim(tx, 4, op, "x", "[N, C, H, W]");
    check_ndim(tw, 4, op, "weight", "[OC, C/groups, KH, KW]");
    int64_t oh = conv2d_out_size(tx.shape[2], tw.shape[2], p.stride_h, p.pad_h, p.dil_h);
    int64_t ow = conv2d_out_size(tx.shape[3], tw.shape[3], p.stride_w, p.pad_w, p.dil_w);
    auto [y, ty] = output(out, tx, tx.dtype, {tx.shape[0], tw.shape[0], oh, ow}, op, "out", {&tx, &tw, &tb});
    py::gil_scoped_release nogil;
    conv2d_forward(tx, tw, has_b ? &tb : nullptr, ty, p);
    return y;
  }, arg("x"), arg("weight"), arg("bias"), arg("stride"), arg("padding"), arg("dilation"), arg("groups"),
     arg("out") = py::none());

  m.def("conv2d_backward_data", [](py::object dy, py::object w, std::vector<int64_t> x_shape, Pair stride,
                                   Pair padding, Pair dilation, int64_t groups) {
    const char* op = "conv2d_backward_data";
    Tensor tdy = as_tensor(dy, op, "dy"), tw = as_tensor(w, op, "weight");
    CONVKIT_CHECK(x_shape.size() == 4, op, ": x_shape must have 4 entries [N, C, H, W], got ", x_shape.size());
    for (int64_t s : x_shape) CONVKIT_CHECK(s > 0, op, ": x_shape entries must be > 0");
    auto [dx, tdx] = new_array_like(tdy, x_shape);
    py::gil_scoped_release nogil;
    conv2d_backward_data(tdy, tw, tdx, conv_params(stride, padding, dilation, groups));
    return dx;
  }, arg("dy"), arg("weight"), arg("x_shape"), arg("stride"), arg("padding"), arg("dilation"), arg("groups"));

  m.def("conv2d_backward_weight", [](py::object x, py::object dy, std::vector<int64_t> w_shape, Pair stride,
                                     Pair padding, Pair dilation, int64_t groups) {
    const char* op = "conv2d_backward_weight";
    Tensor tx = as_tensor(x, op, "x"), tdy = as_tensor(dy, op, "dy");
    CONVKIT_CHECK(w_shape.size() == 4, op, ": w_shape must have 4 entries [OC, C/groups, KH, KW], got ",
                  w_shape.size());
    for (int64_t s : w_shape) CONVKIT_CHECK(s > 0, op, ": w_shape entries must be > 0");
    auto [dw, tdw] = new_array_like(tx, w_shape);
    py::gil_scoped_release nogil;
    conv2d_backward_weight(tx, tdy, tdw, conv_params(stride, padding, dilation, groups));
    return dw;
  }, arg("x"), arg("dy"), arg("w_shape"), arg("stride"), arg("padding"), arg("dilation"), arg("groups"));

  m.def("conv2d_backward_bias", [](py::object dy) {
    const char* op = "conv2d_backward_bias";
    Tensor tdy = as_tensor(dy, op, "dy");
    check_ndim(tdy, 4, op, "dy", "[N, OC, OH, OW]");
    auto [db, tdb] = new_array_like(tdy, {tdy.shape[1]});
    py::gil_scoped_release nogil;
    conv2d_backward_bias(tdy, tdb);
    return db;
  }, arg("dy"));

  m.def("conv2d_out_size", &conv2d_out_size, arg("size"), arg("kernel"), arg("stride"), arg("padding"),
        arg("dilation"));
  m.def("_conv2d_set_cpu_impl", &conv2d_set_cpu_impl, arg("impl"),
        "Test hook: 'auto', 'ref', 'gemm' or 'direct' (see conv2d.h); returns the previous setting.");
}

void bind_pool(py::module_& m) {
  m.def("max_pool2d_forward", [](py::object x, Pair kernel, Pair stride, Pair padding, bool ceil_mode,
                                 py::object out) {
    const char* op = "max_pool2d_forward";
    Tensor tx = as_tensor(x, op, "x");
    Pool2dParams p = pool_params(kernel, stride, padding, ceil_mode);
    check_ndim(tx, 4, op, "x", "[N, C, H, W]");
    int64_t oh = pool2d_out_size(tx.shape[2], p.kernel_h, p.stride_h, p.pad_h, p.ceil_mode);
    int64_t ow = pool2d_out_size(tx.shape[3], p.kernel_w, p.stride_w, p.pad_w, p.ceil_mode);
    auto [y, ty] = output(out_item(out, 0, op), tx, tx.dtype, {tx.shape[0], tx.shape[1], oh, ow}, op, "out[0]", {&tx});
    auto [idx, tidx] = output(out_item(out, 1, op), tx, DType::Int64, {tx.shape[0], tx.shape[1], oh, ow}, op,
                              "out[1]", {&tx, &ty});
    {
      py::gil_scoped_release nogil;
      max_pool2d_forward(tx, ty, tidx, p);
    }
    return py::make_tuple(y, idx);
  }, arg("x"), arg("kernel"), arg("stride"), arg("padding"), arg("ceil_mode"), arg("out") = py::none());

  m.def("max_pool2d_backward", [](py::object dy, py::object idx, std::vector<int64_t> x_shape, Pair kernel,
                                  Pair stride, Pair padding, bool ceil_mode) {
    const char* op = "max_pool2d_backward";
    Tensor tdy = as_tensor(dy, op, "dy"), tidx = as_tensor(idx, op, "indices");
    CONVKIT_CHECK(x_shape.size() == 4, op, ": x_shape must have 4 entries [N, C, H, W], got ", x_shape.size());
    for (int64_t s : x_shape) CONVKIT_CHECK(s > 0, op, ": x_shape entries must be > 0");
    auto [dx, tdx] = new_array_like(tdy, x_shape);
    py::gil_scoped_release nogil;
    max_pool2d_backward(tdy, tidx, tdx, pool_params(kernel, stride, padding, ceil_mode));
    return dx;
  }, arg("dy"), arg("indices"), arg("x_shape"), arg("kernel"), arg("stride"), arg("padding"), arg("ceil_mode"));

  m.def("pool2d_out_size", &pool2d_out_size, arg("size"), arg("kernel"), arg("stride"), arg("padding"),
        arg("ceil_mode"));
}

void bind_lrn(py::module_& m) {
  m.def("lrn_forward", [](py::object x, int64_t size, double alpha, double beta, double k, py::object out) {
    const char* op = "lrn_forward";
    Tensor tx = as_tensor(x, op, "x");
    LrnParams p{size, alpha, beta, k};
    auto [y, ty] = output(out_item(out, 0, op), tx, tx.dtype, shape_of(tx), op, "out[0]", {&tx});
    auto [s, ts] = output(out_item(out, 1, op), tx, tx.dtype, shape_of(tx), op, "out[1]", {&tx, &ty});
    {
      py::gil_scoped_release nogil;
      lrn_forward(tx, ty, ts, p);
    }
    return py::make_tuple(y, s);
  }, arg("x"), arg("size"), arg("alpha"), arg("beta"), arg("k"), arg("out") = py::none());

  m.def("lrn_backward", [](py::object x, py::object y, py::object scale, py::object dy, int64_t size, double alpha,
                           double beta, double k, py::object out) {
    const char* op = "lrn_backward";
    Tensor tx = as_tensor(x, op, "x"), ty = as_tensor(y, op, "y"), ts = as_tensor(scale, op, "scale"),
           tdy = as_tensor(dy, op, "dy");
    auto [dx, tdx] = output(out, tx, tx.dtype, shape_of(tx), op, "out", {&tx, &ty, &ts, &tdy});
    py::gil_scoped_release nogil;
    lrn_backward(tx, ty, ts, tdy, tdx, LrnParams{size, alpha, beta, k});
    return dx;
  }, arg("x"), arg("y"), arg("scale"), arg("dy"), arg("size"), arg("alpha"), arg("beta"), arg("k"),
     arg("out") = py::none());
}

void bind_linear(py::module_& m) {
  m.def("linear_forward", [](py::object x, py::object w, py::object b, py::object out) {
    const char* op = "linear_forward";
    Tensor tx = as_tensor(x, op, "x"), tw = as_tensor(w, op, "weight"), tb;
    bool has_b = as_optional_tensor(b, op, "bias", &tb);
    check_ndim(tx, 2, op, "x", "[N, IN]");
    check_ndim(tw, 2, op, "weight", "[OUT, IN]");
    auto [y, ty] = output(out, tx, tx.dtype, {tx.shape[0], tw.shape[0]}, op, "out", {&tx, &tw, &tb});
    py::gil_scoped_release nogil;
    linear_forward(tx, tw, has_b ? &tb : nullptr, ty);
    return y;
  }, arg("x"), arg("weight"), arg("bias"), arg("out") = py::none());

  m.def("linear_backward_data", [](py::object dy, py::object w, py::object out) {
    const char* op = "linear_backward_data";
    Tensor tdy = as_tensor(dy, op, "dy"), tw = as_tensor(w, op, "weight");
    check_ndim(tdy, 2, op, "dy", "[N, OUT]");
    check_ndim(tw, 2, op, "weight", "[OUT, IN]");
    auto [dx, tdx] = output(out, tdy, tdy.dtype, {tdy.shape[0], tw.shape[1]}, op, "out", {&tdy, &tw});
    py::gil_scoped_release nogil;
    linear_backward_data(tdy, tw, tdx);
    return dx;
  }, arg("dy"), arg("weight"), arg("out") = py::none());

  m.def("linear_backward_weight", [](py::object x, py::object dy, py::object out) {
    const char* op = "linear_backward_weight";
    Tensor tx = as_tensor(x, op, "x"), tdy = as_tensor(dy, op, "dy");
    check_ndim(tx, 2, op, "x", "[N, IN]");
    check_ndim(tdy, 2, op, "dy", "[N, OUT]");
    auto [dw, tdw] = output(out, tx, tx.dtype, {tdy.shape[1], tx.shape[1]}, op, "out", {&tx, &tdy});
    py::gil_scoped_release nogil;
    linear_backward_weight(tx, tdy, tdw);
    return dw;
  }, arg("x"), arg("dy"), arg("out") = py::none());

  m.def("linear_backward_bias", [](py::object dy) {
    const char* op = "linear_backward_bias";
    Tensor tdy = as_tensor(dy, op, "dy");
    check_ndim(tdy, 2, op, "dy", "[N, OUT]");
    auto [db, tdb] = new_array_like(tdy, {tdy.shape[1]});
    py::gil_scoped_release nogil;
    linear_backward_bias(tdy, tdb);
    return db;
  }, arg("dy"));
}

void bind_activation(py::module_& m) {
  m.def("relu_forward", [](py::object x) {
    Tensor tx = as_tensor(x, "relu_forward", "x");
    auto [y, ty] = new_array_like(tx, shape_of(tx));
    py::gil_scoped_release nogil;
    relu_forward(tx, ty);
    return y;
  }, arg("x"));
  m.def("relu_backward", [](py::object dy, py::object y) {
    Tensor tdy = as_tensor(dy, "relu_backward", "dy"), ty = as_tensor(y, "relu_backward", "y");
    auto [dx, tdx] = new_array_like(ty, shape_of(ty));
    py::gil_scoped_release nogil;
    relu_backward(tdy, ty, tdx);
    return dx;
  }, arg("dy"), arg("y"));
  m.def("dropout_forward", [](py::object x, double p, uint64_t seed) {
    Tensor tx = as_tensor(x, "dropout_forward", "x");
    auto [y, ty] = new_array_like(tx, shape_of(tx));
    auto [mask, tm] = new_array(tx.device, DType::UInt8, shape_of(tx));
    {
      py::gil_scoped_release nogil;
      dropout_forward(tx, ty, tm, p, seed);
    }
    return py::make_tuple(y, mask);
  }, arg("x"), arg("p"), arg("seed"));
  m.def("dropout_backward", [](py::object dy, py::object mask, double p) {
    Tensor tdy = as_tensor(dy, "dropout_backward", "dy"), tm = as_tensor(mask, "dropout_backward", "mask");
    auto [dx, tdx] = new_array_like(tdy, shape_of(tdy));
    py::gil_scoped_release nogil;
    dropout_backward(tdy, tm, tdx, p);
    return dx;
  }, arg("dy"), arg("mask"), arg("p"));
}

template <void (*Fwd)(const Tensor&, const Tensor&)>
py::object rowwise_forward(py::object x, const char* op) {
  Tensor tx = as_tensor(x, op, "x");
  auto [y, ty] = new_array_like(tx, shape_of(tx));
  py::gil_scoped_release nogil;
  Fwd(tx, ty);
  return y;
}

template <void (*Bwd)(const Tensor&, const Tensor&, const Tensor&)>
py::object rowwise_backward(py::object y, py::object dy, const char* op) {
  Tensor ty = as_tensor(y, op, "y"), tdy = as_tensor(dy, op, "dy");
  auto [dx, tdx] = new_array_like(ty, shape_of(ty));
  py::gil_scoped_release nogil;
  Bwd(ty, tdy, tdx);
  return dx;
}

void bind_softmax(py::module_& m) {
  m.def("softmax_forward", [](py::object x) { return rowwise_forward<softmax_forward>(x, "softmax_forward"); },
        arg("x"));
  m.def("softmax_backward", [](py::object y, py::object dy) {
    return rowwise_backward<softmax_backward>(y, dy, "softmax_backward");
  }, arg("y"), arg("dy"));
  m.def("log_softmax_forward", [](py::object x) {
    return rowwise_forward<log_softmax_forward>(x, "log_softmax_forward");
  }, arg("x"));
  m.def("log_softmax_backward", [](py::object y, py::object dy) {
    return rowwise_backward<log_softmax_backward>(y, dy, "log_softmax_backward");
  }, arg("y"), arg("dy"));
  m.def("softmax_cross_entropy_forward", [](py::object logits, py::object labels) {
    const char* op = "softmax_cross_entropy_forward";
    Tensor tl = as_tensor(logits, op, "logits"), tlab = as_tensor(labels, op, "labels");
    check_ndim(tl, 2, op, "logits", "[N, K]");
    auto [loss, tloss] = new_array_like(tl, {tl.shape[0]});
    auto [probs, tp] = new_array_like(tl, shape_of(tl));
    {
      py::gil_scoped_release nogil;
      softmax_cross_entropy_forward(tl, tlab, tloss, tp);
    }
    return py::make_tuple(loss, probs);
  }, arg("logits"), arg("labels"));
  m.def("softmax_cross_entropy_backward", [](py::object probs, py::object labels, py::object dloss) {
    const char* op = "softmax_cross_entropy_backward";
    Tensor tp = as_tensor(probs, op, "probs"), tlab = as_tensor(labels, op, "labels"),
           tdl = as_tensor(dloss, op, "dloss");
    auto [dx, tdx] = new_array_like(tp, shape_of(tp));
    py::gil_scoped_release nogil;
    softmax_cross_entropy_backward(tp, tlab, tdl, tdx);
    return dx;
  }, arg("probs"), arg("labels"), arg("dloss"));
}

void bind_runtime(py::module_& m) {
  m.attr("__version__") = CONVKIT_VERSION;
  m.def("num_threads", &num_threads);
  m.def("set_num_threads", &set_num_threads, arg("n"));
  m.def("_array_cache_bytes", &array_cache_bytes,
        "Bytes of freed output-array blocks kept for reuse (see csrc/bind_util.cpp).");
  m.def("_array_cache_clear", &array_cache_clear, "Return every cached output-array block to the system.");
  m.def("cpu_isa", [] { return std::string(isa_name(cpu_isa())); });
  m.def("route_isa", [] { return std::string(isa_name(route_isa())); });
  m.def("isa_request_problem", &isa_request_problem);
  m.def("compiler", [] { return std::string(CONVKIT_CXX_COMPILER); });
  m.def("sanitized", [] { return kAddressSanitized; });  // timings of such a build mean nothing
  m.def("cuda_compiled", &cuda_compiled);
  m.def("cuda_device_count", [] {
    std::string reason;
    int n = cuda_device_count(&reason);
    return py::make_tuple(n, reason);
  });
  m.def("cuda_device_name", &cuda_device_name, arg("device") = 0);
  m.def("cuda_synchronize", [] {
    py::gil_scoped_release nogil;
    cuda_synchronize();
  });
  m.def("cuda_current_stream", [] { return reinterpret_cast<uintptr_t>(cuda_current_stream()); });
  m.def("set_cuda_stream", [](uintptr_t s) { set_cuda_stream(reinterpret_cast<void*>(s)); }, arg("stream"));
}

// Test hook (tests/test_gemm.py): C = alpha * op(A) @ op(B) + beta * C through convkit::gemm, with
// A, B, C C-contiguous numpy buffers of one float dtype viewed as strided row-major matrices (lda,
// ldb, ldc); C is updated in place. Checks that each buffer holds what the strides reach.
void bind_gemm_test_hook(py::module_& m) {
  m.def("_gemm", [](bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, py::object A,
                    int64_t lda, py::object B, int64_t ldb, double beta, py::object C, int64_t ldc, int threads) {
    const char* op = "_gemm";
    Tensor ta = as_tensor(A, op, "A"), tb = as_tensor(B, op, "B"), tc = as_tensor(C, op, "C", true);
    CONVKIT_CHECK(ta.device == Device::CPU && tb.device == Device::CPU && tc.device == Device::CPU, op,
                  ": A, B and C must be numpy arrays");
    check_float(ta, op, "A");
    check_dtype(tb, ta.dtype, op, "B");
    check_dtype(tc, ta.dtype, op, "C");
    // Sizes and leading dimensions themselves are gemm's to check (it throws before any access).
    auto check_holds = [&](const Tensor& t, const char* name, int64_t rows, int64_t cols, int64_t ld) {
      if (rows <= 0 || cols <= 0 || ld < 1) return;
      int64_t need = checked_mul(rows - 1, ld, op) + cols;
      CONVKIT_CHECK(t.numel() >= need, op, ": ", name, " holds ", t.numel(), " elements, the strides reach ", need);
    };
    if (M > 0 && N > 0 && K > 0) {
      check_holds(ta, "A", trans_a ? K : M, trans_a ? M : K, lda);
      check_holds(tb, "B", trans_b ? N : K, trans_b ? K : N, ldb);
    }
    check_holds(tc, "C", M, N, ldc);
    py::gil_scoped_release nogil;
    CONVKIT_DISPATCH_FLOAT(ta.dtype, op, [&] {
      gemm<scalar_t>(trans_a, trans_b, M, N, K, static_cast<scalar_t>(alpha), ta.ptr<scalar_t>(), lda,
                     tb.ptr<scalar_t>(), ldb, static_cast<scalar_t>(beta), tc.ptr<scalar_t>(), ldc, threads);
    });
  }, arg("trans_a"), arg("trans_b"), arg("M"), arg("N"), arg("K"), arg("alpha"), arg("A"), arg("lda"), arg("B"),
     arg("ldb"), arg("beta"), arg("C"), arg("ldc"), arg("threads") = 0);
  m.def("_fma_peak", [](int threads, int64_t iters) {
    py::gil_scoped_release nogil;
    return fma_peak_gflops(threads, iters);
  }, arg("threads") = 0, arg("iters") = 10000000,
     "Bench hook: measured FP32 FMA throughput (GFLOP/s) on `threads` threads (see gemm.h).");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "convkit's compiled core: CPU (and, when built with nvcc, CUDA) kernels";
  bind_runtime(m);
  bind_device_array(m);
  bind_conv2d(m);
  bind_pool(m);
  bind_lrn(m);
  bind_linear(m);
  bind_activation(m);
  bind_softmax(m);
  bind_gemm_test_hook(m);
  bind_elementwise(m);
}
