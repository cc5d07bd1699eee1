// The Python binding (module convkit_custom_op._leaky_relu): per op, convert the arguments to views
// with convkit::ext::as_tensor (numpy or convkit.DeviceArray, checked like convkit's own ops),
// allocate the output on the input's device, release the GIL, call the checked entry point.
#include "leaky_relu.h"

namespace py = pybind11;
using convkit::Tensor;
using namespace convkit::ext;

PYBIND11_MODULE(_leaky_relu, m) {
  m.doc() = "Leaky ReLU kernels (CPU and, when built with nvcc, CUDA) for convkit";
  m.attr("cuda_compiled") = convkit::cuda_compiled();
  m.attr("extension_api_version") = CONVKIT_EXTENSION_API_VERSION;

  m.def("leaky_relu_forward", [](py::object x, double slope) {
    Tensor tx = as_tensor(x, "leaky_relu_forward", "x");
    auto [y, ty] = new_array_like(tx);
    {
      py::gil_scoped_release nogil;  // the kernel runs without the GIL; y is returned with it held
      custom_op::leaky_relu_forward(tx, ty, slope);
    }
    return y;
  }, py::arg("x"), py::arg("slope"), "y = x if x > 0 else slope * x (a new array on x's device)");

  m.def("leaky_relu_backward", [](py::object dy, py::object x, double slope) {
    Tensor tdy = as_tensor(dy, "leaky_relu_backward", "dy");
    Tensor tx = as_tensor(x, "leaky_relu_backward", "x");
    auto [dx, tdx] = new_array_like(tx);
    {
      py::gil_scoped_release nogil;
      custom_op::leaky_relu_backward(tdy, tx, tdx, slope);
    }
    return dx;
  }, py::arg("dy"), py::arg("x"), py::arg("slope"), "dx = dy if x > 0 else slope * dy");
}
