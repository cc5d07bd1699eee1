"""convkit_custom_op: an example convkit extension, a leaky ReLU layer in C++ (OpenMP) and CUDA.

    import convkit, convkit_custom_op as cop
    y = cop.leaky_relu(x, slope=0.1)                  # numpy (CPU) or convkit.DeviceArray (CUDA)
    dx = cop.leaky_relu_backward(dy, x, slope=0.1)
    model = convkit.nn.Sequential([..., cop.LeakyReLU(0.1), ...])

The arguments are checked here with convkit.functional's helpers (the same errors as built-in ops)
and again in C++.
"""
from __future__ import annotations

from convkit import functional as F
from convkit.nn import Module, is_grad_enabled

from . import _leaky_relu as _ext

__all__ = ["LeakyReLU", "cuda_compiled", "leaky_relu", "leaky_relu_backward"]

cuda_compiled: bool = bool(_ext.cuda_compiled)


def _slope(slope, fn: str) -> float:
    return F._float(slope, fn, "slope")  # a finite number (TypeError / ValueError otherwise)


def leaky_relu(x, slope: float = 0.01):
    """y = x if x > 0 else slope * x, as a new array on x's device."""
    F.check_array(x, "leaky_relu", "x")
    return _ext.leaky_relu_forward(x, _slope(slope, "leaky_relu"))


def leaky_relu_backward(dy, x, slope: float = 0.01):
    """dx = dy if x > 0 else slope * dy (x: the forward input)."""
    fn = "leaky_relu_backward"
    F.check_array(dy, fn, "dy")
    F.check_array(x, fn, "x")
    F.check_same(fn, x, "x", dy=dy)
    F.check_shape(fn, "dy", dy, x.shape)
    return _ext.leaky_relu_backward(dy, x, _slope(slope, fn))


class LeakyReLU(Module):
    """convkit.nn layer: y = x if x > 0 else negative_slope * x (PyTorch's nn.LeakyReLU)."""

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = _slope(negative_slope, "LeakyReLU")
        self._cache = None

    def forward(self, x):
        F.check_array(x, "LeakyReLU", "x")
        y = _ext.leaky_relu_forward(x, self.negative_slope)
        self._cache = x if is_grad_enabled() else None
        return y

    def backward(self, dy, param_grads: bool = True, input_grad: bool = True):
        if self._cache is None:
            self._need_cache("input")
        return leaky_relu_backward(dy, self._cache, self.negative_slope) if input_grad else None

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"
