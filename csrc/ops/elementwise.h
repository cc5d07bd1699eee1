// Elementwise arithmetic, whole-array reductions, fills, dtype casts and fused optimizer updates: the
// numpy subset that convkit's Python layer needs to run the same code on numpy arrays and on
// DeviceArray (optimizers, attacks, style transfer). Arrays of any shape are treated as flat.
//
// Every function OVERWRITES its output; the output may be the input itself (in-place ops pass the
// same array twice). Arithmetic is float32/float64 and done in the array's dtype, with the scalar
// arguments rounded to it first (numpy's rule for Python scalars); results agree between the CPU and
// CUDA kernels up to rounding (the CUDA compiler may fuse a*b+c into one FMA).
//
// NaN follows numpy: abs, sign, clip, maximum and minimum propagate NaN; max() is NaN if any element is.
//
// Reductions (sum, mean, max, min) accumulate in double (max/min exactly) in a fixed order that does
// not depend on the thread count, and write one element of the input's dtype.
//
// Casts (astype): float -> integer truncates toward zero and saturates to the target's range, NaN
// becomes 0 (what the GPU's conversion instructions do; numpy leaves these cases undefined);
// int64 -> uint8 wraps modulo 256 as numpy does.
//
// Fused optimizer updates, one pass over the parameters, identical to PyTorch's single-tensor
// torch.optim.SGD and torch.optim.Adam (amsgrad off, maximize off):
//   sgd:  g = grad + wd * p
//         if momentum != 0:  buf = first_step ? g : momentum * buf + (1 - dampening) * g
//                            g = nesterov ? g + momentum * buf : buf
//         p = p - lr * g
//   adam: if decoupled (AdamW): p = p * (1 - lr * wd)   else: g = grad + wd * p
//         m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g^2
//         p = p - (lr / (1 - beta1^step)) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
// param, buf, m and v are updated in place; grad is read only.
#pragma once
#include <cmath>
#include <type_traits>
#include <utility>

#include "convkit/tensor.h"

