// Binding of the elementwise ops, reductions, fills, casts and optimizer updates (ops/elementwise.h),
// and of the CUDA runtime extras (caching allocator, entry-point probe). Called from PYBIND11_MODULE
// in bind.cpp. Arrays are numpy arrays (CPU) or DeviceArray (CUDA); outputs are allocated on the
// input's device unless `out` is given (then it is overwritten and returned).
#include <pybind11/stl.h>

#include <functional>
#include <map>
#include <string>

#include "bind_util.h"
#include "convkit/runtime.h"
#include "device_array.h"
#include "ops/activation.h"
#include "ops/conv2d.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/lrn.h"
#include "ops/max_pool2d.h"
#include "ops/softmax.h"

namespace py = pybind11;
using namespace convkit;

namespace {

using py::arg;

std::pair<py::object, Tensor> output_for(py::object out, const Tensor& like, DType dtype, const char* op) {
  if (out.is_none()) return new_array(like.device, dtype, shape_of(like));
  Tensor t = as_tensor(out, op, "out", /*writable=*/true);
  return {out, t};
}

#ifdef CONVKIT_WITH_CUDA
// Calls one *_cuda entry point with views that claim to live on the device but point nowhere. Only
// allowed when no device is usable: then every entry point must raise a RuntimeError naming its op
// before it touches anything (tests/test_cuda_errors.py).
const std::map<std::string, std::function<void()>>& cuda_entry_points() {
  static const std::map<std::string, std::function<void()>> calls = [] {
    auto fake = [](std::initializer_list<int64_t> shape, DType dt = DType::Float32) {
      Tensor t;
      t.device = Device::CUDA;
      t.dtype = dt;
      t.ndim = static_cast<int>(shape.size());
      int i = 0;
      for (int64_t s : shape) t.shape[i++] = s;
      t.data = reinterpret_cast<void*>(uintptr_t(0x1000));  // never dereferenced
      return t;
    };
    Tensor x = fake({2, 4, 6, 6}), w = fake({4, 2, 3, 3}), b = fake({4}), y = fake({2, 4, 4, 4});
    Tensor idx = fake({2, 4, 3, 3}, DType::Int64), py_ = fake({2, 4, 3, 3}), m8 = fake({2, 4, 6, 6}, DType::UInt8);
    Tensor x2 = fake({3, 5}), w2 = fake({7, 5}), y2 = fake({3, 7}), lab = fake({3}, DType::Int64), loss = fake({3});
    Tensor one = fake({1});
    Conv2dParams cp;
    cp.groups = 2;
    Pool2dParams pp;
    pp.kernel_h = pp.kernel_w = 2;
    pp.stride_h = pp.stride_w = 2;
    LrnParams lp;
    std::map<std::string, std::function<void()>> m;
    m["relu_forward"] = [=] { relu_forward_cuda(x, x); };
    m["relu_backward"] = [=] { relu_backward_cuda(x, x, x); };
    m["dropout_forward"] = [=] { dropout_forward_cuda(x, x, m8, 0.5, 1); };
    m["dropout_backward"] = [=] { dropout_backward_cuda(x, m8, x, 0.5); };
    m["conv2d_forward"] = [=] { conv2d_forward_cuda(x, w, &b, y, cp); };
    m["conv2d_backward_data"] = [=] { conv2d_backward_data_cuda(y, w, x, cp); };
    m["conv2d_backward_weight"] = [=] { conv2d_backward_weight_cuda(x, y, w, cp); };
    m["conv2d_backward_bias"] = [=] { conv2d_backward_bias_cuda(y, b); };
    m["max_pool2d_forward"] = [=] { max_pool2d_forward_cuda(x, py_, idx, pp); };
    m["max_pool2d_backward"] = [=] { max_pool2d_backward_cuda(py_, idx, x, pp); };
    m["lrn_forward"] = [=] { lrn_forward_cuda(x, x, x, lp); };
    m["lrn_backward"] = [=] { lrn_backward_cuda(x, x, x, x, x, lp); };
    m["linear_forward"] = [=] { linear_forward_cuda(x2, w2, nullptr, y2); };
    m["linear_backward_data"] = [=] { linear_backward_data_cuda(y2, w2, x2); };
    m["linear_backward_weight"] = [=] { linear_backward_weight_cuda(x2, y2, w2); };
    m["linear_backward_bias"] = [=] { linear_backward_bias_cuda(y2, fake({7})); };
    m["softmax_forward"] = [=] { softmax_forward_cuda(x2, x2); };
    m["softmax_backward"] = [=] { softmax_backward_cuda(x2, x2, x2); };
    m["log_softmax_forward"] = [=] { log_softmax_forward_cuda(x2, x2); };
    m["log_softmax_backward"] = [=] { log_softmax_backward_cuda(x2, x2, x2); };
    m["softmax_cross_entropy_forward"] = [=] { softmax_cross_entropy_forward_cuda(x2, lab, loss, x2); };
    m["softmax_cross_entropy_backward"] = [=] { softmax_cross_entropy_backward_cuda(x2, lab, loss, x2); };
    m["neg"] = [=] { unary_op_cuda(UnaryOp::Neg, x, x, 0, 0); };
    m["add"] = [=] { binary_op_cuda(BinaryOp::Add, x, x, x); };
    m["sum"] = [=] { reduce_all_cuda(ReduceOp::Sum, x, one); };
    m["fill"] = [=] { fill_cuda(x, 1.0); };
    m["astype"] = [=] { cast_cuda(x, fake({2, 4, 6, 6}, DType::Float64)); };
    m["sgd_update"] = [=] { sgd_update_cuda(x, x, &x, 0.1, 0.9, 0, 0, false, false); };
    m["adam_update"] = [=] { adam_update_cuda(x, x, x, x, 0.1, 0.9, 0.999, 1e-8, 0, 0.1, 0.1, false); };
    return m;
  }();
  return calls;
}
#endif

}  // namespace

