// convkit/tensor.h: the non-owning array view every kernel takes, and the argument checks.
//
// A Tensor is a C-contiguous, row-major view (NCHW for images) of memory owned elsewhere: a numpy
// array on the CPU, a convkit DeviceArray on CUDA. Kernels never allocate their outputs; the binding
// does, and hands them in as views. Every check throws std::invalid_argument (pybind11 turns it into
// ValueError) with a message naming the op, the argument, the expected and the actual value.
//
// This header is part of the installed C++ API (see examples/custom_op); keep it self-contained.
#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace convkit {

enum class DType : int { Float32 = 0, Float64 = 1, Int64 = 2, UInt8 = 3 };
enum class Device : int { CPU = 0, CUDA = 1 };

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Int64: return "int64";
    case DType::UInt8: return "uint8";
  }
  return "unknown";
}
inline std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::Int64: return 8;
    case DType::UInt8: return 1;
  }
  return 0;
}
inline const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::Float32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::Float64; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::Int64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::UInt8; };

constexpr int kMaxDims = 8;

// Builds "a: b c d" style messages: CONVKIT_CHECK(x > 0, "conv2d: stride must be > 0, got ", x).
// Numbers go through std::to_chars (floating point as printf's %g: 6 significant digits), not
// iostreams: no locale is consulted, so a message reads the same under any global locale, and
// formatting cannot reach a locale facet of another copy of libstdc++ in the process (a module built
// by a toolchain that links libstdc++ statically crashed in ostream's number formatting on the H200
// machine, where numpy had loaded the system libstdc++ first).
namespace detail {
inline void append(std::string& s, std::string_view v) { s.append(v.data(), v.size()); }
inline void append(std::string& s, const char* v) { s += v ? v : "(null)"; }
inline void append(std::string& s, char c) { s += c; }
inline void append(std::string& s, bool b) { s += b ? '1' : '0'; }
template <class T, std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, bool> && !std::is_same_v<T, char>, int> = 0>
void append(std::string& s, T v) {
  char buf[64];
  if constexpr (std::is_floating_point_v<T>) {
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
    s.append(buf, std::to_chars(buf, buf + sizeof buf, static_cast<double>(v), std::chars_format::general, 6).ptr);
#else  // standard libraries without floating-point to_chars (older libc++): printf, same format
    const int n = std::snprintf(buf, sizeof buf, "%g", static_cast<double>(v));
    s.append(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
#endif
  } else {
    s.append(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
  }
}
template <class T, std::enable_if_t<std::is_enum_v<T>, int> = 0> void append(std::string& s, T v) {
  append(s, static_cast<std::underlying_type_t<T>>(v));
}
}  // namespace detail

template <class... Args>
std::string str_cat(const Args&... args) {
  std::string s;
  (detail::append(s, args), ...);
  return s;
}

#define CONVKIT_CHECK(cond, ...)                                                 \
  do {                                                                           \
    if (!(cond)) throw std::invalid_argument(::convkit::str_cat(__VA_ARGS__));   \
  } while (0)

// a * b with a check that the product fits in int64 (sizes a user passes can be huge).
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  if (a < 0 || b < 0) throw std::invalid_argument(str_cat(what, ": negative size"));
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a)
    throw std::overflow_error(str_cat(what, ": size ", a, " x ", b, " overflows 64-bit indexing"));
  return a * b;
}

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::Float32;
  Device device = Device::CPU;
  int ndim = 0;
  int64_t shape[kMaxDims] = {0};

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n = checked_mul(n, shape[i], "tensor");
    return n;
  }
  // size(-1) is the last dimension, as in numpy.
  int64_t size(int d) const { return shape[d < 0 ? d + ndim : d]; }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype); }
  template <class T> T* ptr() const { return static_cast<T*>(data); }
  bool defined() const { return ndim > 0 || data != nullptr; }

  std::string shape_str() const {
    std::string s = "[";
    for (int i = 0; i < ndim; ++i) s += str_cat(i ? ", " : "", shape[i]);
    return s + "]";
  }
};

// ---- argument checks shared by every op --------------------------------------------------------

