"""convkit.style: neural style transfer and texture synthesis (Gatys, Ecker and Bethge) on convkit's kernels.

The image x (pixels in [0, 1]) is optimized to minimize

    L(x) = alpha * L_content(x) + beta * L_style(x) + tv_weight * L_tv(x)

as in the lecture. With F_l the features of layer l reshaped to [N_l, M_l] (N_l channels, M_l = H_l * W_l
positions), P_l those of the content image and A_l the Gram matrix of the style image's features:

    L_content = sum_l c_l * 1/2 * mean_{i,p} (F_l[i, p] - P_l[i, p])^2          (c_l = 1 / #content layers)
    G_l       = F_l F_l^T / M_l                                          (the Gram matrix, a mean over positions)
    E_l       = 1 / (4 N_l^2) * sum_ij (G_l[i, j] - A_l[i, j])^2
    L_style   = sum_l w_l * E_l                                                (w_l = 1 / #style layers)
    L_tv      = 1 / (C H W) * sum ((x[c, i+1, j] - x[c, i, j])^2 + (x[c, i, j+1] - x[c, i, j])^2)

Normalization. For a content and a style image of the same size, E_l is exactly Gatys et al.'s
1 / (4 N^2 M^2) sum (F F^T - S S^T)^2; L_content is their 1/2 sum (F - P)^2 divided by N_l * M_l. Because G_l
and A_l are means over positions (each image divided by its own M_l) and the content loss is a mean, no term
grows with the image size: the same alpha, beta and tv_weight work at 128x128 and at 1024x1024, and the style
image may have a different size from the content image. (Gatys et al.'s alpha/beta ratios such as 1e-3 refer to
their unnormalized sums and do not carry over numerically.)

Gradients: the two big products of the style loss, G_l = F_l F_l^T / M_l and the feature gradient
dE_l/dF_l = (G_l - A_l) F_l / (N_l^2 M_l), run on convkit's own GEMM through the linear kernels
(linear(F, F) and linear_backward_data(G - A, F)), where the features are; on the CPU G_l is formed in float64
(see _gram2). The small [N_l, N_l] matrices, the loss values (accumulated in float64) and the content loss are
numpy on the host. The gradient then flows back through the network with convkit's kernels: a convkit
Sequential via ``backward(None, grads_at={layer: g}, param_grads=False)``, the random-filter network via
conv2d_backward_data and relu_backward. On CUDA the network and the Gram products run on the device, and the
rest is a host round trip each evaluation: the [N, N] matrices, the content layers' features (copied to the
host for the content loss, their gradient copied back) and the scaling/summing of feature gradients; moving
those onto DeviceArray operations is left for later.

Backbones:
- RandomFilterNet: after Ustyuzhaninov, Brendel, Gatys and Bethge, "What does it take to generate natural
  textures?" (ICLR 2017): one convolutional layer of seeded random filters at several sizes, ReLU, and the Gram
  loss on every scale. Needs no pretrained weights (works offline).
- NetworkBackbone: any convkit Sequential network, e.g. convkit.models.vgg19() with weights imported from a
  PyTorch state dict (see vgg19_backbone).

Optimizers: L-BFGS (scipy.optimize.minimize, method L-BFGS-B, with the pixel range [0, 1] as bounds) and
Adam (clamping the image to [0, 1] after every step). Both show a tqdm progress bar and can keep snapshots.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import functional as _F
from .device import DeviceArray, asarray, to_numpy

__all__ = [
    "Backbone", "RandomFilterNet", "NetworkBackbone", "vgg19_backbone", "StyleObjective", "StyleResult",
    "gram_matrix", "content_loss", "style_layer_loss", "tv_loss", "style_transfer", "synthesize_texture",
    "load_image", "save_image", "style_figure", "lecture_figure", "lbfgs",
]


# ---- image helpers --------------------------------------------------------------------------------

_SKIMAGE_PREFIX = "skimage:"


def _resize(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if img.shape[:2] == tuple(shape):
        return img
    try:
        from skimage.transform import resize
    except ImportError as e:  # pragma: no cover - scikit-image is in the tools/test extras
        raise ImportError("resizing images needs scikit-image (pip install 'convkit[tools]')") from e
    return resize(img, tuple(shape) + img.shape[2:], order=1, anti_aliasing=True, mode="reflect",
                  preserve_range=True).astype(np.float32)


def _target_shape(hw: tuple[int, int], size) -> tuple[int, int]:
    if size is None:
        return hw
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise ValueError(f"size must be an int (the longest side) or (height, width), got {size!r}")
        h, w = (_F._int(s, "load_image", "size", 1) for s in size)
        return (h, w)
    s = _F._int(size, "load_image", "size", 1)
    h, w = hw
    scale = s / max(h, w)
    return (max(1, round(h * scale)), max(1, round(w * scale)))


def load_image(src, size=None) -> np.ndarray:
    """An RGB image as a float32 array [H, W, 3] in [0, 1].

    src: a file path, "skimage:NAME" for an image shipped with scikit-image (e.g. "skimage:astronaut",
    "skimage:gravel"), or an array: [H, W] (gray), [H, W, 3] or [H, W, 4] (alpha dropped); uint16 arrays
    are scaled from 0..65535, other integer arrays from 0..255, float arrays are taken as [0, 1] (clipped).
    size: None (keep), an int (the longest side, keeping the aspect ratio) or (height, width).
    """
    if isinstance(src, (str, os.PathLike)):
        s = os.fspath(src)
        if s.startswith(_SKIMAGE_PREFIX):
            name = s[len(_SKIMAGE_PREFIX):]
            import skimage.data

            fn = getattr(skimage.data, name, None)
            if fn is None or not callable(fn) or name.startswith("_"):
                raise ValueError(f"load_image: scikit-image has no image {name!r} (try skimage:astronaut, "
                                 "skimage:chelsea, skimage:brick, skimage:grass, skimage:gravel)")
            img = np.asarray(fn())
        else:
            if not os.path.exists(s):
                raise FileNotFoundError(f"load_image: no such file: {s}")
            import matplotlib.image

            img = np.asarray(matplotlib.image.imread(s))
    else:
        img = np.asarray(src)
    if img.dtype == np.bool_ or img.dtype.kind not in "uif":
        raise TypeError(f"load_image: image must have a numeric dtype, got {img.dtype}")
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"load_image: image must have shape [H, W], [H, W, 3] or [H, W, 4], got {list(img.shape)}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = img[:, :, :3]
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"load_image: image is empty (shape {list(img.shape)})")
    if img.dtype.kind in "ui":
        img = img.astype(np.float32) / np.float32(65535 if img.dtype == np.uint16 else 255)
    img = np.ascontiguousarray(img, dtype=np.float32)
    if not np.isfinite(img).all():
        raise ValueError("load_image: image contains NaN or infinity")
    if img.size and img.max() > 1.5:
        warnings.warn(f"load_image: a float image with values up to {img.max():g} (expected [0, 1]); values above "
                      "1 are clipped -- divide 0..255 images by 255", stacklevel=2)
    img = _resize(img, _target_shape(img.shape[:2], size))
    return np.ascontiguousarray(np.clip(img, 0.0, 1.0), dtype=np.float32)


def save_image(path, img) -> None:
    """Write an [H, W, 3] image in [0, 1] (or a [1, 3, H, W] batch of one) as PNG."""
    import matplotlib.image

    a = to_numpy(img) if isinstance(img, DeviceArray) else np.asarray(img)
    if a.ndim == 4:
        a = _to_hwc(a)
    d = os.path.dirname(os.fspath(path))
    if d:
        os.makedirs(d, exist_ok=True)
    matplotlib.image.imsave(os.fspath(path), np.clip(a, 0.0, 1.0).astype(np.float32))


def _to_nchw(img: np.ndarray, dtype) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(img, (2, 0, 1))[None], dtype=dtype)


def _to_hwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(np.asarray(x)[0], (1, 2, 0)), dtype=np.float32)


def _as_image(x, name: str) -> np.ndarray:
    """[H, W, 3] float32 in [0, 1] from what a user passes (path, array [H,W(,C)] or [1, 3, H, W])."""
    if isinstance(x, DeviceArray):
        x = x.to_numpy()
    if isinstance(x, np.ndarray) and x.ndim == 4:
        if x.shape[0] != 1 or x.shape[1] != 3:
            raise ValueError(f"{name} must have shape [1, 3, H, W] when given as a batch, got {list(x.shape)}")
        x = np.transpose(x[0], (1, 2, 0))
    try:
        return load_image(x)
    except (ValueError, TypeError) as e:
        raise type(e)(str(e).replace("load_image: image", name)) from None


# ---- losses ---------------------------------------------------------------------------------------
# Features live where the backbone runs (numpy on the CPU, DeviceArray on CUDA). The two big products of
# the style loss run on convkit's own GEMM through the linear kernels, wherever the features are:
#     F F^T          = linear(F, F)                       (x [C, M] times weight [C, M]^T)
#     (G - A) F      = linear_backward_data(G - A, F)     (dy [C, C] times weight [C, M])
# The small [C, C] matrices (G, A, G - A) and the loss values are numpy on the host, accumulated in float64.
# The content loss is numpy on the host (on CUDA its layer's features make a host round trip).

def _flat(f, fn: str, name: str):
    if not isinstance(f, DeviceArray):
        f = np.asarray(f)
    if f.ndim == 4:
        if f.shape[0] != 1:
            raise ValueError(f"{fn}: {name} must be the features of one image [1, C, H, W], got {list(f.shape)}")
        f = f.reshape(f.shape[1], f.shape[2] * f.shape[3])
    if f.ndim != 2 or f.size == 0:
        raise ValueError(f"{fn}: {name} must have shape [1, C, H, W] or [C, M], got {list(f.shape)}")
    if np.dtype(f.dtype) not in (np.float32, np.float64):
        raise TypeError(f"{fn}: {name} must be float32 or float64, got {f.dtype}")
    return f if isinstance(f, DeviceArray) else np.ascontiguousarray(f)


def _gram2(f2):
    """G = F F^T / M (host numpy [C, C], float64) for F [C, M] on either device.

    On the CPU the product runs in float64 even for float32 features: G - A is a small difference of large
    numbers once the optimization has matched most of the style, and float32 sums over M = H*W positions
    leave rounding noise there that stalls L-BFGS's line search. This costs C^2 M float64 multiply-adds per
    layer, little next to the convolutions. (On CUDA it stays in the features' dtype for now.)"""
    if isinstance(f2, np.ndarray) and f2.dtype == np.float32:
        f2 = f2.astype(np.float64)
    g = np.asarray(to_numpy(_F.linear(f2, f2)), dtype=np.float64)
    g /= f2.shape[1]
    return (g + g.T) * 0.5  # exactly symmetric (the GEMM's rounding may differ between (i, j) and (j, i))


def gram_matrix(features) -> np.ndarray:
    """The Gram matrix G = F F^T / M of features [1, C, H, W] (or [C, M]): a mean over the M positions.

    Computed with convkit's linear kernel on the features' device; returned as a float64 numpy array."""
    return _gram2(_flat(features, "gram_matrix", "features"))


def _dot(a: np.ndarray) -> float:
    """sum(a^2), accumulated in float64."""
    a = a.reshape(-1).astype(np.float64, copy=False)
    return float(np.dot(a, a))


def content_loss(features, target, weight: float = 1.0):
    """(loss, gradient) of weight * 1/2 * mean (F - P)^2; the gradient has features' shape, dtype and device."""
    f = _flat(features, "content_loss", "features")
    p = _flat(target, "content_loss", "target")
    if tuple(p.shape) != tuple(f.shape):
        raise ValueError(f"content_loss: target must have the features' shape {list(f.shape)}, got {list(p.shape)}")
    fh = to_numpy(f)
    d = fh - to_numpy(p).astype(fh.dtype, copy=False)
    loss = weight * 0.5 * _dot(d) / d.size
    d *= d.dtype.type(weight / d.size)
    return loss, _like(d.reshape(tuple(features.shape)), features)


def _like(a: np.ndarray, ref):
    return asarray(a, device="cuda") if isinstance(ref, DeviceArray) else a


def style_layer_loss(features, target_gram, weight: float = 1.0):
    """(loss, gradient) of weight * 1/(4 N^2) sum (G - A)^2 with G = F F^T / M (see the module docstring).

    The gradient has features' shape, dtype and device."""
    f = _flat(features, "style_layer_loss", "features")
    a = np.asarray(target_gram, dtype=np.float64)
    n, m = f.shape
    if a.shape != (n, n):
        raise ValueError(f"style_layer_loss: target_gram must have shape [{n}, {n}] for {n} channels, "
                         f"got {list(a.shape)}")
    d = _gram2(f) - a
    loss = weight * _dot(d) / (4.0 * n * n)
    # dE/dF = (dE/dG + dE/dG^T) F / M with dE/dG = (G - A) / (2 N^2) and G - A symmetric: (G - A) F / (N^2 M).
    d *= weight / (n * n * m)
    dd = _like(np.ascontiguousarray(d, dtype=f.dtype), f)
    g = _F.linear_backward_data(dd, f)
    return loss, g.reshape(tuple(features.shape))


def tv_loss(image, weight: float = 1.0):
    """(loss, gradient) of the squared total variation of image [1, C, H, W], normalized by C*H*W."""
    x = np.asarray(image, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"tv_loss: image must have shape [1, C, H, W], got {list(x.shape)}")
    k = x[0].size
    dh = x[:, :, 1:, :] - x[:, :, :-1, :]
    dw = x[:, :, :, 1:] - x[:, :, :, :-1]
    loss = weight * (_dot(dh) + _dot(dw)) / k
    g = np.zeros_like(x)
    c = 2.0 * weight / k
    g[:, :, 1:, :] += c * dh
    g[:, :, :-1, :] -= c * dh
    g[:, :, :, 1:] += c * dw
    g[:, :, :, :-1] -= c * dw
    return loss, g


# ---- backbones ------------------------------------------------------------------------------------

def _on(a, dtype, device):
    """a (numpy or DeviceArray) as a contiguous array of `dtype` on `device`."""
    if isinstance(a, DeviceArray) and device == "cuda" and np.dtype(a.dtype) == dtype:
        return a
    return asarray(np.ascontiguousarray(to_numpy(a), dtype=dtype), device=device)


class Backbone:
    """What style transfer needs from a network.

    features(x, layers) -> {layer: features [1, C, H, W]} on the backbone's device (numpy on the CPU,
    DeviceArray on CUDA), for x [1, 3, H, W], a host numpy array of pixels in [0, 1] in the backbone's dtype;
    it remembers what backward needs.
    backward({layer: gradient at that layer's output, on either device}) -> gradient with respect to x
    (host numpy).
    """

    name = "backbone"
    layers: tuple = ()
    content_layers: tuple = ()
    style_layers: tuple = ()
    dtype = np.dtype(np.float32)
    device = "cpu"

    def features(self, x, layers):  # pragma: no cover - interface
        raise NotImplementedError

    def backward(self, grads):  # pragma: no cover - interface
        raise NotImplementedError

    def min_size(self) -> int:
        return 1


class RandomFilterNet(Backbone):
    """One convolutional layer of seeded random filters at several sizes, ReLU (Ustyuzhaninov et al. 2017).

    For each size k in `sizes`, `filters` filters [filters, 3, k, k] with i.i.d. normal weights scaled by
    1/sqrt(3 k^2) (so every scale responds with about the input's variance), no bias, then ReLU. The input is
    centred as x - 0.5. padding="valid" (the default: no padding, so no zero border enters the statistics; images
    must be at least max(sizes) on a side) or "same" (k // 2 zeros, i.e. mid-grey, around the image).
    Layer "relu{k}x{k}" is the ReLU output of the k x k scale. Every scale is a style layer (its Gram matrix);
    the default content layers are the smallest and the middle scale (relu3x3 and relu11x11 for the default
    sizes: with 'valid' convolutions the small scale also holds the pixels near the border, which the larger
    ones barely see). filters=32 per scale keeps a 256x256 run to minutes on a 2-core CPU; the paper's networks
    have more feature maps (filters=128 gives a richer texture model at 4x the cost). The seed gives the same
    filters on every machine.
    """

    name = "random-filters"

    def __init__(self, sizes=(3, 5, 7, 11, 15, 23), filters: int = 32, seed: int = 0, dtype=np.float32,
                 device: str = "cpu", content_layers=None, padding: str = "valid"):
        fn = "RandomFilterNet"
        if isinstance(sizes, numbers.Integral):
            sizes = (sizes,)
        sizes = tuple(_F._int(k, fn, "sizes", 1) for k in sizes)
        if not sizes or len(set(sizes)) != len(sizes):
            raise ValueError(f"{fn}: sizes must be distinct positive ints, got {sizes!r}")
        self.sizes = sizes
        self.filters = _F._int(filters, fn, "filters", 1)
        self.seed = _F._int(seed, fn, "seed", 0)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"{fn}: dtype must be float32 or float64, got {self.dtype}")
        self.device = device
        if padding not in ("valid", "same"):
            raise ValueError(f"{fn}: padding must be 'valid' or 'same', got {padding!r}")
        self.padding = padding
        rng = np.random.default_rng(self.seed)
        self.weights = {}
        for k in sizes:
            w = rng.standard_normal((self.filters, 3, k, k)) / math.sqrt(3 * k * k)
            self.weights[f"relu{k}x{k}"] = (k, asarray(w.astype(self.dtype), device=device))
        self.layers = tuple(self.weights)
        self.style_layers = self.layers
        default = tuple(dict.fromkeys((self.layers[0], self.layers[len(self.layers) // 2])))
        self.content_layers = _names(content_layers) if content_layers else default
        for ln in self.content_layers:
            if ln not in self.layers:
                raise ValueError(f"{fn}: content layer {ln!r} is not one of {list(self.layers)}")
        self._cache = {}
        self._x_shape = None

    def _pad(self, k: int) -> int:
        return k // 2 if self.padding == "same" else 0

    def min_size(self) -> int:
        return max(self.sizes) if self.padding == "valid" else 1

    def features(self, x, layers):
        xs = asarray(np.ascontiguousarray(x - self.dtype.type(0.5), dtype=self.dtype), device=self.device)
        self._x_shape = tuple(x.shape)
        self._cache = {}
        out = {}
        for name in layers:
            k, w = self.weights[name]
            f = _F.relu(_F.conv2d(xs, w, padding=self._pad(k)))
            self._cache[name] = f
            out[name] = f
        return out

    def backward(self, grads):
        dx = None
        for name, g in grads.items():
            k, w = self.weights[name]
            f = self._cache[name]
            gy = _F.relu_backward(_on(g, self.dtype, self.device), f)
            d = to_numpy(_F.conv2d_backward_data(gy, w, self._x_shape, padding=self._pad(k)))
            dx = d if dx is None else np.add(dx, d, out=dx)
        return dx

    def macs(self, h: int, w: int) -> int:
        """Multiply-accumulates of one forward pass at h x w (the backward pass does as many again)."""
        return sum(self.filters * 3 * k * k * (h - k + 1) * (w - k + 1) for k in self.sizes)

    def __repr__(self):
        return f"RandomFilterNet(sizes={self.sizes}, filters={self.filters}, seed={self.seed}, dtype={self.dtype})"


class NetworkBackbone(Backbone):
    """Any convkit Sequential network as a style-transfer backbone.

    The image in [0, 1] is normalized per channel as (x - mean) / std before the network; features come from
    ``model.forward(x, capture=layers, until=deepest)`` and the gradient from
    ``model.backward(None, grads_at=grads, param_grads=False)``. The model is switched to eval mode.
    """

    def __init__(self, model, content_layers, style_layers, mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225), device: str | None = None, name: str = "network"):
        fn = "NetworkBackbone"
        for attr in ("forward", "backward", "names"):
            if not hasattr(model, attr):
                raise TypeError(f"{fn}: model must be a convkit.nn.Sequential (forward, backward, names), "
                                f"got {type(model).__name__}")
        names = list(model.names)
        self.content_layers = _names(content_layers)
        self.style_layers = _names(style_layers)
        for ln in self.content_layers + self.style_layers:
            if ln not in names:
                raise ValueError(f"{fn}: layer {ln!r} is not in the model; its layers are {names}")
        self.model = model
        self.layers = tuple(names)
        self._order = {n: i for i, n in enumerate(names)}
        self.mean = np.asarray(mean, np.float64).reshape(1, -1, 1, 1)
        self.std = np.asarray(std, np.float64).reshape(1, -1, 1, 1)
        if self.mean.shape[1] != 3 or self.std.shape[1] != 3 or (self.std <= 0).any():
            raise ValueError(f"{fn}: mean and std must have 3 entries (std > 0), got {mean!r}, {std!r}")
        self.name = name
        self.dtype = np.dtype(getattr(model, "dtype", np.float32))
        self.device = device or getattr(model, "device", "cpu")
        if hasattr(model, "eval"):
            model.eval()

    def features(self, x, layers):
        layers = list(layers)
        deepest = max(layers, key=self._order.__getitem__)
        xn = ((np.asarray(x, np.float64) - self.mean) / self.std).astype(self.dtype)
        xd = asarray(np.ascontiguousarray(xn), device=self.device)
        _, acts = self.model.forward(xd, capture=tuple(layers), until=deepest)
        return {n: acts[n] for n in layers}

    def backward(self, grads):
        gd = {n: _on(g, self.dtype, self.device) for n, g in grads.items()}
        dx = to_numpy(self.model.backward(None, grads_at=gd, param_grads=False))
        return (np.asarray(dx, np.float64) / self.std).astype(self.dtype)


# Gatys et al.'s layers (conv1_1 ... conv5_1 for style, conv4_2 for content), after their ReLU.
VGG19_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
VGG19_CONTENT_LAYERS = ("relu4_2",)


def vgg19_backbone(weights=None, device: str = "cpu", dtype=np.float32, seed: int = 0,
                   content_layers=VGG19_CONTENT_LAYERS, style_layers=VGG19_STYLE_LAYERS) -> NetworkBackbone:
    """convkit.models.vgg19() (features only, up to pool5) as a backbone.

    weights: a PyTorch state dict with torchvision's VGG-19 key names (features.0.weight, ...): a path to
    a file saved by torch.save (e.g. torchvision's vgg19-dcbb9e9d.pth), a dict of tensors or arrays, or a torch
    module; None keeps convkit's seeded random initialization (useful for tests, not for pictures).
    The image is normalized with ImageNet's mean and std, as torchvision's weights expect. The pooling layers
    stay max pooling (Gatys et al. swap in average pooling; convkit has no average-pooling kernel yet).
    """
    from . import models

    model = models.vgg19(seed=seed, dtype=dtype)
    if weights is not None:
        from . import io as _io

        _io.load_torch_state_dict(model, weights)
    if device != "cpu":
        model.to(device)
    return NetworkBackbone(model, content_layers, style_layers, device=device, name="vgg19")


# ---- the objective --------------------------------------------------------------------------------

def _names(layers) -> tuple:
    """A layer name or a sequence of names as a tuple of names."""
    return (layers,) if isinstance(layers, str) else tuple(layers)


def _layer_weights(layers, weights, what: str) -> dict:
    if weights is None:
        return {ln: 1.0 / len(layers) for ln in layers}
    if isinstance(weights, dict):
        missing = [ln for ln in layers if ln not in weights]
        if missing or set(weights) - set(layers):
            raise ValueError(f"{what} weights must have one entry per layer {list(layers)}, got {list(weights)}")
        w = dict(weights)
    else:
        w = list(weights)
        if len(w) != len(layers):
            raise ValueError(f"{what} weights must have {len(layers)} entries (one per layer), got {len(w)}")
        w = dict(zip(layers, w))
    for ln, v in w.items():
        w[ln] = _F._float(v, "StyleObjective", f"{what} weight of {ln}", 0.0)
    return w


class StyleObjective:
    """L(x) = alpha L_content + beta L_style + tv_weight L_tv for images x [1, 3, H, W] (module docstring).

    The targets (the content image's features, the style image's Gram matrices) are computed once here.
    Calling it returns (loss, gradient with respect to x, parts) where parts = {"content", "style", "tv",
    "total"} holds the unweighted losses (and "style/LAYER" per layer).
    """

    def __init__(self, backbone: Backbone, content=None, style=None, *, alpha: float = 1.0, beta: float = 1e4,
                 tv_weight: float = 0.0, content_layers=None, style_layers=None, content_layer_weights=None,
                 style_layer_weights=None):
        fn = "StyleObjective"
        if not isinstance(backbone, Backbone):
            raise TypeError(f"{fn}: backbone must be a convkit.style.Backbone (RandomFilterNet, NetworkBackbone), "
                            f"got {type(backbone).__name__}")
        self.backbone = backbone
        self.alpha = _F._float(alpha, fn, "alpha", 0.0)
        self.beta = _F._float(beta, fn, "beta", 0.0)
        self.tv_weight = _F._float(tv_weight, fn, "tv_weight", 0.0)
        self.content_layers = _names(content_layers if content_layers is not None else backbone.content_layers)
        self.style_layers = _names(style_layers if style_layers is not None else backbone.style_layers)
        for ln in self.content_layers + self.style_layers:
            if ln not in backbone.layers:
                raise ValueError(f"{fn}: layer {ln!r} is not a layer of {backbone.name}; choose from "
                                 f"{list(backbone.layers)}")
        if self.alpha > 0 and content is None:
            raise ValueError(f"{fn}: alpha > 0 needs a content image (pass content=..., or alpha=0 for a texture)")
        if self.beta > 0 and style is None:
            raise ValueError(f"{fn}: beta > 0 needs a style image")
        if self.alpha > 0 and not self.content_layers:
            raise ValueError(f"{fn}: alpha > 0 needs at least one content layer")
        if self.beta > 0 and not self.style_layers:
            raise ValueError(f"{fn}: beta > 0 needs at least one style layer")
        self.content_weights = _layer_weights(self.content_layers, content_layer_weights, "content layer")
        self.style_weights = _layer_weights(self.style_layers, style_layer_weights, "style layer")
        dt = backbone.dtype
        self.content_targets = {}
        self.style_targets = {}
        self.content_hw = None
        if content is not None and self.alpha > 0:
            c = self._image(content, "content")
            self.content_hw = tuple(c.shape[2:])
            feats = backbone.features(c, self.content_layers)
            self.content_targets = {ln: np.array(to_numpy(feats[ln]), dtype=dt, copy=True)
                                    for ln in self.content_layers}
        if style is not None and self.beta > 0:
            s = self._image(style, "style")
            feats = backbone.features(s, self.style_layers)
            self.style_targets = {ln: gram_matrix(feats[ln]) for ln in self.style_layers}
        self.evaluations = 0

    def _image(self, img, name):
        x = _to_nchw(_as_image(img, name), self.backbone.dtype)
        m = self.backbone.min_size()
        if min(x.shape[2:]) < m:
            raise ValueError(f"{name} image is {x.shape[2]}x{x.shape[3]} but {self.backbone.name} needs at least "
                             f"{m}x{m}")
        return x

    def __call__(self, x, need_grad: bool = True):
        dt = self.backbone.dtype
        x = np.ascontiguousarray(x, dtype=dt)
        if x.ndim != 4 or x.shape[:2] != (1, 3):
            raise ValueError(f"StyleObjective: x must have shape [1, 3, H, W], got {list(x.shape)}")
        if self.content_hw is not None and tuple(x.shape[2:]) != self.content_hw:
            raise ValueError(f"StyleObjective: x must have the content image's size {self.content_hw}, "
                             f"got {tuple(x.shape[2:])}")
        layers = []
        for ln in (self.content_layers if self.content_targets else ()) + (
                self.style_layers if self.style_targets else ()):
            if ln not in layers:
                layers.append(ln)
        feats = self.backbone.features(x, layers) if layers else {}
        self.evaluations += 1
        parts = {"content": 0.0, "style": 0.0, "tv": 0.0}
        grads = {}
        for ln, p in self.content_targets.items():
            lc, g = content_loss(feats[ln], p, self.content_weights[ln])
            parts["content"] += lc
            if need_grad and self.alpha > 0:
                grads[ln] = _scaled(g, self.alpha)
        for ln, a in self.style_targets.items():
            ls, g = style_layer_loss(feats[ln], a, self.style_weights[ln])
            parts["style/" + ln] = ls
            parts["style"] += ls
            if need_grad and self.beta > 0:
                g = _scaled(g, self.beta)
                grads[ln] = _sum(grads[ln], g) if ln in grads else g
        dx = None
        if need_grad:
            dx = self.backbone.backward(grads) if grads else np.zeros(x.shape, dt)
        if self.tv_weight > 0:
            lt, gt = tv_loss(x)
            parts["tv"] = lt
            if need_grad:
                dx = dx + (self.tv_weight * gt).astype(dt)
        total = self.alpha * parts["content"] + self.beta * parts["style"] + self.tv_weight * parts["tv"]
        parts["total"] = total
        return total, dx, parts


def _scaled(g, c: float):
    if c == 1.0:
        return g
    if isinstance(g, DeviceArray):
        return asarray(to_numpy(g) * g.dtype.type(c), device="cuda")  # host round trip (no device scaling yet)
    g *= g.dtype.type(c)
    return g


def _sum(a, b):
    if isinstance(a, DeviceArray) or isinstance(b, DeviceArray):
        return asarray(to_numpy(a) + to_numpy(b), device="cuda")  # host round trip
    a += b
    return a


# ---- optimization ---------------------------------------------------------------------------------

@dataclass
class StyleResult:
    """What style_transfer returns. image: [H, W, 3] float32 in [0, 1]; start/final: the loss parts
    (unweighted content, style, tv and the weighted total) at the initial and the final image; history: the
    parts after each iteration; snapshots: (iteration, image) pairs."""

    image: np.ndarray
    start: dict
    final: dict
    history: list = field(default_factory=list)
    snapshots: list = field(default_factory=list)
    iterations: int = 0
    evaluations: int = 0
    seconds: float = 0.0
    optimizer: str = "lbfgs"
    message: str = ""


def _initial(init, content_img, shape_hw, rng):
    if isinstance(init, str):
        if init == "content":
            if content_img is None:
                raise ValueError("init='content' needs a content image; use init='noise' for a texture")
            return content_img.copy()
        if init == "noise":
            return rng.uniform(0.0, 1.0, size=shape_hw + (3,)).astype(np.float32)
        raise ValueError(f"init must be 'content', 'noise' or an image, got {init!r}")
    img = _as_image(init, "init")
    if img.shape[:2] != tuple(shape_hw):
        raise ValueError(f"init must have the output size {shape_hw}, got {img.shape[:2]}")
    return img


def lbfgs(fun, x0, iterations: int, memory: int = 10, callback=None):
    """Minimize fun(x) -> (loss, gradient) over x in [0, 1] for `iterations` L-BFGS iterations.

    The driver both convkit's style transfer and the PyTorch comparison in benchmarks/bench_style.py use:
    scipy.optimize.minimize(method="L-BFGS-B", bounds [0, 1], ftol = gtol = 0, so that only the iteration
    budget stops it). In float32 the line search eventually fails to find a decrease it can distinguish from
    rounding noise (scipy: ABNORMAL_TERMINATION_IN_LNSRCH); then the optimizer is restarted from the best point
    with an empty memory, as long as that still makes progress. callback(iteration, x) after each iteration.
    Returns (x, iterations done, function evaluations, scipy's last message)."""
    from scipy.optimize import Bounds, minimize

    x = np.asarray(x0, np.float64).reshape(-1).copy()
    done = nfev = 0
    message = ""
    while done < iterations:
        state = {"it": 0}

        def cb(xk):
            state["it"] += 1
            if callback is not None:
                callback(done + state["it"], xk)

        res = minimize(fun, x, jac=True, method="L-BFGS-B", bounds=Bounds(0.0, 1.0), callback=cb,
                       options={"maxiter": iterations - done, "maxfun": 100 * iterations + 100, "maxcor": memory,
                                "ftol": 0.0, "gtol": 0.0})
        done += state["it"]
        nfev += int(res.nfev)
        message = str(res.message)
        x = res.x
        if state["it"] == 0 or res.status == 0:  # no progress at all, or converged / budget reached
            break
    return x, done, nfev, message


def _run(objective: StyleObjective, x0: np.ndarray, optimizer: str, iterations: int, lr: float, progress: bool,
         snapshot_every: int, snapshot_dir, callback, lbfgs_memory: int) -> StyleResult:
    dt = objective.backbone.dtype
    shape = x0.shape
    _, _, start = objective(x0, need_grad=False)
    evals0 = objective.evaluations
    history, snapshots = [], []
    last = {}

    def evaluate(x):
        loss, g, parts = objective(x.reshape(shape))
        last["parts"] = parts
        return loss, g

    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    bar = tqdm(total=iterations, desc=f"style ({optimizer})", unit="it", disable=not progress or tqdm is None,
               leave=False) if tqdm is not None else None

    def after_step(it, x):
        parts = dict(last["parts"])
        history.append(parts)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{parts['total']:.4g}", refresh=False)
        if snapshot_every and it % snapshot_every == 0:
            img = _to_hwc(np.clip(x.reshape(shape), 0, 1))
            snapshots.append((it, img))
            if snapshot_dir is not None:
                save_image(os.path.join(os.fspath(snapshot_dir), f"step_{it:05d}.png"), img)
        if callback is not None:
            callback(it, _to_hwc(x.reshape(shape)), parts)

    t0 = time.perf_counter()
    message = ""
    try:
        if optimizer == "lbfgs":
            def fun(xf):
                loss, g = evaluate(xf.astype(dt, copy=False))
                return loss, np.asarray(g, np.float64).reshape(-1)

            xf, its, _, message = lbfgs(fun, x0, iterations, memory=lbfgs_memory,
                                        callback=lambda it, xk: after_step(it, xk))
            x = np.clip(xf, 0.0, 1.0).astype(dt).reshape(shape)
        elif optimizer == "adam":
            b1, b2, eps = 0.9, 0.999, 1e-8
            x = x0.astype(np.float64)
            m = np.zeros_like(x)
            v = np.zeros_like(x)
            for it in range(1, iterations + 1):
                _, g = evaluate(x.astype(dt))
                g = np.asarray(g, np.float64)
                m = b1 * m + (1 - b1) * g
                v = b2 * v + (1 - b2) * g * g
                step = lr * (m / (1 - b1 ** it)) / (np.sqrt(v / (1 - b2 ** it)) + eps)
                x = np.clip(x - step, 0.0, 1.0)
                after_step(it, x)
            x = x.astype(dt)
            its = iterations
            message = f"{iterations} Adam steps"
        else:
            raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    evals = objective.evaluations - evals0
    _, _, final = objective(x, need_grad=False)
    return StyleResult(image=_to_hwc(x), start=start, final=final, history=history, snapshots=snapshots,
                       iterations=its, evaluations=evals, seconds=seconds, optimizer=optimizer, message=message)


def style_transfer(content, style, backbone: Backbone | None = None, *, alpha: float = 1.0, beta: float = 1e4,
                   tv_weight: float = 0.0, size=None, style_size=None, init="content", optimizer: str = "lbfgs",
                   iterations: int = 300, lr: float = 0.02, content_layers=None, style_layers=None,
                   content_layer_weights=None, style_layer_weights=None, seed: int = 0, progress: bool = True,
                   snapshot_every: int = 0, snapshot_dir=None, callback=None, lbfgs_memory: int = 10) -> StyleResult:
    """Gatys-style transfer: an image with `content`'s features and `style`'s Gram statistics.

    content, style: paths, "skimage:NAME" or arrays (see load_image); content may be None for a texture
    (alpha = 0, then `size` gives the output size). size: the output's longest side or (height, width)
    (default: the content image's size); style_size: the same for the style image (default: the output's
    longest side). alpha, beta, tv_weight: the weights of the content, style and total-variation losses
    (normalized: see the module docstring). init: "content", "noise" or an image. optimizer: "lbfgs"
    (scipy L-BFGS-B with bounds [0, 1]) or "adam" (learning rate lr, clamped to [0, 1]). backbone: default
    RandomFilterNet(seed=seed). snapshot_every: keep the image every that many iterations (and write PNGs
    to snapshot_dir when given). callback(iteration, image, parts) is called after each iteration.
    """
    fn = "style_transfer"
    iterations = _F._int(iterations, fn, "iterations", 1)
    snapshot_every = _F._int(snapshot_every, fn, "snapshot_every", 0)
    lbfgs_memory = _F._int(lbfgs_memory, fn, "lbfgs_memory", 1)
    lr = _F._float(lr, fn, "lr", 0.0, lo_open=True)
    seed = _F._int(seed, fn, "seed", 0)
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"{fn}: optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    if callback is not None and not callable(callback):
        raise TypeError(f"{fn}: callback must be callable, got {type(callback).__name__}")
    if backbone is None:
        backbone = RandomFilterNet(seed=seed)
    if content is not None:
        content_img = _as_image(content, "content")
        content_img = load_image(content_img, size)
        hw = content_img.shape[:2]
    else:
        content_img = None
        if size is None:
            raise ValueError(f"{fn}: without a content image, size=(height, width) is required")
        hw = _target_shape((1, 1), size) if isinstance(size, (tuple, list)) else (
            _F._int(size, fn, "size", 1),) * 2
    if style is None:
        raise ValueError(f"{fn}: a style image is required")
    style_img = _as_image(style, "style")
    style_img = load_image(style_img, style_size if style_size is not None else max(hw))
    rng = np.random.default_rng(seed)
    init_img = _initial(init, content_img, tuple(hw), rng)
    objective = StyleObjective(backbone, content_img if alpha > 0 else None, style_img, alpha=alpha, beta=beta,
                               tv_weight=tv_weight, content_layers=content_layers, style_layers=style_layers,
                               content_layer_weights=content_layer_weights,
                               style_layer_weights=style_layer_weights)
    if min(hw) < backbone.min_size():
        raise ValueError(f"{fn}: the output ({hw[0]}x{hw[1]}) is smaller than {backbone.name} needs "
                         f"({backbone.min_size()}x{backbone.min_size()})")
    x0 = _to_nchw(init_img, backbone.dtype)
    return _run(objective, x0, optimizer, iterations, lr, progress, snapshot_every, snapshot_dir, callback,
                lbfgs_memory)


def synthesize_texture(style, size=256, backbone: Backbone | None = None, *, iterations: int = 300,
                       optimizer: str = "lbfgs", seed: int = 0, style_size=None, **kwargs) -> StyleResult:
    """Texture synthesis: the style loss alone (alpha = 0), starting from uniform noise; size = the output's
    side or (height, width)."""
    kwargs.setdefault("beta", 1.0)
    return style_transfer(None, style, backbone, alpha=0.0, size=size, style_size=style_size, init="noise",
                          iterations=iterations, optimizer=optimizer, seed=seed, **kwargs)


# ---- pictures -------------------------------------------------------------------------------------

def style_figure(content, style, results, path=None, title: str | None = None):
    """The lecture's figure: content, style, then each (caption, image) in `results`, side by side.
    Returns the matplotlib Figure (saved as PNG to `path` when given)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = [("content", _as_image(content, "content")), ("style", _as_image(style, "style"))]
    panels += [(cap, _as_image(img, "result")) for cap, img in results]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.0), squeeze=False)
    for ax, (cap, img) in zip(axes[0], panels):
        ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
        ax.set_title(cap, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        d = os.path.dirname(os.fspath(path))
        if d:
            os.makedirs(d, exist_ok=True)
        fig.savefig(os.fspath(path), dpi=100)
        plt.close(fig)
    return fig


def lecture_figure(path=None, content="skimage:astronaut", style="skimage:gravel", size=256,
                   backbone: Backbone | None = None, alpha: float = 1.0, betas=(1e3, 1e5), iterations: int = 300,
                   seed: int = 0, progress: bool = True, **kwargs) -> dict:
    """Run style transfer twice, with more weight to the content (alpha/beta = alpha/betas[0]) and with more
    weight to the style (alpha/betas[1]), and draw the lecture's four-panel figure to `path`.

    Returns {"results": [StyleResult, StyleResult], "numbers": {...}} with the losses, times and the mean
    absolute pixel difference between the two results."""
    backbone = backbone or RandomFilterNet(seed=seed)
    c = load_image(_as_image(content, "content"), size)
    s = load_image(_as_image(style, "style"), max(c.shape[:2]))
    runs = []
    for beta in betas:
        runs.append(style_transfer(c, s, backbone, alpha=alpha, beta=beta, iterations=iterations, seed=seed,
                                   progress=progress, **kwargs))
    labels = ("more weight to content", "more weight to style")
    captions = [f"{lab}\nalpha/beta = {alpha / b:.0e}" for lab, b in zip(labels, betas)]
    if path is not None:
        style_figure(c, s, list(zip(captions, [r.image for r in runs])), path)
    numbers = {
        "size": list(c.shape[:2]), "iterations": iterations, "backbone": repr(backbone),
        "runs": [{"alpha": alpha, "beta": b, "style_start": r.start["style"], "style_final": r.final["style"],
                  "style_drop": r.start["style"] / max(r.final["style"], 1e-300),
                  "content_final": r.final["content"], "seconds": r.seconds, "evaluations": r.evaluations}
                 for b, r in zip(betas, runs)],
        "mean_abs_difference": float(np.abs(runs[0].image - runs[1].image).mean()),
    }
    return {"results": runs, "numbers": numbers, "content": c, "style": s}


# ---- the `convkit style` command ------------------------------------------------------------------

def _cmd_style(args) -> int:
    if args.backbone == "random":
        try:
            sizes = tuple(int(v) for v in args.scales.split(",")) if args.scales else (3, 5, 7, 11, 15, 23)
        except ValueError:
            raise ValueError(f"--scales must be comma-separated ints such as 3,5,7, got {args.scales!r}") from None
        backbone = RandomFilterNet(sizes=sizes, filters=args.filters, seed=args.seed, device=args.device,
                                   padding=args.padding)
    else:
        if args.weights is None:
            raise ValueError("--backbone vgg19 needs --weights PATH (a PyTorch state dict of torchvision's VGG-19); "
                             "random VGG weights give no useful picture")
        backbone = vgg19_backbone(args.weights, device=args.device)
    content_img = load_image(args.content, args.size)
    size = content_img.shape[:2]
    style_img = load_image(args.style, args.style_size or max(size))
    betas = [args.beta] + ([args.compare_beta] if args.compare_beta is not None else [])
    results = []
    for beta in betas:
        r = style_transfer(None if args.texture else content_img, style_img, backbone,
                           alpha=0.0 if args.texture else args.alpha, beta=beta, tv_weight=args.tv, size=size,
                           init="noise" if args.texture else args.init, optimizer=args.optimizer,
                           iterations=args.iterations, lr=args.lr, seed=args.seed, progress=not args.no_progress,
                           snapshot_every=args.snapshot_every, snapshot_dir=args.snapshot_dir)
        results.append(r)
        s0, s1 = r.start["style"], r.final["style"]
        if r.iterations < args.iterations:
            print(f"convkit style: stopped after {r.iterations} of {args.iterations} iterations: {r.message}")
        print(f"convkit style: {size[0]}x{size[1]}, alpha {0.0 if args.texture else args.alpha:g}, beta {beta:g}, "
              f"{r.optimizer}, {r.iterations} iterations ({r.evaluations} evaluations) in {r.seconds:.1f} s "
              f"on {backbone!r}")
        print(f"  style loss   {s0:.4g} -> {s1:.4g} ({s0 / max(s1, 1e-300):.0f}x lower)")
        if not args.texture:
            print(f"  content loss {r.start['content']:.4g} -> {r.final['content']:.4g}")
    save_image(args.output, results[0].image)
    print(f"  wrote {args.output}")
    if args.compare_beta is not None:
        root, ext = os.path.splitext(args.output)
        save_image(f"{root}_beta{args.compare_beta:g}{ext or '.png'}", results[1].image)
        print(f"  wrote {root}_beta{args.compare_beta:g}{ext or '.png'}")
    if args.compare_beta is not None:
        diff = float(np.abs(results[0].image - results[1].image).mean())
        print(f"  mean |difference| between the two results: {diff:.4f} (pixels in [0, 1])")
    if args.json:
        rep = {"argv": sys.argv[1:], "size": list(size), "backbone": repr(backbone), "alpha": args.alpha,
               "texture": bool(args.texture), "runs": []}
        if not args.texture:
            # the content loss of the style image itself (the photo replaced by the texture): the yardstick for
            # how much of the content a result keeps
            ref = StyleObjective(backbone, content_img, None, alpha=1.0, beta=0.0)
            rep["content_loss_of_style_image"] = float(ref(_to_nchw(load_image(style_img, size), backbone.dtype),
                                                           need_grad=False)[2]["content"])
        for beta, r in zip(betas, results):
            rep["runs"].append({"beta": beta, "optimizer": r.optimizer, "iterations": r.iterations,
                                "evaluations": r.evaluations, "seconds": r.seconds, "start": _plain(r.start),
                                "final": _plain(r.final),
                                "style_drop": r.start["style"] / max(r.final["style"], 1e-300)})
        if len(results) == 2:
            rep["mean_abs_difference"] = float(np.abs(results[0].image - results[1].image).mean())
        try:
            rep["load_average"] = list(os.getloadavg())
        except (AttributeError, OSError):
            pass
        with open(args.json, "w") as f:
            json.dump(rep, f, indent=1)
        print(f"  report {args.json}")
    if args.figure:
        caps = []
        for beta in betas:
            cap = f"alpha/beta = {args.alpha / beta:.0e}" if not args.texture else "texture"
            if len(betas) == 2:
                more = "content" if beta == min(betas) else "style"
                cap = f"more weight to {more}\n{cap}"
            caps.append(cap)
        style_figure(content_img, style_img, list(zip(caps, [r.image for r in results])), args.figure)
        print(f"  figure {args.figure}")
    return 0


def _plain(parts) -> dict:
    return {k: float(v) for k, v in parts.items()}


def _add_cli(sub):
    p = sub.add_parser("style", help="neural style transfer / texture synthesis on convkit's kernels",
                       description="Gatys-style transfer: an image with CONTENT's features and STYLE's Gram "
                                   "statistics. Images: file paths or skimage:NAME (e.g. skimage:astronaut, "
                                   "skimage:gravel).")
    p.add_argument("content", metavar="CONTENT")
    p.add_argument("style", metavar="STYLE")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png")
    p.add_argument("--size", type=int, default=256, help="longest side of the output (default 256)")
    p.add_argument("--style-size", type=int, default=None, help="longest side of the style image (default: --size)")
    p.add_argument("--alpha", type=float, default=1.0, help="content weight (default 1)")
    p.add_argument("--beta", type=float, default=1e4, help="style weight (default 1e4; losses are normalized)")
    p.add_argument("--tv", type=float, default=0.0, help="total-variation weight (default 0)")
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    p.add_argument("--lr", type=float, default=0.02, help="Adam's learning rate (pixels in [0, 1])")
    p.add_argument("--init", choices=("content", "noise"), default="content")
    p.add_argument("--texture", action="store_true",
                   help="texture synthesis: style loss alone from noise; CONTENT only sets the output size")
    p.add_argument("--backbone", choices=("random", "vgg19"), default="random")
    p.add_argument("--weights", default=None, help="VGG-19 weights: a PyTorch state dict file (torchvision layout)")
    p.add_argument("--filters", type=int, default=32, help="random filters per scale (default 32)")
    p.add_argument("--scales", default=None, help="random filter sizes, e.g. 3,5,7,11,15,23 (the default)")
    p.add_argument("--padding", choices=("valid", "same"), default="valid", help="random filters' padding")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--snapshot-every", type=int, default=0, metavar="N")
    p.add_argument("--snapshot-dir", default=None)
    p.add_argument("--compare-beta", type=float, default=None, metavar="BETA2",
                   help="run again with style weight BETA2 (written to OUT_betaBETA2.png; with --figure: the "
                        "lecture's figure, more weight to content vs more weight to style)")
    p.add_argument("--figure", default=None, metavar="FIG.png", help="also draw content | style | result(s)")
    p.add_argument("--json", default=None, metavar="REPORT.json",
                   help="also write the losses, times and (with --compare-beta) the mean |difference| of the two "
                        "results")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_style)