void bind_elementwise(py::module_& m) {
  py::dict unary_codes, binary_codes, reduce_codes;
  for (int i = 0; i < static_cast<int>(UnaryOp::Count); ++i) unary_codes[unary_op_name(static_cast<UnaryOp>(i))] = i;
  for (int i = 0; i < static_cast<int>(BinaryOp::Count); ++i)
    binary_codes[binary_op_name(static_cast<BinaryOp>(i))] = i;
  for (int i = 0; i < static_cast<int>(ReduceOp::Count); ++i)
    reduce_codes[reduce_op_name(static_cast<ReduceOp>(i))] = i;
  m.attr("UNARY_OPS") = unary_codes;
  m.attr("BINARY_OPS") = binary_codes;
  m.attr("REDUCE_OPS") = reduce_codes;

  m.def("unary_op", [](int op, py::object x, double a, double b, py::object out) {
    const char* name = unary_op_name(static_cast<UnaryOp>(op));
    Tensor tx = as_tensor(x, name, "x");
    auto [o, to] = output_for(out, tx, tx.dtype, name);
    py::gil_scoped_release nogil;
    unary_op(static_cast<UnaryOp>(op), tx, to, a, b);
    return o;
  }, arg("op"), arg("x"), arg("a") = 0.0, arg("b") = 0.0, arg("out") = py::none());

  m.def("binary_op", [](int op, py::object x, py::object y, py::object out) {
    const char* name = binary_op_name(static_cast<BinaryOp>(op));
    Tensor tx = as_tensor(x, name, "x"), ty = as_tensor(y, name, "y");
    auto [o, to] = output_for(out, tx, tx.dtype, name);
    py::gil_scoped_release nogil;
    binary_op(static_cast<BinaryOp>(op), tx, ty, to);
    return o;
  }, arg("op"), arg("x"), arg("y"), arg("out") = py::none());

  m.def("reduce_all", [](int op, py::object x) {
    const char* name = reduce_op_name(static_cast<ReduceOp>(op));
    Tensor tx = as_tensor(x, name, "x");
    auto [o, to] = new_array(tx.device, tx.dtype, {});
    py::gil_scoped_release nogil;
    reduce_all(static_cast<ReduceOp>(op), tx, to);
    return o;
  }, arg("op"), arg("x"), "Reduce over all elements; returns a 0-d array on x's device.");

  m.def("fill_", [](py::object x, double value) {
    Tensor tx = as_tensor(x, "fill", "x", /*writable=*/true);
    py::gil_scoped_release nogil;
    fill(tx, value);
  }, arg("x"), arg("value"));

  m.def("astype", [](py::object x, py::object dtype) {
    Tensor tx = as_tensor(x, "astype", "x");
    py::dtype want = py::dtype::from_args(dtype);
    DType dt;
    if (want.kind() == 'f' && want.itemsize() == 4) dt = DType::Float32;
    else if (want.kind() == 'f' && want.itemsize() == 8) dt = DType::Float64;
    else if (want.kind() == 'i' && want.itemsize() == 8) dt = DType::Int64;
    else if (want.kind() == 'u' && want.itemsize() == 1) dt = DType::UInt8;
    else throw py::type_error(str_cat("astype: unsupported dtype ", std::string(py::str(want)),
                                      "; convkit arrays are float32, float64, int64 or uint8"));
    auto [o, to] = new_array(tx.device, dt, shape_of(tx));
    py::gil_scoped_release nogil;
    cast(tx, to);
    return o;
  }, arg("x"), arg("dtype"));

  m.def("sgd_update", [](py::object param, py::object grad, py::object buf, double lr, double momentum,
                         double dampening, double weight_decay, bool nesterov, bool first_step) {
    const char* op = "sgd_update";
    Tensor tp = as_tensor(param, op, "param", true), tg = as_tensor(grad, op, "grad"), tb;
    bool has_buf = !buf.is_none();
    if (has_buf) tb = as_tensor(buf, op, "momentum_buffer", true);
    py::gil_scoped_release nogil;
    sgd_update(tp, tg, has_buf ? &tb : nullptr, lr, momentum, dampening, weight_decay, nesterov, first_step);
  }, arg("param"), arg("grad"), arg("momentum_buffer"), arg("lr"), arg("momentum") = 0.0, arg("dampening") = 0.0,
     arg("weight_decay") = 0.0, arg("nesterov") = false, arg("first_step") = false,
     "One fused SGD step (PyTorch's semantics), in place on param and momentum_buffer.");

  m.def("adam_update", [](py::object param, py::object grad, py::object exp_avg, py::object exp_avg_sq, double lr,
                          double beta1, double beta2, double eps, double weight_decay, int64_t step, bool decoupled) {
    const char* op = "adam_update";
    Tensor tp = as_tensor(param, op, "param", true), tg = as_tensor(grad, op, "grad"),
           tm = as_tensor(exp_avg, op, "exp_avg", true), tv = as_tensor(exp_avg_sq, op, "exp_avg_sq", true);
    py::gil_scoped_release nogil;
    adam_update(tp, tg, tm, tv, lr, beta1, beta2, eps, weight_decay, step, decoupled);
  }, arg("param"), arg("grad"), arg("exp_avg"), arg("exp_avg_sq"), arg("lr"), arg("beta1") = 0.9,
     arg("beta2") = 0.999, arg("eps") = 1e-8, arg("weight_decay") = 0.0, arg("step") = 1, arg("decoupled") = false,
     "One fused Adam (decoupled=True: AdamW) step (PyTorch's semantics), in place on param, exp_avg, exp_avg_sq.");

  m.def("cuda_empty_cache", [] {
    py::gil_scoped_release nogil;
    cuda_empty_cache();
  }, "Give the device memory convkit keeps cached for reuse back to the driver.");
  m.def("cuda_cached_bytes", &cuda_cached_bytes, "Bytes of device memory held in convkit's cache, unused.");

  m.def("_cuda_entry_points", [] {
    std::vector<std::string> names;
#ifdef CONVKIT_WITH_CUDA
    for (auto& kv : cuda_entry_points()) names.push_back(kv.first);
#endif
    return names;
  }, "Test hook: names of the CUDA entry points _cuda_probe can call.");
  m.def("_cuda_probe", [](const std::string& name) {
#ifdef CONVKIT_WITH_CUDA
    std::string reason;
    if (cuda_device_count(&reason) > 0)
      throw std::logic_error("_cuda_probe: a CUDA device is usable; the probe only runs without one");
    auto it = cuda_entry_points().find(name);
    if (it == cuda_entry_points().end()) throw py::key_error(name);
    it->second();
#else
    throw_no_cuda(name.c_str());
#endif
  }, arg("name"), "Test hook: call one CUDA entry point with fake device views (only without a usable device).");
}