inline void check_ndim(const Tensor& t, int ndim, const char* op, const char* name, const char* layout) {
  CONVKIT_CHECK(t.ndim == ndim, op, ": ", name, " must have shape ", layout, ", got ", t.shape_str());
}

// Shape must match exactly; -1 in `expect` means any size.
inline void check_shape(const Tensor& t, std::initializer_list<int64_t> expect, const char* op,
                        const char* name) {
  bool ok = t.ndim == static_cast<int>(expect.size());
  int i = 0;
  std::string want = "[";
  for (int64_t e : expect) {
    if (ok && e >= 0 && t.shape[i] != e) ok = false;
    want += i ? ", " : "";
    want += e >= 0 ? str_cat(e) : std::string("*");
    ++i;
  }
  want += "]";
  CONVKIT_CHECK(ok, op, ": ", name, " must have shape ", want, ", got ", t.shape_str());
}

inline void check_dtype(const Tensor& t, DType dt, const char* op, const char* name) {
  CONVKIT_CHECK(t.dtype == dt, op, ": ", name, " must be ", dtype_name(dt), ", got ", dtype_name(t.dtype));
}

inline void check_float(const Tensor& t, const char* op, const char* name) {
  CONVKIT_CHECK(t.dtype == DType::Float32 || t.dtype == DType::Float64, op, ": ", name,
                " must be float32 or float64, got ", dtype_name(t.dtype));
}

inline void check_same_device(const Tensor& a, const Tensor& b, const char* op, const char* name_a,
                              const char* name_b) {
  CONVKIT_CHECK(a.device == b.device, op, ": ", name_a, " is on ", device_name(a.device), " but ", name_b,
                " is on ", device_name(b.device), "; move both to one device");
}

inline void check_nonempty(const Tensor& t, const char* op, const char* name) {
  CONVKIT_CHECK(t.numel() > 0, op, ": ", name, " is empty (shape ", t.shape_str(), ")");
  CONVKIT_CHECK(t.data != nullptr, op, ": ", name, " has no data");
}

// Kernels index with int64; anything that fits is fine. CUDA kernels may use 32-bit offsets inside a
// plane and must check it with this helper.
inline void check_fits_int32(int64_t n, const char* op, const char* what) {
  CONVKIT_CHECK(n <= std::numeric_limits<int32_t>::max(), op, ": ", what, " = ", n,
                " exceeds 32-bit indexing of this kernel");
}

// Runs the body with `scalar_t` bound to float or double.
#define CONVKIT_DISPATCH_FLOAT(DT, OPNAME, ...)                                                   \
  [&] {                                                                                           \
    switch (DT) {                                                                                 \
      case ::convkit::DType::Float32: {                                                           \
        using scalar_t = float;                                                                   \
        return __VA_ARGS__();                                                                     \
      }                                                                                           \
      case ::convkit::DType::Float64: {                                                           \
        using scalar_t = double;                                                                  \
        return __VA_ARGS__();                                                                     \
      }                                                                                           \
      default:                                                                                    \
        throw std::invalid_argument(::convkit::str_cat(OPNAME, ": expected float32 or float64, got ", \
                                                       ::convkit::dtype_name(DT)));               \
    }                                                                                             \
  }()

// Device dispatch: CPU always; CUDA only when compiled in, else a clear error.
[[noreturn]] inline void throw_no_cuda(const char* op) {
  throw std::runtime_error(str_cat(op, ": convkit was built without CUDA support (no nvcc at build time); "
                                       "rebuild with CONVKIT_CUDA=ON or keep the arrays on the CPU"));
}

}  // namespace convkit

// Inside an op's device dispatch: call the CUDA implementation when it is compiled in, else throw.
//   if (x.device == Device::CUDA) { CONVKIT_CUDA_OR_THROW("relu_forward", relu_forward_cuda(x, y)); return; }
#ifdef CONVKIT_WITH_CUDA
#define CONVKIT_CUDA_OR_THROW(OPNAME, CALL) CALL
#else
#define CONVKIT_CUDA_OR_THROW(OPNAME, CALL) ::convkit::throw_no_cuda(OPNAME)
#endif
