// convkit/extension.h: everything a separate extension module needs, header-only.
//
// An extension (see examples/custom_op) is its own pybind11 module. It cannot link against
// convkit's _core, and it shares no C++ types with it: arrays cross the boundary as numpy arrays
// (CPU) and as objects with __cuda_array_interface__ (convkit.DeviceArray on CUDA). Include this
// header FIRST in every translation unit of an extension, .cpp and .cu alike; it brings in
// convkit/tensor.h (Tensor, CONVKIT_CHECK, check_*, CONVKIT_DISPATCH_FLOAT) and convkit/parallel.h,
// and gives inline definitions of the few _core functions those headers declare:
//
//   num_threads()          follows convkit.set_num_threads() (read from convkit at every as_tensor
//                          call, while the GIL is held), so parallel_for works unchanged;
//   workspace(bytes, slot) per-thread 64-byte aligned scratch, as in convkit;
//   cuda_current_stream()  convkit's current stream, as reported by the last CUDA array converted
//                          with as_tensor (so extension kernels are ordered with convkit's);
//   cuda_compiled()        whether THIS extension was built with CUDA (CONVKIT_WITH_CUDA).
// The other functions of convkit/runtime.h (cuda_malloc, ...) are not available to extensions:
// allocate outputs with new_array (below), which asks convkit for them.
//
// In translation units that are not compiled by nvcc, this header also provides the pybind11
// side (namespace convkit::ext):
//   as_tensor(obj, op, name, writable=false)  numpy array or DeviceArray -> Tensor, with the same
//                                             checks and messages as convkit's own bindings;
//   new_array(device, dtype, shape) / new_array_like(t, shape) -> (py::object, Tensor);
//   shape_of(t), check_same_shape(op, a, na, b, nb);
// plus CONVKIT_EXT_CUDA_OR_THROW(op, call) for the device dispatch (a clear RuntimeError when this
// extension was built without CUDA).
//
// Error conventions are convkit's: throw std::invalid_argument (ValueError) for bad arguments,
// std::runtime_error (RuntimeError) otherwise; pybind11 translates both.
#pragma once

#define CONVKIT_EXTENSION 1
// The extension API version: bumped when something in the installed headers changes incompatibly.
#define CONVKIT_EXTENSION_API_VERSION 1

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "convkit/parallel.h"
#include "convkit/runtime.h"
#include "convkit/tensor.h"

namespace convkit {

namespace ext_detail {
// 0 = not yet read from convkit: fall back to OpenMP's default.
inline std::atomic<int> g_num_threads{0};
// convkit's stream as last reported through __cuda_array_interface__ (nullptr = legacy default).
inline std::atomic<void*> g_stream{nullptr};
constexpr int kWorkspaceSlots = 8;
}  // namespace ext_detail

// ---- inline definitions of what convkit/parallel.h and convkit/runtime.h declare ------------------

inline int num_threads() {
  int n = ext_detail::g_num_threads.load(std::memory_order_relaxed);
  if (n >= 1) return n;
#ifdef _OPENMP
  n = omp_get_max_threads();
#else
  n = 1;
#endif
  return n >= 1 ? n : 1;
}

inline void* workspace(std::size_t bytes, int slot) {
  struct Buffer {
    void* p = nullptr;
    std::size_t n = 0;
    ~Buffer() { std::free(p); }
  };
  thread_local Buffer buffers[ext_detail::kWorkspaceSlots];
  CONVKIT_CHECK(slot >= 0 && slot < ext_detail::kWorkspaceSlots, "workspace: slot must be in [0, ",
                ext_detail::kWorkspaceSlots, "), got ", slot);
  Buffer& b = buffers[slot];
  if (bytes > b.n || b.p == nullptr) {
    std::size_t n = (bytes + 63) / 64 * 64;
    if (n == 0) n = 64;
    void* p = std::aligned_alloc(64, n);
    if (!p) throw std::bad_alloc();
    std::free(b.p);
    b.p = p;
    b.n = n;
  }
  return b.p;
}

inline void* cuda_current_stream() { return ext_detail::g_stream.load(std::memory_order_relaxed); }

inline bool cuda_compiled() {
#ifdef CONVKIT_WITH_CUDA
  return true;
#else
  return false;
#endif
}

// Device dispatch for extensions: like CONVKIT_CUDA_OR_THROW, with a message about the extension.
[[noreturn]] inline void throw_extension_no_cuda(const char* op) {
  throw std::runtime_error(str_cat(op, ": this extension was built without CUDA support (no nvcc at its build "
                                       "time); rebuild it with CUDA or keep the arrays on the CPU"));
}

// The checks every elementwise op needs: b on a's device with a's shape.
inline void check_same_shape(const char* op, const Tensor& a, const char* na, const Tensor& b, const char* nb) {
  check_same_device(a, b, op, na, nb);
  bool same = a.ndim == b.ndim;
  for (int i = 0; same && i < a.ndim; ++i) same = a.shape[i] == b.shape[i];
  CONVKIT_CHECK(same, op, ": ", nb, " must have the shape of ", na, " ", a.shape_str(), ", got ", b.shape_str());
}

}  // namespace convkit

