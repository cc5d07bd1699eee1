"""convkit.extend: your own ops, written in Python, used like built-in layers.

Two ways, both giving a :class:`convkit.nn.Module` that works in ``Sequential``, under ``no_grad``,
with ``param_grads`` / ``input_grad``, and on CUDA wherever the body uses convkit ops:

1. ``@op``: a function of one array plus keyword hyperparameters, and its backward. The backward
   receives ``(dy, x, y, **params)`` (the input and output are kept for it automatically) and
   returns dx::

       import numpy as np
       from convkit import extend

       @extend.op
       def leaky_relu(x, slope=0.01):
           return np.where(x > 0, x, slope * x)

       @leaky_relu.backward
       def _(dy, x, y, slope=0.01):
           return np.where(x > 0, dy, slope * dy)

       y = leaky_relu(x, slope=0.1)                 # a checked function
       model = nn.Sequential(..., leaky_relu.module(slope=0.1), ...)   # a layer

   (``@extend.op(backward=fn, ndim=4, layout="[N, C, H, W]")`` is the same with the backward and
   the expected input rank given up front.)

2. ``class MyLayer(extend.Function)``: for ops with learnable parameters or state. Write
   ``forward(self, x)`` (call ``self.save(...)`` for what backward needs) and ``backward(self, dy)``
   returning dx, or ``(dx, {"weight": dw, ...})`` with gradients of the parameters by attribute name;
   the base class checks the input, keeps the saved values only when gradients are enabled,
   accumulates the parameter gradients into ``p.grad`` when asked, and checks every returned array.

What the machinery guarantees, so custom ops behave like built-in ones:
- the input is checked with :func:`convkit.functional.check_array` (a numpy array or DeviceArray,
  float32/float64, C-contiguous, native byte order, non-empty, the declared rank): bad input gets
  the same TypeError/ValueError messages as a built-in op, naming your op;
- results that are numpy arrays are returned C-contiguous in the input's dtype (so a float32 network
  stays float32 even if numpy promoted inside your body); a result on the wrong device, a gradient of
  the wrong shape or a non-array result raises a clear error naming your op and what it returned;
- hyperparameters are validated once when the module is made (unknown names -> TypeError).
"""
from __future__ import annotations

import functools
import inspect

import numpy as np

from . import functional as F
from .device import DeviceArray
from .nn.module import Module, is_grad_enabled

__all__ = ["Function", "Op", "op"]


def _device(x) -> str:
    return "cuda" if isinstance(x, DeviceArray) else "cpu"


def _shape(x) -> str:
    return "[" + ", ".join(str(int(s)) for s in x.shape) + "]"


def _conform(value, like, fn: str, what: str, shape=None):
    """Check an array that user code returned and bring numpy results to like's dtype and layout.

    fn: the op name for messages; what: 'forward result', 'gradient of x', ...; shape: the required
    shape (None: any)."""
    if not isinstance(value, (np.ndarray, DeviceArray)):
        if np.isscalar(value) or isinstance(value, (list, tuple)):
            raise TypeError(f"{fn}: {what} must be an array (numpy or convkit.DeviceArray), got "
                            f"{type(value).__name__}; return an array of the input's shape")
        raise TypeError(f"{fn}: {what} must be a numpy array or convkit.DeviceArray, got {type(value).__name__}")
    if _device(value) != _device(like):
        raise ValueError(f"{fn}: {what} is on {_device(value)} but the input is on {_device(like)}; "
                         f"an op must return arrays on its input's device")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise ValueError(f"{fn}: {what} must have shape {list(int(s) for s in shape)}, got {_shape(value)}")
    if isinstance(value, np.ndarray):
        if not np.issubdtype(value.dtype, np.floating):
            raise TypeError(f"{fn}: {what} must be a float array, got dtype {value.dtype}")
        value = np.ascontiguousarray(value, dtype=like.dtype)
    elif np.dtype(value.dtype) != np.dtype(like.dtype):
        raise TypeError(f"{fn}: {what} has dtype {value.dtype} but the input has {like.dtype}; they must match")
    return value


# ---- 1. @op: a stateless function and its backward -------------------------------------------------

