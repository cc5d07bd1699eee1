"""The layers of LeNet/AlexNet/VGG: Conv2d, MaxPool2d, LocalResponseNorm, Linear, ReLU, Dropout, Flatten.

Constructor arguments follow PyTorch; so does the default initialization (weights and biases
uniform in +-1/sqrt(fan_in), which is what kaiming_uniform_(a=sqrt(5)) gives), drawn from `rng`
(None: convkit.nn's default generator, see manual_seed; an int seed; or a numpy Generator).
Every computation is a convkit.functional kernel.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..device import DeviceArray
from . import _arith
from .module import Module, Parameter, as_generator, is_grad_enabled

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _dtype(dtype, cls: str) -> np.dtype:
    d = np.dtype(dtype)
    if d not in _DTYPES:
        raise TypeError(f"{cls}: dtype must be float32 or float64, got {d}")
    return d


def _pos_int(v, cls: str, name: str, minimum: int = 1) -> int:
    return F._int(v, cls, name, minimum)


def _uniform(rng, shape, bound: float, dtype) -> np.ndarray:
    """Uniform in [-bound, bound), drawn in float32 whatever the dtype (fast for AlexNet's 58M FC
    weights, and the same values for a float32 and a float64 model built from the same seed)."""
    u = rng.random(shape, dtype=np.float32)
    u *= np.float32(2 * bound)
    u -= np.float32(bound)
    return np.ascontiguousarray(u, dtype=dtype)


def _check_input(cls: str, x, ndim: int, layout: str, channels: int | None = None, ch_name: str = "") -> None:
    F.check_array(x, cls, "x", ndim, layout)
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{cls}: x must have {channels} {ch_name} (shape {layout}), got shape {list(x.shape)}")


def _check_in_shape(cls: str, shape, ndim: int, layout: str, channels=None, ch_name: str = "") -> tuple:
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim:
        raise ValueError(f"{cls}: input must have shape {layout}, got {list(shape)}")
    if channels is not None and shape[1] != channels:
        raise ValueError(f"{cls}: input must have {channels} {ch_name} (shape {layout}), got {list(shape)}")
    return shape


class Conv2d(Module):
    """2-D convolution (cross-correlation), NCHW; weight [OC, C/groups, KH, KW], bias [OC]."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, rng=None, dtype=np.float32):
        super().__init__()
        cls = "Conv2d"
        self.in_channels = _pos_int(in_channels, cls, "in_channels")
        self.out_channels = _pos_int(out_channels, cls, "out_channels")
        self.kernel_size = F._pair(kernel_size, cls, "kernel_size", 1)
        self.stride = F._pair(stride, cls, "stride", 1)
        self.padding = F._pair(padding, cls, "padding", 0)
        self.dilation = F._pair(dilation, cls, "dilation", 1)
        self.groups = _pos_int(groups, cls, "groups")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"{cls}: groups={self.groups} must divide in_channels={self.in_channels} and "
                             f"out_channels={self.out_channels}")
        dtype = _dtype(dtype, cls)
        rng = as_generator(rng)
        fan_in = self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / np.sqrt(fan_in)
        self.weight = Parameter(_uniform(rng, (self.out_channels, self.in_channels // self.groups,
                                               *self.kernel_size), bound, dtype))
        self.bias = Parameter(_uniform(rng, (self.out_channels,), bound, dtype)) if bias else None
        self._cache = None

    def _args(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def forward(self, x):
        _check_input("Conv2d", x, 4, "[N, C, H, W]", self.in_channels, "channels")
        b = self.bias.data if self.bias is not None else None
        y = F.conv2d(x, self.weight.data, b, **self._args())
        self._cache = x if is_grad_enabled() else None
        return y

    def backward(self, dy, param_grads: bool = True, input_grad: bool = True):
        x = self._cache
        if x is None:
            self._need_cache("input")
        if param_grads and self.weight.requires_grad:
            self.weight.accumulate_grad(F.conv2d_backward_weight(x, dy, self.weight.shape, **self._args()))
        if param_grads and self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate_grad(F.conv2d_backward_bias(dy))
        if not input_grad:
            return None
        return F.conv2d_backward_data(dy, self.weight.data, tuple(x.shape), **self._args())

    def output_shape(self, input_shape):
        n, c, h, w = _check_in_shape("Conv2d", input_shape, 4, "[N, C, H, W]", self.in_channels, "channels")
        oh = F.conv_out_size(h, self.kernel_size[0], self.stride[0], self.padding[0], self.dilation[0])
        ow = F.conv_out_size(w, self.kernel_size[1], self.stride[1], self.padding[1], self.dilation[1])
        if oh <= 0 or ow <= 0:
            raise ValueError(f"Conv2d: output size {oh}x{ow} <= 0 for input {h}x{w}")
        return (n, self.out_channels, oh, ow)

    def macs(self, input_shape):
        n, oc, oh, ow = self.output_shape(input_shape)
        return n * oc * oh * ow * (self.in_channels // self.groups) * self.kernel_size[0] * self.kernel_size[1]

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Linear(Module):
    """Fully connected: y = x @ weight.T + bias; x [N, in_features], weight [out_features, in_features]."""

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        super().__init__()
        cls = "Linear"
        self.in_features = _pos_int(in_features, cls, "in_features")
        self.out_features = _pos_int(out_features, cls, "out_features")
        dtype = _dtype(dtype, cls)
        rng = as_generator(rng)
        bound = 1.0 / np.sqrt(self.in_features)
        self.weight = Parameter(_uniform(rng, (self.out_features, self.in_features), bound, dtype))
        self.bias = Parameter(_uniform(rng, (self.out_features,), bound, dtype)) if bias else None
        self._cache = None

    def forward(self, x):
        _check_input("Linear", x, 2, "[N, in_features]", self.in_features, "features")
        y = F.linear(x, self.weight.data, self.bias.data if self.bias is not None else None)
        self._cache = x if is_grad_enabled() else None
        return y

    def backward(self, dy, param_grads: bool = True, input_grad: bool = True):
        x = self._cache
        if x is None:
            self._need_cache("input")
        if param_grads and self.weight.requires_grad:
            self.weight.accumulate_grad(F.linear_backward_weight(x, dy))
        if param_grads and self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate_grad(F.linear_backward_bias(dy))
        return F.linear_backward_data(dy, self.weight.data) if input_grad else None

    def output_shape(self, input_shape):
        n, _ = _check_in_shape("Linear", input_shape, 2, "[N, in_features]", self.in_features, "features")
        return (n, self.out_features)

    def macs(self, input_shape):
        return self.output_shape(input_shape)[0] * self.in_features * self.out_features

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class MaxPool2d(Module):
    """Max pooling; stride defaults to kernel_size; ceil_mode as PyTorch (see csrc/ops/max_pool2d.h)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__()
        cls = "MaxPool2d"
        self.kernel_size = F._pair(kernel_size, cls, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else F._pair(stride, cls, "stride", 1)
        self.padding = F._pair(padding, cls, "padding", 0)
        if not isinstance(ceil_mode, (bool, np.bool_)):
            raise TypeError(f"{cls}: ceil_mode must be a bool, got {type(ceil_mode).__name__}")
        self.ceil_mode = bool(ceil_mode)
        self._cache = None

    def _args(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, ceil_mode=self.ceil_mode)

    def forward(self, x):
        _check_input("MaxPool2d", x, 4, "[N, C, H, W]")
        if is_grad_enabled():
            y, idx = F.max_pool2d(x, return_indices=True, **self._args())
            self._cache = (idx, tuple(x.shape))
        else:
            y, self._cache = F.max_pool2d(x, **self._args()), None
        return y

    def backward(self, dy, param_grads: bool = True, input_grad: bool = True):
        if self._cache is None:
            self._need_cache("argmax indices")
        if not input_grad:
            return None
        idx, shape = self._cache
        return F.max_pool2d_backward(dy, idx, shape, **self._args())

    def output_shape(self, input_shape):
        n, c, h, w = _check_in_shape("MaxPool2d", input_shape, 4, "[N, C, H, W]")
        _, _, _, _, out = F._pool_params("MaxPool2d", (n, c, h, w), self.kernel_size, self.stride, self.padding,
                                         self.ceil_mode)
        return out

    def extra_repr(self):
        s = f"kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        return s + (", ceil_mode=True" if self.ceil_mode else "")


class LocalResponseNorm(Module):
    """LRN across channels, PyTorch's convention: y = x / (k + alpha/size * sum_window x^2)^beta."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = F._lrn_params("LocalResponseNorm", size, alpha, beta, k)
        self._cache = None

    def _args(self):
        return dict(size=self.size, alpha=self.alpha, beta=self.beta, k=self.k)

    def forward(self, x):
        _check_input("LocalResponseNorm", x, 4, "[N, C, H, W]")
        if is_grad_enabled():
            y, scale = F.local_response_norm(x, return_scale=True, **self._args())
            self._cache = (x, y, scale)
        else:
            y, self._cache = F.local_response_norm(x, **self._args()), None
        return y

    def backward(self, dy, param_grads: bool = True, input_grad: bool = True):
        if self._cache is None:
            self._need_cache("input")
        if not input_grad:
            return None
        x, y, scale = self._cache
        return F.local_response_norm_backward(x, y, scale, dy, **self._args())

    def output_shape(self, input_shape):
        return _check_in_shape("LocalResponseNorm", input_shape, 4, "[N, C, H, W]")

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class ReLU(Module):
    """y = max(x, 0). (`inplace` is accepted for PyTorch compatibility and ignored.)"""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self._cache = None

    def forward(self, x):
        F.check_array(x, "ReLU", "x")
        y = F.relu(x)
        self._cache = y if is_grad_enabled() else None
        return y

    def backward(self, dy, param_grads: bool = True, input_grad: bool = True):
        if self._cache is None:
            self._need_cache("output")
        return F.relu_backward(dy, self._cache) if input_grad else None


class Dropout(Module):
    """Inverted dropout in training mode (a fresh seeded mask per forward), identity in eval mode.

    The masks come from `rng` (None: convkit.nn's default generator; an int seed; a Generator), one
    64-bit kernel seed per forward, so a seeded run is reproducible on every device and thread count.
    """

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        self.p = F._float(p, "Dropout", "p", 0.0, 1.0, hi_open=True)
        self._rng = as_generator(rng)
        self._cache = None

    def forward(self, x):
        F.check_array(x, "Dropout", "x")
        if not self.training or self.p == 0.0:
            self._cache = "identity"
            return x
        seed = int(self._rng.integers(0, 2**63))
        y, mask = F.dropout(x, self.p, seed)
        self._cache = mask if is_grad_enabled() else None
        return y

    def backward(self, dy, param_grads: bool = True, input_grad: bool = True):
        if self._cache is None:
            self._need_cache("mask")
        if not input_grad:
            return None
        if isinstance(self._cache, str):
            return dy
        return F.dropout_backward(dy, self._cache, self.p)

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    """[N, d1, d2, ...] -> [N, d1 * d2 * ...] (start_dim=1, as PyTorch's nn.Flatten)."""

    def __init__(self, start_dim: int = 1):
        super().__init__()
        if start_dim != 1:
            raise ValueError(f"Flatten: only start_dim=1 is supported, got {start_dim}")
        self._cache = None

    def forward(self, x):
        F.check_array(x, "Flatten", "x")
        if x.ndim < 2:
            raise ValueError(f"Flatten: x must have at least 2 dimensions [N, ...], got shape {list(x.shape)}")
        n = x.shape[0]
        flat = math.prod(x.shape[1:])  # plain ints: np.prod costs 30-90 us right after a big kernel
        self._cache = tuple(x.shape) if is_grad_enabled() else None
        return x.reshape([n, flat]) if isinstance(x, DeviceArray) else x.reshape(n, flat)

    def backward(self, dy, param_grads: bool = True, input_grad: bool = True):
        if self._cache is None:
            self._need_cache("input shape")
        if not input_grad:
            return None
        return dy.reshape(list(self._cache)) if isinstance(dy, DeviceArray) else dy.reshape(self._cache)

    def output_shape(self, input_shape):
        input_shape = tuple(int(s) for s in input_shape)
        return (input_shape[0], math.prod(input_shape[1:]))  # exact for any size (no int64 wrap)


class Normalize(Module):
    """Per-channel input standardization y = (x - mean[c]) / std[c] (no parameters): puts the
    preprocessing inside the network, so the network takes images in their pixel range ([0, 1])
    and attacks and saliency see pixel units. mean/std: one number or one per channel."""

    def __init__(self, mean, std):
        super().__init__()
        self.mean = np.atleast_1d(np.asarray(mean, dtype=np.float64))
        self.std = np.atleast_1d(np.asarray(std, dtype=np.float64))
        sizes = (self.mean.size, self.std.size)
        if self.mean.ndim != 1 or self.std.ndim != 1 or (sizes[0] != sizes[1] and 1 not in sizes):
            raise ValueError(f"Normalize: mean and std must be numbers or equal-length sequences, "
                             f"got {mean!r}, {std!r}")
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.std)) and np.all(self.std > 0)):
            raise ValueError(f"Normalize: mean must be finite and std finite and > 0, got {mean!r}, {std!r}")
        self.mean, self.std = np.broadcast_arrays(self.mean, self.std)
        self.mean, self.std = self.mean.copy(), self.std.copy()
        self._cache = None

    def _channels(self, x_shape, fn):
        c = x_shape[1] if len(x_shape) > 1 else 0
        if self.mean.size not in (1, c):
            raise ValueError(f"Normalize: x has {c} channels but mean/std have {self.mean.size}")
        return (np.broadcast_to(self.mean, (c,)), np.broadcast_to(self.std, (c,)))

    def forward(self, x):
        F.check_array(x, "Normalize", "x")
        if x.ndim < 2:
            raise ValueError(f"Normalize: x must be [N, C, ...], got shape {list(x.shape)}")
        mean, std = self._channels(x.shape, "forward")
        self._cache = "ok" if is_grad_enabled() else None
        return _arith.affine_channels(x, 1.0 / std, -mean / std)

    def backward(self, dy, param_grads: bool = True, input_grad: bool = True):
        if self._cache is None:
            self._need_cache("forward pass")
        if not input_grad:
            return None
        _, std = self._channels(dy.shape, "backward")
        return _arith.affine_channels(dy, 1.0 / std, np.zeros_like(std))

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def extra_repr(self):
        return f"mean={self.mean.tolist()}, std={self.std.tolist()}"
