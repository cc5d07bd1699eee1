// Python binding of DeviceArray. Arithmetic and the numpy-like helpers are added in
// python/convkit/device.py on top of these primitives.
#include <pybind11/stl.h>

#include "bind_util.h"
#include "convkit/runtime.h"
#include "device_array.h"

namespace py = pybind11;
using namespace convkit;

static DType dtype_from_any(py::handle h) {
  py::dtype d = py::dtype::from_args(py::reinterpret_borrow<py::object>(h));
  if (d.is(py::dtype::of<float>()) || (d.kind() == 'f' && d.itemsize() == 4)) return DType::Float32;
  if (d.kind() == 'f' && d.itemsize() == 8) return DType::Float64;
  if (d.kind() == 'i' && d.itemsize() == 8) return DType::Int64;
  if (d.kind() == 'u' && d.itemsize() == 1) return DType::UInt8;
  throw py::type_error(str_cat("DeviceArray: unsupported dtype ", std::string(py::str(d))));
}

void bind_device_array(py::module_& m) {
  py::class_<DeviceArray>(m, "DeviceArray", "An array in CUDA device memory, owned by convkit.")
      .def_static("empty", [](std::vector<int64_t> shape, py::object dtype) {
        return DeviceArray::empty(dtype_from_any(dtype), shape);
      }, py::arg("shape"), py::arg("dtype") = py::dtype::of<float>())
      .def_static("zeros", [](std::vector<int64_t> shape, py::object dtype) {
        return DeviceArray::zeros(dtype_from_any(dtype), shape);
      }, py::arg("shape"), py::arg("dtype") = py::dtype::of<float>())
      .def_static("from_numpy", [](py::array a) {
        Tensor t = as_tensor(a, "DeviceArray.from_numpy", "array");
        DeviceArray d = DeviceArray::empty(t.dtype, shape_of(t));
        if (d.nbytes()) {
          py::gil_scoped_release nogil;
          cuda_memcpy_h2d(d.data(), t.data, d.nbytes());
        }
        return d;
      }, py::arg("array"))
      .def("to_numpy", [](const DeviceArray& d) {
        std::vector<py::ssize_t> s(d.shape.begin(), d.shape.end());
        py::array a(numpy_dtype(d.dtype), s);
        if (d.nbytes()) {
          py::gil_scoped_release nogil;
          cuda_memcpy_d2h(a.mutable_data(), d.data(), d.nbytes());
        }
        return a;
      })
      .def("copy", [](const DeviceArray& d) {
        DeviceArray c = DeviceArray::empty(d.dtype, d.shape);
        if (d.nbytes()) cuda_memcpy_d2d(c.data(), d.data(), d.nbytes());
        return c;
      })
      .def("copy_from", [](DeviceArray& d, const DeviceArray& src) {
        CONVKIT_CHECK(src.shape == d.shape && src.dtype == d.dtype, "DeviceArray.copy_from: shape/dtype mismatch");
        if (d.nbytes()) cuda_memcpy_d2d(d.data(), src.data(), d.nbytes());
      }, py::arg("src"))
      .def("reshape", [](const DeviceArray& d, std::vector<int64_t> s) { return d.reshape(s); }, py::arg("shape"))
      .def_property_readonly("shape", [](const DeviceArray& d) {
        py::tuple t(d.shape.size());
        for (std::size_t i = 0; i < d.shape.size(); ++i) t[i] = d.shape[i];
        return t;
      })
      .def_property_readonly("dtype", [](const DeviceArray& d) { return numpy_dtype(d.dtype); })
      .def_property_readonly("ndim", [](const DeviceArray& d) { return d.shape.size(); })
      .def_property_readonly("size", &DeviceArray::numel)
      .def_property_readonly("nbytes", &DeviceArray::nbytes)
      .def_property_readonly("device", [](const DeviceArray&) { return "cuda"; })
      .def_property_readonly("data_ptr", [](const DeviceArray& d) { return reinterpret_cast<uintptr_t>(d.data()); })
      .def_property_readonly("__cuda_array_interface__", [](const DeviceArray& d) {
        py::dict ai;
        py::tuple shape(d.shape.size());
        for (std::size_t i = 0; i < d.shape.size(); ++i) shape[i] = d.shape[i];
        ai["shape"] = shape;
        ai["typestr"] = py::str(numpy_dtype(d.dtype).attr("str"));
        ai["data"] = py::make_tuple(reinterpret_cast<uintptr_t>(d.data()), false);
        ai["version"] = 3;
        ai["strides"] = py::none();
        uintptr_t s = reinterpret_cast<uintptr_t>(cuda_current_stream());
        ai["stream"] = s ? py::cast(s) : py::cast(2);  // 2 = per-thread default stream
        return ai;
      });
}
