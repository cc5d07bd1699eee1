// Elementwise ops, reductions, fills, casts and optimizer updates: checks, device dispatch and the CPU
// kernels (formulas and conventions in elementwise.h). CPU decomposition: the flat array is split into
// one contiguous chunk per thread. Reductions sum fixed 4096-element blocks (each in order, in double)
// and then the block results in order, so the result does not depend on the thread count.
#include "ops/elementwise.h"

#include <cmath>
#include <vector>

#include "convkit/parallel.h"

namespace convkit {
namespace {

constexpr int64_t kGrain = 1 << 15;       // elements per thread before threading pays off
constexpr int64_t kReduceBlock = 4096;    // reduction block: fixed, so results never depend on threads

bool same_shape(const Tensor& a, const Tensor& b) {
  if (a.ndim != b.ndim) return false;
  for (int i = 0; i < a.ndim; ++i)
    if (a.shape[i] != b.shape[i]) return false;
  return true;
}

void check_like(const char* op, const Tensor& ref, const char* nref, const Tensor& t, const char* nt) {
  check_same_device(ref, t, op, nref, nt);
  CONVKIT_CHECK(same_shape(ref, t), op, ": ", nt, " must have the shape of ", nref, " ", ref.shape_str(), ", got ",
                t.shape_str());
  CONVKIT_CHECK(t.dtype == ref.dtype, op, ": ", nt, " has dtype ", dtype_name(t.dtype), " but ", nref, " has ",
                dtype_name(ref.dtype), "; they must match");
  CONVKIT_CHECK(t.numel() == 0 || t.data != nullptr, op, ": ", nt, " has no data");
}

void check_input(const char* op, const Tensor& x, const char* name) {
  check_float(x, op, name);
  CONVKIT_CHECK(x.numel() == 0 || x.data != nullptr, op, ": ", name, " has no data");
}

template <class T> T as(double v) { return static_cast<T>(v); }

}  // namespace

const char* unary_op_name(UnaryOp op) {
  static const char* names[] = {"neg", "abs", "sign", "sqrt", "exp", "log", "square", "clip", "maximum",
                                "minimum", "add", "subtract", "rsubtract", "multiply", "divide", "rdivide",
                                "power"};
  int i = static_cast<int>(op);
  return i >= 0 && i < static_cast<int>(UnaryOp::Count) ? names[i] : "unknown";
}
const char* binary_op_name(BinaryOp op) {
  static const char* names[] = {"add", "subtract", "multiply", "divide", "maximum", "minimum"};
  int i = static_cast<int>(op);
  return i >= 0 && i < static_cast<int>(BinaryOp::Count) ? names[i] : "unknown";
}
const char* reduce_op_name(ReduceOp op) {
  static const char* names[] = {"sum", "mean", "max", "min"};
  int i = static_cast<int>(op);
  return i >= 0 && i < static_cast<int>(ReduceOp::Count) ? names[i] : "unknown";
}

// ---- checked entry points ---------------------------------------------------------------------------------

void unary_op(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b) {
  const char* name = unary_op_name(op);
  CONVKIT_CHECK(static_cast<int>(op) >= 0 && op < UnaryOp::Count, "unary_op: unknown op code ",
                static_cast<int>(op));
  check_input(name, x, "x");
  check_like(name, x, "x", out, "out");
  if (op == UnaryOp::Clip)
    CONVKIT_CHECK(!(a > b), "clip: lower bound ", a, " must be <= upper bound ", b);
  if (x.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(name, unary_op_cuda(op, x, out, a, b));
    return;
  }
  unary_op_cpu(op, x, out, a, b);
}

void binary_op(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out) {
  const char* name = binary_op_name(op);
  CONVKIT_CHECK(static_cast<int>(op) >= 0 && op < BinaryOp::Count, "binary_op: unknown op code ",
                static_cast<int>(op));
  check_input(name, x, "x");
  check_like(name, x, "x", y, "y");
  check_like(name, x, "x", out, "out");
  if (x.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(name, binary_op_cuda(op, x, y, out));
    return;
  }
  binary_op_cpu(op, x, y, out);
}

void reduce_all(ReduceOp op, const Tensor& x, const Tensor& out) {
  const char* name = reduce_op_name(op);
  CONVKIT_CHECK(static_cast<int>(op) >= 0 && op < ReduceOp::Count, "reduce: unknown op code ",
                static_cast<int>(op));
  check_input(name, x, "x");
  check_same_device(x, out, name, "x", "out");
  CONVKIT_CHECK(out.dtype == x.dtype, name, ": out must have x's dtype ", dtype_name(x.dtype), ", got ",
                dtype_name(out.dtype));
  CONVKIT_CHECK(out.numel() == 1 && out.data != nullptr, name, ": out must hold one element, got shape ",
                out.shape_str());
  if (op == ReduceOp::Max || op == ReduceOp::Min || op == ReduceOp::Mean)
    CONVKIT_CHECK(x.numel() > 0, name, ": x is empty (shape ", x.shape_str(), "); ", name,
                  " of no elements is undefined");
  if (x.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(name, reduce_all_cuda(op, x, out));
    return;
  }
  reduce_all_cpu(op, x, out);
}

void fill(const Tensor& x, double value) {
  CONVKIT_CHECK(x.numel() == 0 || x.data != nullptr, "fill: x has no data");
  if (x.dtype == DType::Int64 || x.dtype == DType::UInt8)
    CONVKIT_CHECK(std::isfinite(value) && value == std::floor(value), "fill: value ", value,
                  " is not an integer, but x has dtype ", dtype_name(x.dtype));
  if (x.dtype == DType::UInt8)
    CONVKIT_CHECK(value >= 0 && value <= 255, "fill: value ", value, " does not fit in uint8");
  if (x.dtype == DType::Int64)
    CONVKIT_CHECK(value >= -9223372036854775808.0 && value < 9223372036854775808.0, "fill: value ", value,
                  " does not fit in int64");
  if (x.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW("fill", fill_cuda(x, value));
    return;
  }
  fill_cpu(x, value);
}

void cast(const Tensor& x, const Tensor& out) {
  check_same_device(x, out, "astype", "x", "out");
  CONVKIT_CHECK(same_shape(x, out), "astype: out must have the shape of x ", x.shape_str(), ", got ",
                out.shape_str());
  CONVKIT_CHECK(x.numel() == 0 || (x.data != nullptr && out.data != nullptr), "astype: array has no data");
  if (x.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW("astype", cast_cuda(x, out));
    return;
  }
  cast_cpu(x, out);
}

namespace {
void check_hyper(const char* op, const char* name, double v, double lo, double hi, bool hi_open = false) {
  CONVKIT_CHECK(std::isfinite(v) && v >= lo && (hi_open ? v < hi : v <= hi), op, ": ", name, " must be in [", lo,
                ", ", hi, hi_open ? ")" : "]", ", got ", v);
}
}  // namespace

void sgd_update(const Tensor& param, const Tensor& grad, const Tensor* buf, double lr, double momentum,
                double dampening, double weight_decay, bool nesterov, bool first_step) {
  const char* op = "sgd_update";
  check_input(op, param, "param");
  check_like(op, param, "param", grad, "grad");
  check_hyper(op, "lr", lr, 0, 1e300);
  check_hyper(op, "momentum", momentum, 0, 1e300);
  check_hyper(op, "dampening", dampening, 0, 1);
  check_hyper(op, "weight_decay", weight_decay, 0, 1e300);
  CONVKIT_CHECK(!nesterov || (momentum > 0 && dampening == 0), op,
                ": nesterov needs momentum > 0 and dampening == 0 (as in PyTorch)");
  CONVKIT_CHECK((momentum != 0) == (buf != nullptr), op,
                momentum != 0 ? ": momentum != 0 needs a momentum buffer" : ": a momentum buffer was given but "
                                                                            "momentum is 0");
  if (buf) check_like(op, param, "param", *buf, "momentum_buffer");
  if (param.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, sgd_update_cuda(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov,
                                              first_step));
    return;
  }
  sgd_update_cpu(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first_step);
}

