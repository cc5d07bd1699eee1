"""Parameter, Module and the no_grad switch: the base of convkit.nn.

Gradients are computed per module: ``forward(x)`` keeps what its backward needs (its *cache*, unless
it runs inside ``with no_grad():``) and ``backward(dy)`` returns the gradient with respect to its
input, adding the parameter gradients into ``p.grad``. A container (Sequential) chains them. Only
the last forward's cache is kept: call backward before the next forward that needs its own backward.
"""
from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict

import numpy as np

from ..device import DeviceArray, asarray, to_numpy
from . import _arith

_state = threading.local()


def is_grad_enabled() -> bool:
    """False inside ``with no_grad():`` (on this thread)."""
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def no_grad():
    """Forward passes inside this block keep nothing for backward (faster, less memory)."""
    old = is_grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = old


# ---- random initialization ------------------------------------------------------------------------

_default_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reseed the generator that layers use when they are given no `rng`."""
    global _default_rng
    _default_rng = np.random.default_rng(seed)


def as_generator(rng) -> np.random.Generator:
    """None -> convkit's default generator (see manual_seed); int -> a new seeded generator."""
    if rng is None:
        return _default_rng
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, got {type(rng).__name__}")


def _device_name(x) -> str:
    return "cuda" if isinstance(x, DeviceArray) else "cpu"


# ---- Parameter ------------------------------------------------------------------------------------

class Parameter:
    """A learnable array. ``data`` lives on the module's device; ``grad`` is None or an array of the
    same shape, dtype and device holding the ACCUMULATED gradient (zero_grad resets it to None)."""

    __slots__ = ("data", "grad", "name", "requires_grad")

    def __init__(self, data, name: str = "", requires_grad: bool = True):
        if not isinstance(data, (np.ndarray, DeviceArray)):
            data = np.ascontiguousarray(data)
        self.data = data
        self.grad = None
        self.name = name
        self.requires_grad = bool(requires_grad)

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def size(self) -> int:
        return int(np.prod(self.data.shape))

    @property
    def device(self) -> str:
        return _device_name(self.data)

    def accumulate_grad(self, g) -> None:
        """p.grad += g (p.grad = g when it is None; g must be a fresh array the caller gives away)."""
        if not self.requires_grad or g is None:
            return
        if self.grad is None:
            self.grad = g
        else:
            _arith.add_(self.grad, g)

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={list(self.shape)}, dtype={self.dtype}, device={self.device})"


# ---- Module ---------------------------------------------------------------------------------------

class Module:
    """Base class of every layer and container.

    Subclasses implement ``forward(x)`` (storing their cache only when ``is_grad_enabled()``) and
    ``backward(dy, param_grads=True, input_grad=True)``, which returns dx (None when
    ``input_grad=False``) and, when ``param_grads``, ACCUMULATES parameter gradients into ``p.grad``.
    Parameters and child modules assigned as attributes are registered in assignment order.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            if "_parameters" not in self.__dict__:
                raise RuntimeError("call Module.__init__() before assigning parameters")
            if not value.name:
                value.name = name
            self._parameters[name] = value
        elif isinstance(value, Module):
            if "_modules" not in self.__dict__:
                raise RuntimeError("call Module.__init__() before assigning submodules")
            self._modules[name] = value
        object.__setattr__(self, name, value)

    # -- the computation --
    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, dy, param_grads: bool = True, input_grad: bool = True):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def _need_cache(self, what: str):
        raise RuntimeError(f"{type(self).__name__}.backward: no {what} from a forward pass; run forward outside "
                           f"`with convkit.nn.no_grad():` before calling backward")

    # -- shapes and cost (no computation; used by convkit.summary) --
    def output_shape(self, input_shape: tuple) -> tuple:
        """Output shape for an input of `input_shape` (including the batch axis)."""
        return tuple(input_shape)

    def macs(self, input_shape: tuple) -> int:
        """Multiply-accumulates of one forward pass over an input of `input_shape`."""
        return 0

    # -- parameters --
    def named_parameters(self, prefix: str = ""):
        """Yield (dotted name, Parameter) for this module and its children, in registration order."""
        for name, p in self._parameters.items():
            yield prefix + name, p
        for mname, m in self._modules.items():
            yield from m.named_parameters(prefix + mname + ".")

    def parameters(self) -> list:
        return [p for _, p in self.named_parameters()]

    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def children(self):
        return iter(self._modules.values())

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def zero_grad(self) -> None:
        """Reset every parameter's gradient to None (the next backward stores fresh ones)."""
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, flag: bool = True) -> "Module":
        """Freeze (False) or unfreeze every parameter: frozen ones get no gradient."""
        for p in self.parameters():
            p.requires_grad = bool(flag)
        return self

    # -- modes --
    def train(self, mode: bool = True) -> "Module":
        object.__setattr__(self, "training", bool(mode))
        for m in self._modules.values():
            m.train(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def clear_cache(self) -> None:
        """Drop what the last forward kept for backward (frees memory)."""
        if "_cache" in self.__dict__:
            object.__setattr__(self, "_cache", None)
        for m in self._modules.values():
            m.clear_cache()

    # -- device and dtype --
    @property
    def device(self) -> str:
        ps = self.parameters()
        return ps[0].device if ps else "cpu"

    @property
    def dtype(self):
        ps = self.parameters()
        return ps[0].dtype if ps else np.dtype(np.float32)

    def to(self, device: str | None = None, dtype=None) -> "Module":
        """Move every parameter (and gradient) to `device` ('cpu' or 'cuda') and/or cast to `dtype`."""
        if dtype is not None and np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"{type(self).__name__}.to: dtype must be float32 or float64, got {np.dtype(dtype)}")
        for p in self.parameters():
            dev = device or p.device
            p.data = asarray(p.data, device=dev, dtype=dtype)
            if p.grad is not None:
                p.grad = asarray(p.grad, device=dev, dtype=dtype)
        self.clear_cache()
        return self

    def float(self) -> "Module":
        return self.to(dtype=np.float32)

    def double(self) -> "Module":
        return self.to(dtype=np.float64)

    # -- state --
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Dotted parameter name -> a numpy copy of its data (on the CPU)."""
        return OrderedDict((n, np.array(to_numpy(p.data), copy=True)) for n, p in self.named_parameters())

    def load_state_dict(self, state, strict: bool = True) -> "Module":
        """Copy arrays from `state` (name -> array) into the parameters, keeping each one's dtype and
        device. strict: every parameter must be given and no unknown names are allowed."""
        if not hasattr(state, "items"):
            raise TypeError(f"load_state_dict: state must be a mapping of name -> array, got {type(state).__name__}")
        params = OrderedDict(self.named_parameters())
        missing = [n for n in params if n not in state]
        unexpected = [n for n in state if n not in params]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing parameters {missing}, unexpected names {unexpected}")
        for name, p in params.items():
            if name not in state:
                continue
            a = np.asarray(to_numpy(state[name]) if isinstance(state[name], DeviceArray) else state[name])
            if tuple(a.shape) != p.shape:
                raise ValueError(f"load_state_dict: {name} must have shape {list(p.shape)}, got {list(a.shape)}")
            if not np.issubdtype(a.dtype, np.floating):
                raise TypeError(f"load_state_dict: {name} must be a float array, got dtype {a.dtype}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"load_state_dict: {name} contains NaN or infinity")
            p.data = asarray(a, device=p.device, dtype=p.dtype)
            p.grad = None
        return self

    # -- printing --
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {sub}")
        lines.append(")")
        return "\n".join(lines)
