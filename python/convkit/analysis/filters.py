"""What the layers hold and what they compute: filter pictures and activation maps."""
from __future__ import annotations

import numpy as np

from ..device import DeviceArray, to_numpy
from . import features as _features
from . import plots


def conv_layers(model) -> list:
    """Names of the Conv2d layers, in order."""
    return [n for n in _features.layer_names(model) if type(_features.get_layer(model, n)).__name__ == "Conv2d"]


def layer_weight(model, layer: str | None = None) -> np.ndarray:
    """The weight array [OC, IC/groups, KH, KW] of conv layer `layer` (default: the first conv layer)."""
    if layer is None:
        convs = conv_layers(model)
        if not convs:
            raise ValueError("layer_weight: the model has no Conv2d layer")
        layer = convs[0]
    m = _features.get_layer(model, layer, "layer_weight")
    w = getattr(m, "weight", None)
    if w is None:
        raise ValueError(f"layer_weight: layer {layer!r} ({type(m).__name__}) has no weight")
    w = getattr(w, "data", w)
    return np.array(to_numpy(w) if isinstance(w, DeviceArray) else w, copy=True)


def plot_filters(model_or_weight, path, layer: str | None = None, normalize: str = "filter",
                 title: str | None = None, ncols: int | None = None) -> str:
    """Save a PNG of a conv layer's filters (a network and a layer name, or a weight array).

    First layer (1 or 3 input channels): one tile per filter, RGB for 3 channels. Higher layers: one row
    per filter, one column per input channel. Each filter is normalized on its own by default.
    """
    if isinstance(model_or_weight, (np.ndarray, DeviceArray, list)):
        w = np.asarray(to_numpy(model_or_weight) if isinstance(model_or_weight, DeviceArray) else model_or_weight)
        name = layer or "weights"
    else:
        w = layer_weight(model_or_weight, layer)
        name = layer or conv_layers(model_or_weight)[0]
    grid = plots.filter_grid(w, normalize=normalize, ncols=ncols)
    if title is None:
        oc, ic, kh, kw = w.shape
        layout = "one tile per filter" if ic in (1, 3) else "rows: filters, columns: input channels"
        title = f"{name}: {oc} filters of {ic}x{kh}x{kw} ({layout}; each filter normalized)"
    return plots.save_image(grid, path, title)


def activation_maps(model, image, layer: str, *, device=None) -> np.ndarray:
    """The output of `layer` for ONE image ([C, H, W] or [1, C, H, W]): an array [C', H', W']."""
    x = np.asarray(to_numpy(image) if isinstance(image, DeviceArray) else image)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"activation_maps: image must have shape [C, H, W] or [1, C, H, W], got {list(x.shape)}")
    a = _features.activations(model, x, layer, device=device)[0]
    if a.ndim != 3:
        raise ValueError(f"activation_maps: layer {layer!r} gives an output of shape {list(a.shape)}, "
                         f"not maps [C, H, W]; pick a conv/pool/activation layer")
    return a


def plot_activation_maps(model, image, layer: str, path, *, device=None, title: str | None = None) -> str:
    """Save a PNG of one image's activation maps at `layer` (each map scaled on its own)."""
    a = activation_maps(model, image, layer, device=device)
    title = title or f"activations of {layer}: {a.shape[0]} maps of {a.shape[1]}x{a.shape[2]}"
    return plots.plot_maps(a, path, title)