class Op:
    """A checked function with a backward, made by :func:`op`. Call it like the function; get a layer
    with ``.module(**params)``; call the backward directly with ``.grad(dy, x, **params)``."""

    def __init__(self, forward, backward=None, ndim: int | None = None, layout: str | None = None,
                 name: str | None = None):
        if not callable(forward):
            raise TypeError(f"extend.op: forward must be callable, got {type(forward).__name__}")
        self._forward = forward
        self._backward = None
        self.name = name or forward.__name__
        self.ndim = ndim
        self.layout = layout or (f"{ndim}-D" if ndim is not None else None)
        sig = inspect.signature(forward)
        params = list(sig.parameters.values())
        if not params or params[0].kind not in (inspect.Parameter.POSITIONAL_ONLY,
                                                inspect.Parameter.POSITIONAL_OR_KEYWORD):
            raise TypeError(f"extend.op: {self.name} must take the input array as its first positional argument")
        self._hyper = sig.replace(parameters=params[1:])  # the keyword hyperparameters
        functools.update_wrapper(self, forward)
        if backward is not None:
            self.backward(backward)

    def backward(self, fn):
        """Set the backward: fn(dy, x, y, **params) -> dx. Usable as a decorator."""
        if not callable(fn):
            raise TypeError(f"extend.op: backward of {self.name} must be callable, got {type(fn).__name__}")
        self._backward = fn
        return fn

    # -- argument handling --
    def bind_params(self, params: dict) -> dict:
        """Validate hyperparameter names against the forward's signature; returns them with defaults."""
        try:
            bound = self._hyper.bind(**params)
        except TypeError as e:
            raise TypeError(f"{self.name}: {e}") from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def _check_input(self, x, fn=None):
        return F.check_array(x, fn or self.name, "x", self.ndim, self.layout)

    # -- calls --
    def __call__(self, x, **params):
        """y = forward(x, **params), with the input checked and the result conformed."""
        self._check_input(x)
        params = self.bind_params(params)
        y = self._forward(x, **params)
        return _conform(y, x, self.name, "forward result")

    def _apply(self, x, params):
        y = self._forward(x, **params)
        return _conform(y, x, self.name, "forward result")

    def grad(self, dy, x, y=None, **params):
        """dx for an upstream gradient dy (y: the forward result, recomputed when not given)."""
        self._check_input(x, f"{self.name}.backward")
        params = self.bind_params(params)
        if y is None:
            y = self._apply(x, params)
        return self._grad(dy, x, y, params)

    def _grad(self, dy, x, y, params):
        if self._backward is None:
            raise NotImplementedError(f"{self.name}: no backward defined; add one with @{self.name}.backward "
                                      f"or extend.op(backward=...)")
        fn = f"{self.name}.backward"
        F.check_array(dy, fn, "dy")
        F.check_same(fn, y, "y", dy=dy)
        F.check_shape(fn, "dy", dy, y.shape)
        dx = self._backward(dy, x, y, **params)
        return _conform(dx, x, self.name, "backward result (gradient of x)", shape=x.shape)

    def module(self, **params) -> "OpModule":
        """A convkit.nn.Module applying this op with fixed hyperparameters."""
        return OpModule(self, **params)

    def __repr__(self) -> str:
        return f"<convkit.extend.op {self.name}{self._hyper}>"


def op(forward=None, *, backward=None, ndim: int | None = None, layout: str | None = None, name: str | None = None):
    """Make a custom op from forward(x, **params) -> y (see the module docstring).

    backward: fn(dy, x, y, **params) -> dx (or set it later with ``@the_op.backward``);
    ndim / layout: the input rank required and how to describe it in errors (e.g. 4, "[N, C, H, W]");
    name: the name used in error messages (default: the function's name)."""
    def make(f):
        return Op(f, backward=backward, ndim=ndim, layout=layout, name=name)
    return make(forward) if forward is not None else make


class OpModule(Module):
    """The layer form of an :class:`Op`: keeps x and y for backward (unless under no_grad)."""

    def __init__(self, the_op: Op, **params):
        super().__init__()
        object.__setattr__(self, "op", the_op)
        self.params = the_op.bind_params(params)
        self._cache = None

    def forward(self, x):
        self.op._check_input(x)
        y = self.op._apply(x, self.params)
        self._cache = (x, y) if is_grad_enabled() else None
        return y

    def backward(self, dy, param_grads: bool = True, input_grad: bool = True):
        if self._cache is None:
            raise RuntimeError(f"{self.op.name}.backward: no input from a forward pass; run forward outside "
                               f"`with convkit.nn.no_grad():` before calling backward")
        if not input_grad:
            return None
        x, y = self._cache
        return self.op._grad(dy, x, y, self.params)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.params.items())

    def __repr__(self) -> str:
        return f"{self.op.name}({self.extra_repr()})"


# ---- 2. Function: a layer with parameters or state -------------------------------------------------