void adam_update(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, double lr, double beta1,
                 double beta2, double eps, double weight_decay, int64_t step, bool decoupled) {
  const char* op = "adam_update";
  check_input(op, param, "param");
  check_like(op, param, "param", grad, "grad");
  check_like(op, param, "param", m, "exp_avg");
  check_like(op, param, "param", v, "exp_avg_sq");
  check_hyper(op, "lr", lr, 0, 1e300);
  check_hyper(op, "beta1", beta1, 0, 1, true);
  check_hyper(op, "beta2", beta2, 0, 1, true);
  check_hyper(op, "eps", eps, 0, 1e300);
  check_hyper(op, "weight_decay", weight_decay, 0, 1e300);
  CONVKIT_CHECK(step >= 1, op, ": step must be >= 1 (the first update is step 1), got ", step);
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  const double step_size = lr / bc1, bc2_sqrt = std::sqrt(bc2);
  if (param.device == Device::CUDA) {
    CONVKIT_CUDA_OR_THROW(op, adam_update_cuda(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step_size,
                                               bc2_sqrt, decoupled));
    return;
  }
  adam_update_cpu(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step_size, bc2_sqrt, decoupled);
}

// ---- CPU kernels ----------------------------------------------------------------------------------------------

void unary_op_cpu(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b) {
  CONVKIT_DISPATCH_FLOAT(x.dtype, unary_op_name(op), [&] {
    const scalar_t* xs = x.ptr<scalar_t>();
    scalar_t* ys = out.ptr<scalar_t>();
    const scalar_t sa = as<scalar_t>(a), sb = as<scalar_t>(b);
    dispatch_op<static_cast<int>(UnaryOp::Count)>(static_cast<int>(op), [&](auto opc) {
      constexpr int OP = decltype(opc)::value;
      parallel_for(x.numel(), kGrain, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) ys[i] = ew::unary<OP, scalar_t>(xs[i], sa, sb);
      });
    });
  });
}

