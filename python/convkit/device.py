"""Where arrays live: numpy arrays on the CPU, DeviceArray on CUDA; moving between them; and the
numpy-like subset of DeviceArray that device-agnostic code (optimizers, attacks, style transfer) uses.

DeviceArray supports, with numpy's meaning:

- ``+ - * /`` with a DeviceArray of the same shape and dtype or with a Python/numpy scalar (both
  orders), the in-place forms ``+= -= *= /=``, unary ``-``, ``abs()``, ``x ** scalar``;
- methods ``abs sign sqrt exp log clip(lo, hi) maximum(v) minimum(v)`` (``v`` a scalar or an array of
  the same shape), ``fill_(v)`` (in place, returns the array), ``copy() reshape() ravel() astype()``;
- reductions over all elements, ``sum() mean() max() min()``: they return a **0-d DeviceArray** (the
  value stays on the device, so a training step needs no host round trip); ``float(r)``, ``r.item()``
  or ``format(r, ".3f")`` read it, which waits for the device;
- ``item()``, ``to_numpy()``, ``to("cpu" | "cuda")``, ``len()``, DLPack and ``__cuda_array_interface__``.

Arithmetic is float32/float64 only and never broadcasts; mixing devices raises ValueError, mixing
dtypes raises TypeError (no silent promotion). numpy operators defer to DeviceArray
(``__array_ufunc__ = None``), so ``numpy_array + device_array`` raises the same clear error.

The module-level functions (``sign``, ``clip``, ``sum``, ``zeros_like``, ``sgd_update`` ...) take numpy
arrays or DeviceArrays and run where the array lives, so one code path serves both devices.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _core

DeviceArray = _core.DeviceArray

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64), np.dtype(np.uint8))
_U = _core.UNARY_OPS
_B = _core.BINARY_OPS
_R = _core.REDUCE_OPS


def cuda_available() -> bool:
    """True when convkit was built with CUDA and a device is usable right now."""
    if not _core.cuda_compiled():
        return False
    n, _ = _core.cuda_device_count()
    return n > 0


def cuda_unavailable_reason() -> str:
    """Why CUDA cannot be used ('' when it can)."""
    if not _core.cuda_compiled():
        return "convkit was built without CUDA support (nvcc was not found at build time)"
    n, reason = _core.cuda_device_count()
    return "" if n > 0 else reason


def device_of(x) -> str:
    """'cpu' for numpy arrays, 'cuda' for DeviceArray; TypeError otherwise."""
    if isinstance(x, np.ndarray):
        return "cpu"
    if isinstance(x, DeviceArray):
        return "cuda"
    raise TypeError(f"expected a numpy array or convkit.DeviceArray, got {type(x).__name__}")


def _check_device_name(device: str) -> str:
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not cuda_available():
        raise RuntimeError(f"device='cuda' requested but CUDA is not usable: {cuda_unavailable_reason()}")
    return device


def _convkit_dtype(dtype, fn: str) -> np.dtype:
    d = np.dtype(dtype)
    if d not in _DTYPES:
        raise TypeError(f"{fn}: dtype must be float32, float64, int64 or uint8, got {d}")
    return d


def asarray(x, dtype=None, *, device: str | None = None, copy: bool | None = None):
    """numpy.asarray with a device: x as a C-contiguous numpy array ('cpu') or DeviceArray ('cuda').

    device=None keeps a DeviceArray on the device and puts anything else on the CPU (the array API
    standard's rule). dtype converts (on the device when x is there). copy=True always copies;
    copy=None copies only when needed; copy=False raises ValueError when a copy would be needed.
    """
    if device is None:
        device = "cuda" if isinstance(x, DeviceArray) else "cpu"
    _check_device_name(device)
    if isinstance(x, DeviceArray):
        want = x.dtype if dtype is None else _convkit_dtype(dtype, "asarray")
        if device == "cpu":
            if copy is False:
                raise ValueError("asarray: copy=False, but moving a DeviceArray to the CPU copies it")
            a = x.to_numpy()
            return a if want == a.dtype else a.astype(want)
        if want != x.dtype:
            if copy is False:
                raise ValueError(f"asarray: copy=False, but converting {x.dtype} to {want} copies")
            return _core.astype(x, want)
        return x.copy() if copy else x
    if device == "cuda":
        if copy is False:
            raise ValueError("asarray: copy=False, but moving an array to the device copies it")
        a = np.ascontiguousarray(x, dtype=dtype)
        _convkit_dtype(a.dtype, "asarray")
        return DeviceArray.from_numpy(a)
    if copy is False:
        return np.asarray(x, dtype=dtype, copy=False)
    a = np.array(x, dtype=dtype, copy=True, order="C") if copy else np.ascontiguousarray(x, dtype=dtype)
    return a


def to_numpy(x) -> np.ndarray:
    """A numpy copy (DeviceArray) or the array itself (numpy)."""
    if isinstance(x, DeviceArray):
        return x.to_numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"expected a numpy array or convkit.DeviceArray, got {type(x).__name__}")


def from_dlpack(x) -> DeviceArray:
    """A DeviceArray sharing the memory of a CUDA array from another library (PyTorch, CuPy, JAX ...)
    through DLPack, without a copy. The array must be C-contiguous; the producer's work is ordered
    before convkit's stream. CPU arrays are rejected (use numpy.from_dlpack)."""
    if isinstance(x, DeviceArray):
        return x
    if not hasattr(x, "__dlpack__"):
        raise TypeError(f"from_dlpack: {type(x).__name__} does not implement __dlpack__")
    dev_type, _ = x.__dlpack_device__()
    if int(dev_type) != 2:
        raise ValueError(f"from_dlpack: the array is not in CUDA memory (DLPack device type {int(dev_type)}); "
                         f"use numpy.from_dlpack for CPU arrays")
    if not cuda_available():
        raise RuntimeError(f"from_dlpack: CUDA is not usable: {cuda_unavailable_reason()}")
    stream = _core.cuda_current_stream()
    try:
        cap = x.__dlpack__(stream=stream, max_version=(1, 0))
    except TypeError:  # producers that predate DLPack 1.0's keywords
        cap = x.__dlpack__(stream=stream)
    return DeviceArray._from_dlpack(cap)


def zeros(shape, dtype=np.float32, device: str = "cpu"):
    """numpy.zeros on `device`."""
    _check_device_name(device)
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    d = _convkit_dtype(dtype, "zeros")
    return DeviceArray.zeros(list(shape), d) if device == "cuda" else np.zeros(shape, d)


def empty(shape, dtype=np.float32, device: str = "cpu"):
    """numpy.empty on `device` (contents undefined)."""
    _check_device_name(device)
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    d = _convkit_dtype(dtype, "empty")
    return DeviceArray.empty(list(shape), d) if device == "cuda" else np.empty(shape, d)


def zeros_like(x, dtype=None):
    """Zeros with x's shape (and dtype unless given), where x lives."""
    if isinstance(x, DeviceArray):
        return DeviceArray.zeros(list(x.shape), x.dtype if dtype is None else _convkit_dtype(dtype, "zeros_like"))
    return np.zeros_like(x, dtype=dtype)


def empty_like(x, dtype=None):
    if isinstance(x, DeviceArray):
        return DeviceArray.empty(list(x.shape), x.dtype if dtype is None else _convkit_dtype(dtype, "empty_like"))
    return np.empty_like(x, dtype=dtype)


def full_like(x, value, dtype=None):
    if isinstance(x, DeviceArray):
        return empty_like(x, dtype).fill_(value)
    return np.full_like(x, value, dtype=dtype)


# ---- DeviceArray methods ----------------------------------------------------------------------------------

def _is_scalar(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (np.ndarray, DeviceArray))


def _check_float(x, fn: str):
    if x.dtype not in _FLOATS:
        raise TypeError(f"{fn}: DeviceArray arithmetic needs float32 or float64, got {x.dtype} "
                        f"(use .astype(numpy.float32) first)")


def _check_partner(fn: str, x, y):
    if _is_scalar(y):
        return
    if isinstance(y, DeviceArray):
        if y.dtype != x.dtype:
            raise TypeError(f"{fn}: dtypes {x.dtype} and {y.dtype} differ; convert one with .astype()")
        if tuple(y.shape) != tuple(x.shape):
            raise ValueError(f"{fn}: shapes {list(x.shape)} and {list(y.shape)} differ (DeviceArray does not "
                             f"broadcast)")
        return
    if isinstance(y, np.ndarray):
        if y.ndim == 0 and y.dtype.kind in "fiu":
            return
        raise ValueError(f"{fn}: one operand is on cuda (DeviceArray) and the other on cpu (numpy array); "
                         f"move both to one device (convkit.asarray(a, device=...))")
    raise TypeError(f"{fn}: unsupported operand type {type(y).__name__}")


def _scalar(v) -> float:
    return float(v.item() if isinstance(v, np.ndarray) else v)


def _binary(name: str, bop: str, sop: str, rsop: str | None = None):
    def fwd(self, other):
        if not (_is_scalar(other) or isinstance(other, (DeviceArray, np.ndarray))):
            return NotImplemented
        _check_float(self, name)
        _check_partner(name, self, other)
        if isinstance(other, DeviceArray):
            return _core.binary_op(_B[bop], self, other)
        return _core.unary_op(_U[sop], self, _scalar(other))

    def rev(self, other):
        if not (_is_scalar(other) or isinstance(other, np.ndarray)):
            return NotImplemented
        _check_float(self, name)
        _check_partner(name, self, other)
        return _core.unary_op(_U[rsop], self, _scalar(other))

    def inplace(self, other):
        if not (_is_scalar(other) or isinstance(other, (DeviceArray, np.ndarray))):
            return NotImplemented
        _check_float(self, name)
        _check_partner(name, self, other)
        if isinstance(other, DeviceArray):
            return _core.binary_op(_B[bop], self, other, out=self)
        return _core.unary_op(_U[sop], self, _scalar(other), out=self)

    return fwd, rev, inplace


def _unary(op: str, doc: str):
    code = _U[op]

    def f(self):
        _check_float(self, op)
        return _core.unary_op(code, self)

    f.__name__ = op
    f.__doc__ = doc
    return f


def _pair_op(op: str):
    def f(self, other):
        _check_float(self, op)
        _check_partner(op, self, other)
        if isinstance(other, DeviceArray):
            return _core.binary_op(_B[op], self, other)
        return _core.unary_op(_U[op], self, _scalar(other))

    f.__name__ = op
    f.__doc__ = f"Elementwise {op} with a scalar or a DeviceArray of the same shape (NaN propagates)."
    return f


def _reduce(op: str):
    code = _R[op]

    def f(self):
        _check_float(self, op)
        return _core.reduce_all(code, self)

    f.__name__ = op
    f.__doc__ = (f"{op} over all elements, accumulated in double, as a 0-d DeviceArray of this dtype "
                 f"(read it with float() or .item()).")
    return f


def _clip(self, lo, hi):
    """numpy.clip(x, lo, hi) with scalar bounds (NaN stays NaN)."""
    _check_float(self, "clip")
    if not (_is_scalar(lo) and _is_scalar(hi)):
        raise TypeError("clip: lo and hi must be scalars")
    if float(lo) > float(hi):
        raise ValueError(f"clip: lower bound {lo} must be <= upper bound {hi}")
    return _core.unary_op(_U["clip"], self, float(lo), float(hi))


def _pow(self, exponent):
    if not _is_scalar(exponent):
        return NotImplemented
    _check_float(self, "power")
    if exponent == 2:
        return _core.unary_op(_U["square"], self)
    return _core.unary_op(_U["power"], self, float(exponent))


def _fill_(self, value):
    """Set every element to `value` in place; returns the array."""
    if not _is_scalar(value):
        raise TypeError(f"fill_: value must be a number, got {type(value).__name__}")
    _core.fill_(self, float(value))
    return self


def _astype(self, dtype, copy: bool = True):
    """A copy converted to `dtype` (float32, float64, int64, uint8) on the device; float -> int
    truncates toward zero and saturates, NaN becomes 0."""
    d = _convkit_dtype(dtype, "astype")
    if d == self.dtype and not copy:
        return self
    return _core.astype(self, d)


def _reshape(self, *shape):
    """A view with a new shape (numpy's forms: reshape(2, 3) or reshape((2, 3)); one -1 is inferred)."""
    if len(shape) == 1 and not isinstance(shape[0], numbers.Integral):
        shape = tuple(shape[0])
    return _raw_reshape(self, [int(s) for s in shape])


def _item(self):
    """The single element as a Python float/int (waits for the device)."""
    if self.size != 1:
        raise ValueError(f"item: can only convert an array of size 1, got shape {list(self.shape)}")
    return self.to_numpy().reshape(()).item()


def _to(self, device: str):
    """'cpu' -> a numpy copy; 'cuda' -> this array."""
    if device == "cpu":
        return self.to_numpy()
    if device == "cuda":
        return self
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def _len(self):
    if not self.shape:
        raise TypeError("len() of a 0-d DeviceArray")
    return self.shape[0]


def _repr(self):
    return f"DeviceArray(shape={tuple(self.shape)}, dtype={self.dtype}, device='cuda')"


def _format(self, spec):
    if self.size == 1:
        return format(self.item(), spec)
    return format(repr(self), spec)


def _bool(self):
    if self.size != 1:
        raise ValueError("The truth value of a DeviceArray with more than one element is ambiguous")
    return bool(self.item())


_raw_reshape = DeviceArray.reshape
_add, _radd, _iadd = _binary("add", "add", "add", "add")
_sub, _rsub, _isub = _binary("subtract", "subtract", "subtract", "rsubtract")
_mul, _rmul, _imul = _binary("multiply", "multiply", "multiply", "multiply")
_div, _rdiv, _idiv = _binary("divide", "divide", "divide", "rdivide")

_METHODS = {
    "__add__": _add, "__radd__": _radd, "__iadd__": _iadd,
    "__sub__": _sub, "__rsub__": _rsub, "__isub__": _isub,
    "__mul__": _mul, "__rmul__": _rmul, "__imul__": _imul,
    "__truediv__": _div, "__rtruediv__": _rdiv, "__itruediv__": _idiv,
    "__neg__": _unary("neg", "-x"),
    "__pos__": lambda self: self,
    "__abs__": _unary("abs", "|x|"),
    "__pow__": _pow,
    "__len__": _len,
    "__repr__": _repr,
    "__format__": _format,
    "__float__": lambda self: float(_item(self)),
    "__int__": lambda self: int(_item(self)),
    "__bool__": _bool,
    "__array_ufunc__": None,
    "abs": _unary("abs", "Elementwise |x|."),
    "sign": _unary("sign", "Elementwise sign: -1, 0 or 1 (NaN stays NaN), as numpy.sign."),
    "sqrt": _unary("sqrt", "Elementwise square root."),
    "exp": _unary("exp", "Elementwise exp."),
    "log": _unary("log", "Elementwise natural log."),
    "clip": _clip,
    "maximum": _pair_op("maximum"),
    "minimum": _pair_op("minimum"),
    "sum": _reduce("sum"),
    "mean": _reduce("mean"),
    "max": _reduce("max"),
    "min": _reduce("min"),
    "fill_": _fill_,
    "astype": _astype,
    "reshape": _reshape,
    "ravel": lambda self: _raw_reshape(self, [-1]),
    "item": _item,
    "to": _to,
}
for _name, _fn in _METHODS.items():
    setattr(DeviceArray, _name, _fn)


# ---- device-agnostic functions ----------------------------------------------------------------------------

def _np_or_dev(fn_np, method: str):
    def f(x, *args):
        if isinstance(x, DeviceArray):
            return getattr(x, method)(*args)
        return fn_np(x, *args)

    f.__name__ = method
    f.__doc__ = f"numpy.{fn_np.__name__} for numpy arrays, DeviceArray.{method} on the device."
    return f


sign = _np_or_dev(np.sign, "sign")
sqrt = _np_or_dev(np.sqrt, "sqrt")
exp = _np_or_dev(np.exp, "exp")
log = _np_or_dev(np.log, "log")
absolute = _np_or_dev(np.abs, "abs")
clip = _np_or_dev(np.clip, "clip")
maximum = _np_or_dev(np.maximum, "maximum")
minimum = _np_or_dev(np.minimum, "minimum")
sum = _np_or_dev(np.sum, "sum")  # noqa: A001 - numpy's name on purpose
mean = _np_or_dev(np.mean, "mean")
amax = _np_or_dev(np.max, "max")
amin = _np_or_dev(np.min, "min")


def sgd_update(param, grad, momentum_buffer=None, *, lr: float, momentum: float = 0.0, dampening: float = 0.0,
               weight_decay: float = 0.0, nesterov: bool = False, first_step: bool = False) -> None:
    """One fused SGD step in place on `param` (and `momentum_buffer`), PyTorch's torch.optim.SGD rule
    (formula in csrc/ops/elementwise.h); numpy arrays or DeviceArrays, one kernel either way.
    first_step=True starts the buffer at the gradient, as PyTorch does on its first step."""
    _core.sgd_update(param, grad, momentum_buffer, float(lr), float(momentum), float(dampening),
                     float(weight_decay), bool(nesterov), bool(first_step))


def adam_update(param, grad, exp_avg, exp_avg_sq, *, lr: float, step: int, beta1: float = 0.9,
                beta2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
                decoupled: bool = False) -> None:
    """One fused Adam step (decoupled=True: AdamW) in place on param, exp_avg and exp_avg_sq, PyTorch's
    rule; `step` counts from 1. numpy arrays or DeviceArrays, one kernel either way."""
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(f"adam_update: step must be an int, got {type(step).__name__}")
    _core.adam_update(param, grad, exp_avg, exp_avg_sq, float(lr), float(beta1), float(beta2), float(eps),
                      float(weight_decay), int(step), bool(decoupled))


def synchronize() -> None:
    """Wait for all queued CUDA work on convkit's stream (and raise any error a kernel flagged); a no-op
    where no device is usable, so device-agnostic code may call it anywhere."""
    if cuda_available():
        _core.cuda_synchronize()

