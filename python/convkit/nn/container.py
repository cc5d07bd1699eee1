"""Sequential: named layers in order, with activations and gradients at any named layer."""
from __future__ import annotations

from collections import OrderedDict

from . import _arith
from .module import Module, is_grad_enabled


def _names_arg(v, what: str) -> tuple:
    if v is None:
        return ()
    if isinstance(v, str):
        return (v,)
    try:
        return tuple(v)
    except TypeError:
        raise TypeError(f"Sequential: {what} must be a layer name or a sequence of names, got {type(v).__name__}")


class Sequential(Module):
    """Layers applied in order: ``Sequential(OrderedDict([("conv1", Conv2d(...)), ...]))`` or
    ``Sequential(layer0, layer1, ...)`` (named "0", "1", ...).

    ``model["conv1"]`` is a layer, ``model.names`` the layer names in order.

    ``forward(x, capture=(), until=None)`` returns y, or ``(y, {name: activation})`` when `capture`
    names layers (their outputs, as computed: do not modify them in place). ``until=name`` stops
    after that layer (y is then its output).

    ``backward(dy, grads_at=None, param_grads=True, return_grads=(), input_grad=True)`` backpropagates
    through the layers the last forward ran. dy is the gradient at the output of the last layer that
    ran; ``grads_at={name: g}`` ADDS g to the gradient at that layer's output (dy may be None when
    grads_at is given: backward then starts at the deepest such layer). ``return_grads=(names)``
    makes it return ``(dx, {name: gradient at that layer's output})``. ``param_grads=False`` skips
    parameter gradients (attacks, saliency); ``input_grad=False`` skips the gradient with respect to
    the input (training) and returns None for dx, stopping at the first layer that has parameters.
    """

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (OrderedDict, dict)):
            items = list(layers[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(layers)]
        for name, m in items:
            self.add(name, m)
        self._ran = 0  # how many layers the last forward ran

    def add(self, name: str, module: Module) -> "Sequential":
        """Append a named layer."""
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"Sequential: layer names must be non-empty strings without '.', got {name!r}")
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: layer {name!r} must be a convkit.nn.Module, got {type(module).__name__}")
        if name in self._modules:
            raise ValueError(f"Sequential: duplicate layer name {name!r}")
        if name in self.__dict__ or hasattr(type(self), name):
            self._modules[name] = module  # not an attribute (would shadow a method); use model[name]
        else:
            setattr(self, name, module)
        return self

    @property
    def names(self) -> list:
        return list(self._modules)

    def __getitem__(self, key):
        if isinstance(key, int):
            return list(self._modules.values())[key]
        if not isinstance(key, str):
            raise TypeError(f"Sequential: index with a layer name or an int, got {type(key).__name__}")
        m = self
        for part in key.split("."):
            if not isinstance(m, Module) or part not in m._modules:
                raise KeyError(f"no layer named {key!r}; layers: {', '.join(self.names)}")
            m = m._modules[part]
        return m

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __contains__(self, name) -> bool:
        return name in self._modules

    def _index(self, name: str, what: str) -> int:
        if not isinstance(name, str):
            raise TypeError(f"Sequential: {what} must name a layer, got {type(name).__name__} {name!r}")
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"Sequential: {what} names no layer: {name!r}; layers: {', '.join(self.names)}") from None

    def forward(self, x, capture=(), until=None):
        capture = _names_arg(capture, "capture")
        for c in capture:
            self._index(c, "capture")
        stop = len(self) if until is None else self._index(until, "until") + 1
        acts = {}
        for i, (name, layer) in enumerate(self._modules.items()):
            if i >= stop:
                break
            x = layer(x)
            if name in capture:
                acts[name] = x
        missing = [c for c in capture if c not in acts]
        if missing:
            raise ValueError(f"Sequential: capture names {missing}, which come after until={until!r}")
        self._ran = stop if is_grad_enabled() else 0
        return (x, acts) if capture else x

    def backward(self, dy=None, grads_at=None, param_grads: bool = True, return_grads=(), input_grad: bool = True):
        names = self.names
        if self._ran == 0:
            raise RuntimeError("Sequential.backward: no forward pass to differentiate; run forward outside "
                               "`with convkit.nn.no_grad():` first")
        grads_at = dict(grads_at or {})
        return_grads = _names_arg(return_grads, "return_grads")
        pos = {n: self._index(n, "grads_at") for n in grads_at}
        for n in return_grads:
            self._index(n, "return_grads")
        last = self._ran - 1
        late = [n for n, i in pos.items() if i > last]
        if late:
            raise ValueError(f"Sequential.backward: grads_at names {late}, after the last layer the forward ran "
                             f"({names[last]!r})")
        if dy is None:
            if not grads_at:
                raise ValueError("Sequential.backward: give dy, grads_at, or both")
            start = max(pos.values())
        else:
            start = last
        late = [n for n in return_grads if self._index(n, "return_grads") > start]
        if late:
            raise ValueError(f"Sequential.backward: return_grads names {late}, after the layer where backward starts "
                             f"({names[start]!r}); no gradient reaches them")
        stop = 0
        if not input_grad:  # nothing below the first layer with parameters needs a gradient
            with_params = [i for i, m in enumerate(self._modules.values()) if m.parameters()]
            stop = min(with_params) if with_params else start + 1
        layers = list(self._modules.values())
        g = dy
        out = {}
        for i in range(start, stop - 1, -1):
            name = names[i]
            if name in grads_at:
                extra = grads_at[name]
                g = extra if g is None else _arith.add(g, extra)
            if name in return_grads:
                out[name] = g
            if g is None:
                continue  # nothing flows here yet (only deeper than every gradient source)
            g = layers[i].backward(g, param_grads=param_grads, input_grad=input_grad or i > stop)
        dx = g if input_grad else None
        return (dx, out) if return_grads else dx

    def output_shape(self, input_shape):
        s = tuple(input_shape)
        for layer in self:
            s = layer.output_shape(s)
        return s

    def macs(self, input_shape):
        total, s = 0, tuple(input_shape)
        for layer in self:
            total += layer.macs(s)
            s = layer.output_shape(s)
        return total