namespace convkit {

enum class UnaryOp : int {
  Neg = 0, Abs, Sign, Sqrt, Exp, Log, Square,
  Clip,      // clip(x, a, b)
  MaxS,      // maximum(x, a)
  MinS,      // minimum(x, a)
  AddS,      // x + a
  SubS,      // x - a
  RSubS,     // a - x
  MulS,      // x * a
  DivS,      // x / a
  RDivS,     // a / x
  PowS,      // x ** a
  Count
};
enum class BinaryOp : int { Add = 0, Sub, Mul, Div, Maximum, Minimum, Count };
enum class ReduceOp : int { Sum = 0, Mean, Max, Min, Count };

const char* unary_op_name(UnaryOp op);
const char* binary_op_name(BinaryOp op);
const char* reduce_op_name(ReduceOp op);

// Checked, device-dispatching entry points.
void unary_op(UnaryOp op, const Tensor& x, const Tensor& out, double a = 0, double b = 0);  // out: x's shape
void binary_op(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out);          // all one shape
void reduce_all(ReduceOp op, const Tensor& x, const Tensor& out);  // out: one element (any shape)
void fill(const Tensor& x, double value);
void cast(const Tensor& x, const Tensor& out);  // any dtype to any dtype, same shape
void sgd_update(const Tensor& param, const Tensor& grad, const Tensor* buf /* null when momentum == 0 */,
                double lr, double momentum, double dampening, double weight_decay, bool nesterov,
                bool first_step);
void adam_update(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, double lr,
                 double beta1, double beta2, double eps, double weight_decay, int64_t step, bool decoupled);

// Implementations; arguments already checked. Adam gets its bias corrections precomputed:
// step_size = lr / (1 - beta1^step), bc2_sqrt = sqrt(1 - beta2^step).
void unary_op_cpu(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b);
void binary_op_cpu(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out);
void reduce_all_cpu(ReduceOp op, const Tensor& x, const Tensor& out);
void fill_cpu(const Tensor& x, double value);
void cast_cpu(const Tensor& x, const Tensor& out);
void sgd_update_cpu(const Tensor& param, const Tensor& grad, const Tensor* buf, double lr, double momentum,
                    double dampening, double weight_decay, bool nesterov, bool first_step);
void adam_update_cpu(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, double lr,
                     double beta1, double beta2, double eps, double weight_decay, double step_size,
                     double bc2_sqrt, bool decoupled);
void unary_op_cuda(UnaryOp op, const Tensor& x, const Tensor& out, double a, double b);
void binary_op_cuda(BinaryOp op, const Tensor& x, const Tensor& y, const Tensor& out);
void reduce_all_cuda(ReduceOp op, const Tensor& x, const Tensor& out);
void fill_cuda(const Tensor& x, double value);
void cast_cuda(const Tensor& x, const Tensor& out);
void sgd_update_cuda(const Tensor& param, const Tensor& grad, const Tensor* buf, double lr, double momentum,
                     double dampening, double weight_decay, bool nesterov, bool first_step);
void adam_update_cuda(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, double lr,
                      double beta1, double beta2, double eps, double weight_decay, double step_size,
                      double bc2_sqrt, bool decoupled);

// ---- the per-element functions, shared by the CPU and CUDA kernels ----------------------------------
#if defined(__CUDACC__)
#define CONVKIT_HD __host__ __device__ __forceinline__
#else
#define CONVKIT_HD inline
#endif

namespace ew {

template <class T> CONVKIT_HD bool isnan_(T x) { return x != x; }
CONVKIT_HD float sqrt_(float x) { return sqrtf(x); }
CONVKIT_HD double sqrt_(double x) { return sqrt(x); }
CONVKIT_HD float exp_(float x) { return expf(x); }
CONVKIT_HD double exp_(double x) { return exp(x); }
CONVKIT_HD float log_(float x) { return logf(x); }
CONVKIT_HD double log_(double x) { return log(x); }
CONVKIT_HD float pow_(float x, float a) { return powf(x, a); }
CONVKIT_HD double pow_(double x, double a) { return pow(x, a); }

template <int OP, class T> CONVKIT_HD T unary(T x, T a, T b) {
  (void)a;
  (void)b;
  constexpr UnaryOp op = static_cast<UnaryOp>(OP);
  if constexpr (op == UnaryOp::Neg) return -x;
  else if constexpr (op == UnaryOp::Abs) return x < T(0) ? -x : (x == T(0) ? T(0) : x);  // abs(-0.) = 0.
  else if constexpr (op == UnaryOp::Sign) return x > T(0) ? T(1) : (x < T(0) ? T(-1) : (x == T(0) ? T(0) : x));  // +-0 -> 0, NaN stays
  else if constexpr (op == UnaryOp::Sqrt) return sqrt_(x);
  else if constexpr (op == UnaryOp::Exp) return exp_(x);
  else if constexpr (op == UnaryOp::Log) return log_(x);
  else if constexpr (op == UnaryOp::Square) return x * x;
  else if constexpr (op == UnaryOp::Clip) return isnan_(x) ? x : (x < a ? a : (x > b ? b : x));
  else if constexpr (op == UnaryOp::MaxS) return (isnan_(x) || x >= a) ? x : a;
  else if constexpr (op == UnaryOp::MinS) return (isnan_(x) || x <= a) ? x : a;
  else if constexpr (op == UnaryOp::AddS) return x + a;
  else if constexpr (op == UnaryOp::SubS) return x - a;
  else if constexpr (op == UnaryOp::RSubS) return a - x;
  else if constexpr (op == UnaryOp::MulS) return x * a;
  else if constexpr (op == UnaryOp::DivS) return x / a;
  else if constexpr (op == UnaryOp::RDivS) return a / x;
  else return pow_(x, a);  // PowS
}

template <int OP, class T> CONVKIT_HD T binary(T x, T y) {
  constexpr BinaryOp op = static_cast<BinaryOp>(OP);
  if constexpr (op == BinaryOp::Add) return x + y;
  else if constexpr (op == BinaryOp::Sub) return x - y;
  else if constexpr (op == BinaryOp::Mul) return x * y;
  else if constexpr (op == BinaryOp::Div) return x / y;
  else if constexpr (op == BinaryOp::Maximum) return (isnan_(x) || x >= y) ? x : y;
  else return (isnan_(x) || x <= y) ? x : y;  // Minimum
}

// float -> integer conversions as described above; everything else is a plain conversion.
template <class To, class From> CONVKIT_HD To convert(From v) {
  if constexpr (std::is_floating_point<From>::value && std::is_integral<To>::value) {
    if (isnan_(v)) return To(0);
    if constexpr (sizeof(To) == 1) {
      if (v <= From(0)) return To(0);
      if (v >= From(255)) return To(255);
      return static_cast<To>(v);
    } else {
      if (v <= From(-9223372036854775807.0 - 1.0)) return static_cast<To>(-9223372036854775807LL - 1);
      if (v >= From(9223372036854775807.0)) return static_cast<To>(9223372036854775807LL);
      return static_cast<To>(v);
    }
  } else {
    return static_cast<To>(v);
  }
}

// The SGD and Adam steps for one element (see the top of this file).
template <class T> CONVKIT_HD void sgd_step(T& p, T grad, T* buf, T lr, T momentum, T dampening, T wd,
                                            bool nesterov, bool first_step) {
  T g = grad + wd * p;
  if (buf) {
    T bv = first_step ? g : momentum * *buf + (T(1) - dampening) * g;
    *buf = bv;
    g = nesterov ? g + momentum * bv : bv;
  }
  p = p - lr * g;
}

template <class T> CONVKIT_HD void adam_step(T& p, T grad, T& m, T& v, T lr, T beta1, T beta2, T eps, T wd,
                                             T step_size, T bc2_sqrt, bool decoupled) {
  T g = grad;
  if (decoupled) p = p * (T(1) - lr * wd);
  else g = g + wd * p;
  m = beta1 * m + (T(1) - beta1) * g;
  v = beta2 * v + (T(1) - beta2) * g * g;
  T denom = sqrt_(v) / bc2_sqrt + eps;
  p = p - step_size * m / denom;
}

}  // namespace ew

// Calls f(std::integral_constant<int, v>()) for the run-time value v in [0, N): turns an op code into
// a template argument, so each op gets its own loop (host code only).
template <int N, class F> void dispatch_op(int v, F&& f) {
  if constexpr (N == 0) {
    throw std::invalid_argument(str_cat("elementwise: unknown op code ", v));
  } else {
    if (v == N - 1) {
      f(std::integral_constant<int, N - 1>());
      return;
    }
    dispatch_op<N - 1>(v, std::forward<F>(f));
  }
}

}  // namespace convkit
