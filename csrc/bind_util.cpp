#include "bind_util.h"

namespace convkit {

static bool dtype_from_numpy(const py::dtype& d, DType* out) {
  char kind = d.kind();
  auto size = d.itemsize();
  if (kind == 'f' && size == 4) *out = DType::Float32;
  else if (kind == 'f' && size == 8) *out = DType::Float64;
  else if (kind == 'i' && size == 8) *out = DType::Int64;
  else if (kind == 'u' && size == 1) *out = DType::UInt8;
  else return false;
  return true;
}

py::dtype numpy_dtype(DType dt) {
  switch (dt) {
    case DType::Float32: return py::dtype::of<float>();
    case DType::Float64: return py::dtype::of<double>();
    case DType::Int64: return py::dtype::of<int64_t>();
    case DType::UInt8: return py::dtype::of<uint8_t>();
  }
  throw std::invalid_argument("unknown dtype");
}

Tensor as_tensor(py::handle h, const char* op, const char* name, bool writable) {
  Tensor t;
  if (py::isinstance<DeviceArray>(h)) {
    return h.cast<const DeviceArray&>().view();
  }
  if (!py::isinstance<py::array>(h)) {
    throw py::type_error(str_cat(op, ": ", name, " must be a numpy array or convkit.DeviceArray, got ",
                                 std::string(py::str(py::type::of(h).attr("__name__")))));
  }
  auto a = py::reinterpret_borrow<py::array>(h);
  CONVKIT_CHECK(a.ndim() <= kMaxDims, op, ": ", name, " has ", a.ndim(), " dimensions, at most ", kMaxDims,
                " are supported");
  if (!dtype_from_numpy(a.dtype(), &t.dtype))
    throw py::type_error(str_cat(op, ": ", name, " has unsupported dtype ", std::string(py::str(a.dtype()))));
  CONVKIT_CHECK(a.dtype().byteorder() != '>', op, ": ", name, " is big-endian; convert it to native byte order");
  CONVKIT_CHECK((a.flags() & py::array::c_style) != 0, op, ": ", name,
                " must be C-contiguous (use numpy.ascontiguousarray)");
  CONVKIT_CHECK((a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) != 0, op, ": ", name, " is not aligned");
  if (writable)
    CONVKIT_CHECK(a.writeable(), op, ": ", name, " is read-only");
  t.device = Device::CPU;
  t.ndim = static_cast<int>(a.ndim());
  for (int i = 0; i < t.ndim; ++i) t.shape[i] = a.shape(i);
  t.data = const_cast<void*>(a.data());
  return t;
}

bool as_optional_tensor(py::handle h, const char* op, const char* name, Tensor* t) {
  if (h.is_none()) return false;
  *t = as_tensor(h, op, name);
  return true;
}

std::pair<py::object, Tensor> new_array(Device device, DType dtype, const std::vector<int64_t>& shape) {
  if (device == Device::CUDA) {
    DeviceArray d = DeviceArray::empty(dtype, shape);
    Tensor t = d.view();
    return {py::cast(std::move(d)), t};
  }
  // Checked before numpy sees the shape: pybind11 computes the strides in signed 64-bit arithmetic,
  // which overflows (undefined behaviour) for claimed shapes like [1, 1, 2^41, 2^41].
  int64_t bytes = static_cast<int64_t>(dtype_size(dtype));
  for (int64_t d : shape) bytes = checked_mul(bytes, d, "output array (bytes)");
  std::vector<py::ssize_t> s(shape.begin(), shape.end());
  py::array a(numpy_dtype(dtype), s);
  Tensor t;
  t.data = a.mutable_data();
  t.dtype = dtype;
  t.device = Device::CPU;
  t.ndim = static_cast<int>(shape.size());
  for (int i = 0; i < t.ndim; ++i) t.shape[i] = shape[i];
  return {std::move(a), t};
}

std::pair<py::object, Tensor> new_array_like(const Tensor& t, const std::vector<int64_t>& shape) {
  return new_array(t.device, t.dtype, shape);
}

std::vector<int64_t> shape_of(const Tensor& t) { return std::vector<int64_t>(t.shape, t.shape + t.ndim); }

}  // namespace convkit
