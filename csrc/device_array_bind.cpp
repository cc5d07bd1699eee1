// Python binding of DeviceArray: creation, copies, views, __cuda_array_interface__ and DLPack (export
// with __dlpack__/__dlpack_device__, import with _from_dlpack). Arithmetic and the numpy-like helpers
// are added in python/convkit/device.py on top of these primitives and the ops in elementwise_bind.cpp.
#include <pybind11/stl.h>

#include <cstring>

#include "bind_util.h"
#include "convkit/runtime.h"
#include "device_array.h"
#include "device_array_dlpack.h"

namespace py = pybind11;
using namespace convkit;

namespace {

// ---- DLPack export ---------------------------------------------------------------------------------------
// The capsule owns a heap Holder: the DLPack struct, a reference to the storage (so the memory outlives
// the DeviceArray when a consumer still uses it), and the shape/strides arrays the struct points at.
// Its deleter (called by the consumer when done, or by the capsule if never consumed) frees it.

template <class MT> struct Holder {
  MT mt;
  std::shared_ptr<void> storage;
  std::vector<int64_t> shape, strides;
};

dlpack::DataType dl_dtype(DType dt) {
  switch (dt) {
    case DType::Float32: return {dlpack::kDLFloat, 32, 1};
    case DType::Float64: return {dlpack::kDLFloat, 64, 1};
    case DType::Int64: return {dlpack::kDLInt, 64, 1};
    case DType::UInt8: return {dlpack::kDLUInt, 8, 1};
  }
  throw std::invalid_argument("unknown dtype");
}

template <class MT> MT* make_managed(const DeviceArray& d) {
  auto* h = new Holder<MT>();
  h->storage = d.storage;
  h->shape = d.shape;
  h->strides.assign(d.shape.size(), 1);
  for (int i = static_cast<int>(d.shape.size()) - 2; i >= 0; --i) h->strides[i] = h->strides[i + 1] * d.shape[i + 1];
  dlpack::Tensor& t = h->mt.dl_tensor;
  t.data = d.data();
  t.device = {dlpack::kDLCUDA, d.device_index};
  t.ndim = static_cast<int32_t>(d.shape.size());
  t.dtype = dl_dtype(d.dtype);
  t.shape = h->shape.empty() ? nullptr : h->shape.data();
  t.strides = h->strides.empty() ? nullptr : h->strides.data();
  t.byte_offset = 0;
  h->mt.manager_ctx = h;
  h->mt.deleter = [](MT* self) { delete static_cast<Holder<MT>*>(self->manager_ctx); };
  return &h->mt;
}

template <class MT> void capsule_destructor_impl(PyObject* cap, const char* name) {
  if (!PyCapsule_IsValid(cap, name)) return;  // renamed "used_...": the consumer owns it now
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  auto* mt = static_cast<MT*>(PyCapsule_GetPointer(cap, name));
  if (mt && mt->deleter) mt->deleter(mt);
  PyErr_Restore(type, value, tb);
}
void legacy_capsule_destructor(PyObject* cap) { capsule_destructor_impl<dlpack::ManagedTensor>(cap, "dltensor"); }
void versioned_capsule_destructor(PyObject* cap) {
  capsule_destructor_impl<dlpack::ManagedTensorVersioned>(cap, "dltensor_versioned");
}

// Per the DLPack Python specification for CUDA: None or 1 = the legacy default stream, 2 = the
// per-thread default stream, -1 = do not synchronize, any other integer is a cudaStream_t.
void sync_for_consumer(py::object stream) {
  if (stream.is_none()) {
    cuda_stream_wait(reinterpret_cast<void*>(uintptr_t(0)));  // the legacy default stream
    return;
  }
  long long s = stream.cast<long long>();
  if (s == -1) return;
  CONVKIT_CHECK(s >= 0, "__dlpack__: stream must be None, -1 or a CUDA stream handle, got ", s);
  if (s == 0) throw py::value_error("__dlpack__: stream 0 is ambiguous for CUDA; pass 1 (legacy default) or 2");
  cuda_stream_wait(reinterpret_cast<void*>(static_cast<uintptr_t>(s == 1 ? 0 : s)));
}

py::object dlpack_export(const DeviceArray& d, py::object stream, py::object max_version, py::object dl_device,
                         py::object copy) {
  if (!dl_device.is_none()) {
    auto dev = dl_device.cast<std::pair<int, int>>();
    if (dev.first != dlpack::kDLCUDA || dev.second != d.device_index)
      throw py::buffer_error(str_cat("__dlpack__: this DeviceArray lives on CUDA device ", d.device_index,
                                     "; export to device (", dev.first, ", ", dev.second,
                                     ") needs a copy: use .to_numpy() for the CPU"));
  }
  const DeviceArray* src = &d;
  DeviceArray copied;
  bool is_copy = false;
  if (!copy.is_none() && copy.cast<bool>()) {
    copied = DeviceArray::empty(d.dtype, d.shape);
    if (d.nbytes()) cuda_memcpy_d2d(copied.data(), d.data(), d.nbytes());
    src = &copied;
    is_copy = true;
  }
  sync_for_consumer(stream);
  bool versioned = false;
  if (!max_version.is_none()) {
    auto v = max_version.cast<std::pair<int, int>>();
    versioned = v.first >= 1;
  }
  if (versioned) {
    dlpack::ManagedTensorVersioned* mt = make_managed<dlpack::ManagedTensorVersioned>(*src);
    mt->version = {dlpack::kMajor, dlpack::kMinor};
    mt->flags = is_copy ? dlpack::kFlagIsCopied : 0;
    PyObject* cap = PyCapsule_New(mt, "dltensor_versioned", versioned_capsule_destructor);
    if (!cap) {
      mt->deleter(mt);
      throw py::error_already_set();
    }
    return py::reinterpret_steal<py::object>(cap);
  }
  dlpack::ManagedTensor* mt = make_managed<dlpack::ManagedTensor>(*src);
  PyObject* cap = PyCapsule_New(mt, "dltensor", legacy_capsule_destructor);
  if (!cap) {
    mt->deleter(mt);
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::object>(cap);
}

// ---- DLPack import ---------------------------------------------------------------------------------------------
// Takes a capsule a producer made for us (legacy or versioned), checks that it is a compact row-major
// CUDA array of a dtype convkit knows, marks the capsule used and wraps the memory without a copy; the
// producer's deleter runs when the last view of the new DeviceArray goes away.

DType dtype_from_dl(const dlpack::DataType& t) {
  CONVKIT_CHECK(t.lanes == 1, "from_dlpack: vector dtypes (lanes = ", t.lanes, ") are not supported");
  if (t.code == dlpack::kDLFloat && t.bits == 32) return DType::Float32;
  if (t.code == dlpack::kDLFloat && t.bits == 64) return DType::Float64;
  if (t.code == dlpack::kDLInt && t.bits == 64) return DType::Int64;
  if (t.code == dlpack::kDLUInt && t.bits == 8) return DType::UInt8;
  throw py::type_error(str_cat("from_dlpack: unsupported dtype (code ", int(t.code), ", ", int(t.bits),
                               " bits); convkit arrays are float32, float64, int64 or uint8"));
}

DeviceArray wrap_dl(const dlpack::Tensor& t, std::function<void()> release) {
  CONVKIT_CHECK(t.device.device_type == dlpack::kDLCUDA, "from_dlpack: the array is not in CUDA device memory "
                "(DLPack device type ", t.device.device_type, "); use numpy for CPU arrays");
  CONVKIT_CHECK(t.ndim >= 0 && t.ndim <= kMaxDims, "from_dlpack: ", t.ndim, " dimensions, at most ", kMaxDims,
                " are supported");
  DeviceArray a;
  a.dtype = dtype_from_dl(t.dtype);
  a.device_index = t.device.device_id;
  a.shape.assign(t.shape, t.shape + t.ndim);
  if (t.strides) {
    int64_t expect = 1;
    for (int i = t.ndim - 1; i >= 0; --i) {
      CONVKIT_CHECK(a.shape[i] == 1 || t.strides[i] == expect,
                    "from_dlpack: the array is not C-contiguous (make it contiguous first, e.g. .contiguous())");
      expect *= a.shape[i];
    }
  }
  char* base = static_cast<char*>(t.data) + t.byte_offset;
  a.storage = std::shared_ptr<void>(base, [release](void*) { release(); });
  a.offset = 0;
  return a;
}

DeviceArray dlpack_import(py::capsule cap) {
  PyObject* c = cap.ptr();
  if (PyCapsule_IsValid(c, "dltensor_versioned")) {
    auto* mt = static_cast<dlpack::ManagedTensorVersioned*>(PyCapsule_GetPointer(c, "dltensor_versioned"));
    CONVKIT_CHECK(mt->version.major == 1, "from_dlpack: DLPack major version ", mt->version.major,
                  " is not supported (convkit reads 1.x)");
    CONVKIT_CHECK(!(mt->flags & dlpack::kFlagReadOnly), "from_dlpack: the producer marked the array read-only; "
                  "convkit arrays are writable, so pass a copy");
    DeviceArray a = wrap_dl(mt->dl_tensor, [mt] { if (mt->deleter) mt->deleter(mt); });
    PyCapsule_SetName(c, "used_dltensor_versioned");
    return a;
  }
  if (PyCapsule_IsValid(c, "dltensor")) {
    auto* mt = static_cast<dlpack::ManagedTensor*>(PyCapsule_GetPointer(c, "dltensor"));
    DeviceArray a = wrap_dl(mt->dl_tensor, [mt] { if (mt->deleter) mt->deleter(mt); });
    PyCapsule_SetName(c, "used_dltensor");
    return a;
  }
  throw py::value_error("from_dlpack: not an unused DLPack capsule (\"dltensor\" or \"dltensor_versioned\")");
}

}  // namespace

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
      .def("__dlpack__", &dlpack_export, py::kw_only(), py::arg("stream") = py::none(),
           py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(), py::arg("copy") = py::none(),
           "DLPack export (no copy): a capsule that keeps the memory alive until the consumer is done.")
      .def("__dlpack_device__", [](const DeviceArray& d) { return py::make_tuple(int(dlpack::kDLCUDA), d.device_index); })
      .def_static("_from_dlpack", &dlpack_import, py::arg("capsule"),
                  "Wrap a DLPack capsule of a C-contiguous CUDA array (no copy); see convkit.from_dlpack.")
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