void binary_op_cpu(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out) {
  CONVKIT_DISPATCH_FLOAT(x.dtype, binary_op_name(op), [&] {
    const scalar_t* xs = x.ptr<scalar_t>();
    const scalar_t* ys = y.ptr<scalar_t>();
    scalar_t* os = out.ptr<scalar_t>();
    dispatch_op<static_cast<int>(BinaryOp::Count)>(static_cast<int>(op), [&](auto opc) {
      constexpr int OP = decltype(opc)::value;
      parallel_for(x.numel(), kGrain, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) os[i] = ew::binary<OP, scalar_t>(xs[i], ys[i]);
      });
    });
  });
}

void reduce_all_cpu(ReduceOp op, const Tensor& x, const Tensor& out) {
  CONVKIT_DISPATCH_FLOAT(x.dtype, reduce_op_name(op), [&] {
    const scalar_t* xs = x.ptr<scalar_t>();
    const int64_t n = x.numel();
    const int64_t nblocks = (n + kReduceBlock - 1) / kReduceBlock;
    std::vector<double> part(static_cast<std::size_t>(nblocks > 0 ? nblocks : 1));
    const bool is_max = op == ReduceOp::Max, is_min = op == ReduceOp::Min;
    parallel_for(nblocks, 16, [&](int64_t b0, int64_t b1) {
      for (int64_t blk = b0; blk < b1; ++blk) {
        int64_t lo = blk * kReduceBlock, hi = lo + kReduceBlock < n ? lo + kReduceBlock : n;
        double acc = (is_max || is_min) ? static_cast<double>(xs[lo]) : 0.0;
        for (int64_t i = lo; i < hi; ++i) {
          double v = static_cast<double>(xs[i]);
          if (is_max) acc = (acc != acc || acc >= v) ? acc : v;  // NaN sticks
          else if (is_min) acc = (acc != acc || acc <= v) ? acc : v;
          else acc += v;
        }
        part[static_cast<std::size_t>(blk)] = acc;
      }
    });
    double r = (is_max || is_min) ? part[0] : 0.0;
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      double v = part[static_cast<std::size_t>(blk)];
      if (is_max) r = (r != r || r >= v) ? r : v;
      else if (is_min) r = (r != r || r <= v) ? r : v;
      else r += v;
    }
    if (op == ReduceOp::Mean) r /= static_cast<double>(n);
    *out.ptr<scalar_t>() = static_cast<scalar_t>(r);
  });
}

namespace {
template <class F> void dispatch_any(DType dt, F&& f) {
  switch (dt) {
    case DType::Float32: f(float()); return;
    case DType::Float64: f(double()); return;
    case DType::Int64: f(int64_t()); return;
    case DType::UInt8: f(uint8_t()); return;
  }
  throw std::invalid_argument("unknown dtype");
}
}  // namespace

void fill_cpu(const Tensor& x, double value) {
  dispatch_any(x.dtype, [&](auto tag) {
    using T = decltype(tag);
    T* p = x.ptr<T>();
    const T v = static_cast<T>(value);
    parallel_for(x.numel(), kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) p[i] = v;
    });
  });
}

void cast_cpu(const Tensor& x, const Tensor& out) {
  dispatch_any(x.dtype, [&](auto from_tag) {
    dispatch_any(out.dtype, [&](auto to_tag) {
      using From = decltype(from_tag);
      using To = decltype(to_tag);
      const From* s = x.ptr<From>();
      To* d = out.ptr<To>();
      parallel_for(x.numel(), kGrain, [&](int64_t lo, int64_t hi) {
        for (int64_t i = lo; i < hi; ++i) d[i] = ew::convert<To, From>(s[i]);
      });
    });
  });
}

void sgd_update_cpu(const Tensor& param, const Tensor& grad, const Tensor* buf, double lr, double momentum,
                    double dampening, double weight_decay, bool nesterov, bool first_step) {
  CONVKIT_DISPATCH_FLOAT(param.dtype, "sgd_update", [&] {
    using T = scalar_t;
    T* p = param.ptr<T>();
    const T* g = grad.ptr<T>();
    T* b = buf ? buf->ptr<T>() : nullptr;
    const T slr = T(lr), smom = T(momentum), sdamp = T(dampening), swd = T(weight_decay);
    parallel_for(param.numel(), kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i)
        ew::sgd_step<T>(p[i], g[i], b ? b + i : nullptr, slr, smom, sdamp, swd, nesterov, first_step);
    });
  });
}

void adam_update_cpu(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, double lr,
                     double beta1, double beta2, double eps, double weight_decay, double step_size,
                     double bc2_sqrt, bool decoupled) {
  CONVKIT_DISPATCH_FLOAT(param.dtype, "adam_update", [&] {
    using T = scalar_t;
    T* p = param.ptr<T>();
    const T* g = grad.ptr<T>();
    T* ms = m.ptr<T>();
    T* vs = v.ptr<T>();
    const T slr = T(lr), b1 = T(beta1), b2 = T(beta2), se = T(eps), swd = T(weight_decay), ss = T(step_size),
            sb = T(bc2_sqrt);
    parallel_for(param.numel(), kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i)
        ew::adam_step<T>(p[i], g[i], ms[i], vs[i], slr, b1, b2, se, swd, ss, sb, decoupled);
    });
  });
}

}  // namespace convkit