class Function(Module):
    """Base class for a custom layer written as forward + backward.

    Class attributes: ``ndim`` / ``layout`` (the input rank required and its description for
    errors, e.g. ``ndim = 4; layout = "[N, C, H, W]"``).

    Subclasses define ``__init__`` (calling ``super().__init__()``, then creating Parameters),
    ``forward(self, x)`` (``self.save(a, b, ...)`` keeps values for backward; it is a no-op under
    no_grad) and ``backward(self, dy)`` returning dx or ``(dx, {param_name: grad})``; inside backward,
    ``self.saved`` is the tuple given to save(), ``self.needs_input_grad`` / ``self.needs_param_grads``
    say what the caller wants (skip the work that is not needed; return None for dx then).
    """

    ndim: int | None = None
    layout: str | None = None

    def __init__(self):
        super().__init__()
        object.__setattr__(self, "_cache", None)
        object.__setattr__(self, "_saving", False)
        object.__setattr__(self, "needs_input_grad", True)
        object.__setattr__(self, "needs_param_grads", True)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        user_forward = cls.__dict__.get("forward")
        user_backward = cls.__dict__.get("backward")
        if user_forward is not None:
            cls._user_forward = user_forward
            cls.forward = Function._run_forward
        if user_backward is not None:
            cls._user_backward = user_backward
            cls.backward = Function._run_backward

    @property
    def op_name(self) -> str:
        return type(self).__name__

    def save(self, *values) -> None:
        """Keep values for backward (ignored under no_grad). Only valid inside forward."""
        if "_cache" not in self.__dict__:
            raise RuntimeError(f"{self.op_name}: call super().__init__() in __init__")
        if not self._saving:
            raise RuntimeError(f"{self.op_name}.save: call it inside forward")
        if is_grad_enabled():
            object.__setattr__(self, "_cache", (self._cache[0], values))

    @property
    def saved(self) -> tuple:
        if self._cache is None:
            raise RuntimeError(f"{self.op_name}.backward: no saved values from a forward pass; run forward "
                               f"outside `with convkit.nn.no_grad():` before calling backward")
        return self._cache[1]

    def _run_forward(self, x):
        if "_cache" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() in __init__")
        name = self.op_name
        F.check_array(x, name, "x", self.ndim, self.layout or (f"{self.ndim}-D" if self.ndim else None))
        object.__setattr__(self, "_cache", (x, ()) if is_grad_enabled() else None)
        object.__setattr__(self, "_saving", True)
        try:
            y = type(self)._user_forward(self, x)
        finally:
            object.__setattr__(self, "_saving", False)
        y = _conform(y, x, name, "forward result")
        return y

    def _run_backward(self, dy, param_grads: bool = True, input_grad: bool = True):
        name = self.op_name
        if self._cache is None:
            raise RuntimeError(f"{name}.backward: no input from a forward pass; run forward outside "
                               f"`with convkit.nn.no_grad():` before calling backward")
        x = self._cache[0]
        F.check_array(dy, f"{name}.backward", "dy")
        F.check_same(f"{name}.backward", x, "x", dy=dy)
        params = dict(self._parameters)
        want_params = bool(param_grads) and any(p.requires_grad for p in params.values())
        if not input_grad and not want_params:
            return None
        object.__setattr__(self, "needs_input_grad", bool(input_grad))
        object.__setattr__(self, "needs_param_grads", want_params)
        try:
            out = type(self)._user_backward(self, dy)
        finally:
            object.__setattr__(self, "needs_input_grad", True)
            object.__setattr__(self, "needs_param_grads", True)
        pgrads = {}
        if isinstance(out, tuple):
            if len(out) != 2 or not (out[1] is None or isinstance(out[1], dict)):
                raise TypeError(f"{name}.backward must return dx or (dx, {{param_name: grad}}), got a tuple of "
                                f"{len(out)}")
            out, pgrads = out[0], (out[1] or {})
        for pname, g in pgrads.items():
            if pname not in params:
                raise KeyError(f"{name}.backward returned a gradient for {pname!r}, which is not a parameter "
                               f"(parameters: {sorted(params)})")
            if g is None or not want_params:
                continue
            p = params[pname]
            g = _conform(g, p.data, name, f"gradient of parameter {pname!r}", shape=p.shape)
            if g is p.data:
                g = g.copy()
            p.accumulate_grad(g)
        if not input_grad:
            return None
        if out is None:
            raise TypeError(f"{name}.backward returned None for dx although the input gradient was asked for")
        return _conform(out, x, name, "backward result (gradient of x)", shape=x.shape)

    def clear_cache(self) -> None:
        object.__setattr__(self, "_cache", None)
        super().clear_cache()