#ifdef CONVKIT_WITH_CUDA
#define CONVKIT_EXT_CUDA_OR_THROW(OPNAME, CALL) CALL
#else
#define CONVKIT_EXT_CUDA_OR_THROW(OPNAME, CALL) ::convkit::throw_extension_no_cuda(OPNAME)
#endif

// ---- the pybind11 side (not for nvcc-compiled files) -----------------------------------------------
#if !defined(__CUDACC__) && !defined(CONVKIT_EXTENSION_NO_PYBIND11)
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

namespace convkit {
namespace ext {
namespace py = pybind11;

inline py::dtype numpy_dtype(DType dt) {
  switch (dt) {
    case DType::Float32: return py::dtype::of<float>();
    case DType::Float64: return py::dtype::of<double>();
    case DType::Int64: return py::dtype::of<int64_t>();
    case DType::UInt8: return py::dtype::of<uint8_t>();
  }
  throw std::invalid_argument("unknown dtype");
}

namespace detail {

inline bool dtype_from_kind(char kind, py::ssize_t size, DType* out) {
  if (kind == 'f' && size == 4) *out = DType::Float32;
  else if (kind == 'f' && size == 8) *out = DType::Float64;
  else if (kind == 'i' && size == 8) *out = DType::Int64;
  else if (kind == 'u' && size == 1) *out = DType::UInt8;
  else return false;
  return true;
}

inline std::string type_name(py::handle h) { return py::str(py::type::of(h).attr("__name__")); }

// Reads convkit's thread count (convkit.set_num_threads) into the cache num_threads() uses.
inline void sync_num_threads() {
  try {
    py::module_ core = py::module_::import("convkit._core");
    int n = core.attr("num_threads")().cast<int>();
    if (n >= 1) ext_detail::g_num_threads.store(n, std::memory_order_relaxed);
  } catch (py::error_already_set&) {
    // convkit not importable: keep OpenMP's default.
  }
}

// A CUDA array through __cuda_array_interface__ (version 2 or 3): C-contiguous only.
inline Tensor from_cuda_array_interface(py::handle h, const py::dict& ai, const char* op, const char* name,
                                        bool writable) {
  Tensor t;
  t.device = Device::CUDA;
  py::tuple shape = ai["shape"].cast<py::tuple>();
  CONVKIT_CHECK(static_cast<int>(shape.size()) <= kMaxDims, op, ": ", name, " has ", shape.size(),
                " dimensions, at most ", kMaxDims, " are supported");
  t.ndim = static_cast<int>(shape.size());
  for (int i = 0; i < t.ndim; ++i) t.shape[i] = shape[i].cast<int64_t>();
  std::string typestr = ai["typestr"].cast<std::string>();
  py::dtype dt(typestr);
  if (!dtype_from_kind(dt.kind(), dt.itemsize(), &t.dtype))
    throw py::type_error(str_cat(op, ": ", name, " has unsupported dtype ", typestr));
  CONVKIT_CHECK(typestr.empty() || typestr[0] != '>', op, ": ", name,
                " is big-endian; convert it to native byte order");
  if (ai.contains("strides") && !ai["strides"].is_none()) {
    py::tuple strides = ai["strides"].cast<py::tuple>();
    int64_t expect = static_cast<int64_t>(dtype_size(t.dtype));
    bool contiguous = static_cast<int>(strides.size()) == t.ndim;
    for (int i = t.ndim - 1; contiguous && i >= 0; --i) {
      if (t.shape[i] > 1 && strides[i].cast<int64_t>() != expect) contiguous = false;
      expect *= t.shape[i];
    }
    CONVKIT_CHECK(contiguous, op, ": ", name, " must be C-contiguous");
  }
  py::tuple data = ai["data"].cast<py::tuple>();
  t.data = reinterpret_cast<void*>(data[0].cast<uintptr_t>());
  if (writable) CONVKIT_CHECK(!data[1].cast<bool>(), op, ": ", name, " is read-only");
  if (ai.contains("stream") && !ai["stream"].is_none()) {
    uintptr_t s = ai["stream"].cast<uintptr_t>();
    // 1 = the legacy default stream (nullptr); 2 = the per-thread default stream, whose handle is 0x2.
    ext_detail::g_stream.store(s == 1 ? nullptr : reinterpret_cast<void*>(s), std::memory_order_relaxed);
  }
  (void)h;
  return t;
}

}  // namespace detail

// A numpy array (CPU) or an object with __cuda_array_interface__ such as convkit.DeviceArray (CUDA)
// as a Tensor view. Rejects other types (TypeError), unsupported dtypes (TypeError), and
// non-contiguous, misaligned, big-endian and (for outputs) read-only arrays (ValueError), with the
// messages convkit's own bindings use; a CUDA array given to an extension built without CUDA is a
// RuntimeError. Call it with the GIL held (pybind11 holds it in a binding).
inline Tensor as_tensor(py::handle h, const char* op, const char* name, bool writable = false) {
  detail::sync_num_threads();
  if (!py::isinstance<py::array>(h) && py::hasattr(h, "__cuda_array_interface__")) {
#ifndef CONVKIT_WITH_CUDA
    // Fail here, before any output is allocated, with a message about this extension.
    throw std::runtime_error(str_cat(op, ": ", name, " is on cuda but this extension was built without CUDA "
                                     "support (no nvcc at its build time); rebuild it with CUDA or keep the "
                                     "arrays on the CPU"));
#endif
    py::dict ai = h.attr("__cuda_array_interface__").cast<py::dict>();
    return detail::from_cuda_array_interface(h, ai, op, name, writable);
  }
  if (!py::isinstance<py::array>(h)) {
    throw py::type_error(str_cat(op, ": ", name, " must be a numpy array or convkit.DeviceArray, got ",
                                 detail::type_name(h)));
  }
  Tensor t;
  auto a = py::reinterpret_borrow<py::array>(h);
  CONVKIT_CHECK(a.ndim() <= kMaxDims, op, ": ", name, " has ", a.ndim(), " dimensions, at most ", kMaxDims,
                " are supported");
  if (!detail::dtype_from_kind(a.dtype().kind(), a.dtype().itemsize(), &t.dtype))
    throw py::type_error(str_cat(op, ": ", name, " has unsupported dtype ", std::string(py::str(a.dtype()))));
  CONVKIT_CHECK(a.dtype().byteorder() != '>', op, ": ", name, " is big-endian; convert it to native byte order");
  CONVKIT_CHECK((a.flags() & py::array::c_style) != 0, op, ": ", name,
                " must be C-contiguous (use numpy.ascontiguousarray)");
  CONVKIT_CHECK((a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) != 0, op, ": ", name, " is not aligned");
  if (writable) CONVKIT_CHECK(a.writeable(), op, ": ", name, " is read-only");
  t.device = Device::CPU;
  t.ndim = static_cast<int>(a.ndim());
  for (int i = 0; i < t.ndim; ++i) t.shape[i] = a.shape(i);
  t.data = const_cast<void*>(a.data());
  return t;
}

// A new uninitialized array on `device`: a numpy array, or a convkit.DeviceArray made by
// convkit.DeviceArray.empty (convkit owns and frees the memory). Returns the object and its view.
inline std::pair<py::object, Tensor> new_array(Device device, DType dtype, const std::vector<int64_t>& shape) {
  CONVKIT_CHECK(static_cast<int>(shape.size()) <= kMaxDims, "new_array: at most ", kMaxDims, " dimensions");
  Tensor t;
  t.dtype = dtype;
  t.device = device;
  t.ndim = static_cast<int>(shape.size());
  for (int i = 0; i < t.ndim; ++i) t.shape[i] = shape[i];
  if (device == Device::CUDA) {
    py::list s;
    for (int64_t d : shape) s.append(d);
    py::object arr = py::module_::import("convkit").attr("DeviceArray").attr("empty")(s, numpy_dtype(dtype));
    t.data = reinterpret_cast<void*>(arr.attr("data_ptr").cast<uintptr_t>());
    return {std::move(arr), t};
  }
  std::vector<py::ssize_t> s(shape.begin(), shape.end());
  py::array a(numpy_dtype(dtype), s);
  t.data = a.mutable_data();
  return {std::move(a), t};
}

inline std::vector<int64_t> shape_of(const Tensor& t) { return std::vector<int64_t>(t.shape, t.shape + t.ndim); }

inline std::pair<py::object, Tensor> new_array_like(const Tensor& t, const std::vector<int64_t>& shape) {
  return new_array(t.device, t.dtype, shape);
}
inline std::pair<py::object, Tensor> new_array_like(const Tensor& t) { return new_array(t.device, t.dtype, shape_of(t)); }

}  // namespace ext
}  // namespace convkit
#endif
