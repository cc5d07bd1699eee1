"""Features of any named layer over a whole data set, in batches, with no gradient bookkeeping.

The lecture's "FC7" vector is the input of the network's last fully connected layer; that is what
``layer=None`` picks (:func:`penultimate_layer`).
"""
from __future__ import annotations

import inspect

import numpy as np

from ..device import DeviceArray, asarray, to_numpy
from . import _util as U


def layer_names(model) -> list:
    names = getattr(model, "names", None)
    if names is not None:
        return list(names)
    if hasattr(model, "named_modules"):
        return [n for n, _ in model.named_modules() if n]
    raise TypeError(f"expected a convkit network with named layers, got {type(model).__name__}")


def get_layer(model, name: str, fn: str = "get_layer"):
    """The layer called `name` (KeyError listing the names when there is none)."""
    if not isinstance(name, str):
        raise TypeError(f"{fn}: layer must be a layer name (str), got {type(name).__name__}")
    mods = dict(model.named_modules()) if hasattr(model, "named_modules") else {}
    if name in mods:
        return mods[name]
    try:
        return model[name]
    except (KeyError, IndexError, TypeError):
        pass
    raise KeyError(f"{fn}: the model has no layer {name!r}; its layers are {layer_names(model)}")


def penultimate_layer(model) -> str:
    """The name of the layer whose output feeds the last Linear layer ("FC7" in AlexNet); a zoo
    model's own ``feature_layer`` when it names one."""
    names = layer_names(model)
    own = getattr(model, "feature_layer", None)
    if isinstance(own, str) and own in names:
        return own
    last_fc = None
    for i, nm in enumerate(names):
        if type(get_layer(model, nm)).__name__ == "Linear":
            last_fc = i
    if last_fc is None or last_fc == 0:
        raise ValueError(f"penultimate_layer: no layer before a final Linear layer among {names}; "
                         f"name the feature layer explicitly")
    return names[last_fc - 1]


def _layer_forward(model, xb, layer: str):
    """The output of `layer` for batch xb (forward stops there when the model supports `until`)."""
    params = inspect.signature(model.forward).parameters
    if "until" in params:
        return model.forward(xb, until=layer)
    if "capture" in params:  # a network without `until`: capture the activation instead
        _, acts = model.forward(xb, capture=(layer,))
        return acts[layer]
    raise TypeError(f"extract_features: {type(model).__name__}.forward supports neither until= nor capture=; "
                    f"use a convkit.nn.Sequential")


def _iter_batches(data, batch_size, fn):
    """(array batch) from an [N, C, H, W] array, or from an iterable of batches / (x, y) pairs."""
    if isinstance(data, (np.ndarray, DeviceArray, list)):
        x = U.as_images(data, fn, "data")
        for a, b in U.batches(x.shape[0], batch_size):
            yield x[a:b]
        return
    try:
        it = iter(data)
    except TypeError:
        raise TypeError(f"{fn}: data must be an image array [N, C, H, W] or an iterable of batches, "
                        f"got {type(data).__name__}") from None
    for item in it:
        if isinstance(item, tuple):
            item = item[0]
        yield U.as_images(item, fn, "a batch of data")


def extract_features(model, data, layer: str | None = None, *, batch_size: int = 256, device=None,
                     progress=None, flatten: bool = True) -> np.ndarray:
    """The activations of `layer` (default: the penultimate layer) for every image of `data`.

    data: images [N, C, H, W], or an iterable of batches (arrays or (images, labels) pairs).
    Returns a float32 numpy array [N, D] (flatten=True) or [N, ...] in the layer's shape.
    """
    fn = "extract_features"
    U.check_callable(model, fn)
    batch_size = U.as_int(batch_size, fn, "batch_size", 1)
    layer = penultimate_layer(model) if layer is None else layer
    get_layer(model, layer, fn)
    dev = U.model_device(model, device)
    dtype = U.model_dtype(model, np.float32)
    total = int(data.shape[0]) if hasattr(data, "shape") else None
    out = []
    bar = U.progress(total, f"features {layer}", progress)
    try:
        with U.eval_mode(model), U.no_grad_if_module(model):
            for xb in _iter_batches(data, batch_size, fn):
                y = np.asarray(to_numpy(_layer_forward(model, asarray(xb.astype(dtype, copy=False), device=dev),
                                                       layer)))
                out.append(y.reshape(y.shape[0], -1) if flatten else y)
                bar.update(xb.shape[0])
    finally:
        bar.close()
    if not out:
        raise ValueError(f"{fn}: data held no images")
    return np.concatenate(out).astype(np.float32, copy=False)


def activations(model, x, layer: str, *, device=None) -> np.ndarray:
    """The output of `layer` for images x [N, C, H, W] (e.g. [N, C', H', W'] for a conv layer)."""
    return extract_features(model, x, layer, batch_size=64, device=device, progress=False, flatten=False)
