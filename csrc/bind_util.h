// Conversions between Python objects and kernel views, used by the binding lines of every op.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <utility>
#include <vector>

#include "convkit/tensor.h"
#include "device_array.h"

namespace convkit {
namespace py = pybind11;

// Built with AddressSanitizer (CMake option CONVKIT_SANITIZE, or -fsanitize=address in the flags):
// freed output blocks are not cached (bind_util.cpp), and convkit.info()["sanitized"] says so.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitized = true;
#else
inline constexpr bool kAddressSanitized = false;
#endif
#else
inline constexpr bool kAddressSanitized = false;
#endif

// A numpy array (CPU) or DeviceArray (CUDA) as a Tensor view. Rejects non-contiguous, misaligned,
// byte-swapped and (for outputs) read-only arrays with a ValueError naming the op and the argument.
Tensor as_tensor(py::handle h, const char* op, const char* name, bool writable = false);
// None -> false; else fills t.
bool as_optional_tensor(py::handle h, const char* op, const char* name, Tensor* t);

// A new uninitialized array on `device` (numpy or DeviceArray) and its view.
// A new output array (numpy on the CPU, DeviceArray on CUDA) and its Tensor view. Large CPU arrays
// reuse freed blocks of the same size (see bind_util.cpp); their contents are not zeroed.
std::pair<py::object, Tensor> new_array(Device device, DType dtype, const std::vector<int64_t>& shape);
// The output-array block cache: bytes held, and releasing them all (tests, memory-tight callers).
std::size_t array_cache_bytes();
void array_cache_clear();
std::pair<py::object, Tensor> new_array_like(const Tensor& t, const std::vector<int64_t>& shape);
std::vector<int64_t> shape_of(const Tensor& t);

py::dtype numpy_dtype(DType dt);

}  // namespace convkit
