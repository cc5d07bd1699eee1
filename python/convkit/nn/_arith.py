"""The few elementwise helpers the Python layer needs, on numpy arrays and DeviceArray.

Layer arithmetic runs in convkit.functional's kernels; this module only accumulates gradients and
does optimizer updates. numpy arrays are updated in place. DeviceArray uses its own operators when
the build provides them (branch `cuda`), and otherwise a host round trip, which is correct but slow.
The optimizer updates use convkit.device.sgd_update / adam_update (one fused kernel, CPU and CUDA)
when present, else numpy in place. Every such path goes through the functions below.
"""
from __future__ import annotations

import numpy as np

from .. import device as _device
from ..device import DeviceArray


def is_device(x) -> bool:
    return isinstance(x, DeviceArray)


def _host(x):
    return x.to_numpy() if isinstance(x, DeviceArray) else x


def _store(dst, value: np.ndarray) -> None:
    """dst[...] = value for a DeviceArray dst."""
    dst.copy_from(DeviceArray.from_numpy(np.ascontiguousarray(value, dtype=dst.dtype)))


def add_(dst, src):
    """dst += src in place; returns dst."""
    if isinstance(dst, np.ndarray):
        np.add(dst, _host(src), out=dst)
        return dst
    if hasattr(DeviceArray, "__iadd__"):
        dst += src
        return dst
    _store(dst, dst.to_numpy() + _host(src))
    return dst


def add(a, b):
    """a + b as a new array on a's device."""
    if isinstance(a, np.ndarray):
        return a + _host(b)
    if hasattr(DeviceArray, "__add__"):
        return a + b
    return DeviceArray.from_numpy(np.ascontiguousarray(a.to_numpy() + _host(b)))


def affine_channels(x, scale: np.ndarray, shift: np.ndarray):
    """y[n, c, ...] = x[n, c, ...] * scale[c] + shift[c] (new array on x's device, x's dtype)."""
    shape = (1, -1) + (1,) * (x.ndim - 2)
    s = scale.astype(x.dtype).reshape(shape)
    b = shift.astype(x.dtype).reshape(shape)
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x * s + b)
    if hasattr(DeviceArray, "__mul__"):
        return x * DeviceArray.from_numpy(np.ascontiguousarray(np.broadcast_to(s, x.shape))) + \
            DeviceArray.from_numpy(np.ascontiguousarray(np.broadcast_to(b, x.shape)))
    return DeviceArray.from_numpy(np.ascontiguousarray(x.to_numpy() * s + b))


def full_like_rows(like, n: int, value: float):
    """A 1-D array of n copies of value, with like's dtype and device."""
    a = np.full(n, value, dtype=like.dtype)
    return DeviceArray.from_numpy(a) if isinstance(like, DeviceArray) else a


def zeros_like(x):
    if isinstance(x, DeviceArray):
        return DeviceArray.zeros(list(x.shape), x.dtype)
    return np.zeros_like(x)


def sgd_update(p, g, buf, lr: float, momentum: float, dampening: float, nesterov: bool, weight_decay: float,
               first: bool):
    """One SGD step on p (in place), PyTorch's torch.optim.SGD semantics:

        g <- g + weight_decay * p
        buf <- g (first step) or momentum * buf + (1 - dampening) * g   (only when momentum != 0)
        g <- g + momentum * buf (nesterov) or buf
        p <- p - lr * g
    buf (same shape as p, or None when momentum == 0) is updated in place.
    """
    fused = getattr(_device, "sgd_update", None)
    if fused is not None:  # the fused kernel (numpy and DeviceArray), once the build has it
        fused(p, g, buf, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
              nesterov=nesterov, first_step=first)
        return
    dev = isinstance(p, DeviceArray)
    P, G = _host(p), _host(g)
    B = _host(buf) if buf is not None else None
    if weight_decay != 0.0:
        G = G + weight_decay * P
    if momentum != 0.0:
        if first:
            B[...] = G
        else:
            B *= momentum
            B += (1.0 - dampening) * G
        G = G + momentum * B if nesterov else B
    P -= lr * G
    if dev:
        _store(p, P)
        if buf is not None:
            _store(buf, B)


def adam_update(p, g, m, v, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, step: int,
                decoupled: bool):
    """One Adam (or AdamW when decoupled) step on p in place, torch.optim.Adam/AdamW semantics:

        g <- g + weight_decay * p                 (Adam;  AdamW: p <- p * (1 - lr * weight_decay))
        m <- beta1 m + (1 - beta1) g;   v <- beta2 v + (1 - beta2) g^2
        p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """
    fused = getattr(_device, "adam_update", None)
    if fused is not None:  # the fused kernel (numpy and DeviceArray), once the build has it
        fused(p, g, m, v, lr=lr, step=step, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
              decoupled=decoupled)
        return
    dev = isinstance(p, DeviceArray)
    P, G, M, V = _host(p), _host(g), _host(m), _host(v)
    if weight_decay != 0.0:
        if decoupled:
            P *= 1.0 - lr * weight_decay
        else:
            G = G + weight_decay * P
    M *= beta1
    M += (1.0 - beta1) * G
    V *= beta2
    V += (1.0 - beta2) * (G * G)
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    denom = np.sqrt(V) / np.sqrt(bc2)
    denom += eps
    P -= (lr / bc1) * (M / denom)
    if dev:
        _store(p, P)
        _store(m, M)
        _store(v, V)
