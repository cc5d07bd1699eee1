"""Saliency by backpropagation (Simonyan, Vedaldi & Zisserman 2014).

For image n and target class t the map is

    saliency[n, i, j] = max over channels c of | d z_t / d x[n, c, i, j] |

where z_t is the UNNORMALIZED class score (the logit, not the softmax: the softmax couples all
classes, so its gradient can grow by making other classes less likely). The gradient comes from one
backward pass of the network with a one-hot dy at the logits and ``param_grads=False`` (no weight
gradients are computed or accumulated: the model's p.grad are left untouched).
"""
from __future__ import annotations

import numpy as np

from ..device import asarray, to_numpy
from . import _util as U

_REDUCE = ("max", "mean", "sum", None)


def input_gradients(model, x, target=None, *, batch_size: int = 256, device=None, progress=None,
                    return_logits: bool = False):
    """d z_target / d x for every image: an array like x [N, C, H, W] (signed, not reduced).

    model: a convkit network (forward + backward). target: int, list/array of N ints or None
    (the predicted class). With return_logits, also returns the logits [N, K].
    """
    fn = "input_gradients"
    U.check_callable(model, fn, need_backward=True)
    x = U.as_images(x, fn)
    x = x.astype(U.model_dtype(model, x.dtype), copy=False)
    n = x.shape[0]
    batch_size = U.as_int(batch_size, fn, "batch_size", 1)
    dev = U.model_device(model, device)
    grads = np.empty_like(x)
    all_logits = []
    t_all = None  # resolved on the first batch, once the number of classes is known
    bar = U.progress(n, "saliency", progress)
    with U.eval_mode(model):
        try:
            for a, b in U.batches(n, batch_size):
                xb = asarray(x[a:b], device=dev)
                y = model.forward(xb)
                z = np.asarray(to_numpy(y))
                if z.ndim != 2 or z.shape[0] != b - a:
                    raise ValueError(f"{fn}: the model must return logits of shape [N, classes], got {list(z.shape)}")
                if a == 0 and target is not None:
                    t_all = U.resolve_target(target, n, z.shape[1], None, fn)
                t = z.argmax(axis=1) if t_all is None else t_all[a:b]
                dy = np.zeros(z.shape, dtype=z.dtype)
                dy[np.arange(b - a), t] = 1.0
                dx = model.backward(asarray(dy, device=dev), param_grads=False)
                if isinstance(dx, tuple):  # Sequential.backward(..., return_grads=...) style
                    dx = dx[0]
                grads[a:b] = to_numpy(dx)
                all_logits.append(z)
                bar.update(b - a)
        finally:
            bar.close()
            if hasattr(model, "clear_cache"):
                model.clear_cache()
    return (grads, np.concatenate(all_logits)) if return_logits else grads


def saliency(model, x, target=None, *, abs: bool = True, reduce: str | None = "max", batch_size: int = 256,
             device=None, progress=None) -> np.ndarray:
    """Saliency map [N, H, W]: |d z_target / d x| reduced over channels (max by default).

    abs=False keeps the sign (then reduce='max' takes the channel of largest magnitude, sign kept);
    reduce in 'max', 'mean', 'sum' or None (None returns [N, C, H, W]).
    """
    fn = "saliency"
    if reduce not in _REDUCE:
        raise ValueError(f"{fn}: reduce must be one of {_REDUCE}, got {reduce!r}")
    g = input_gradients(model, x, target, batch_size=batch_size, device=device, progress=progress)
    m = np.abs(g) if abs else g
    if reduce is None:
        return m
    if reduce == "mean":
        return m.mean(axis=1)
    if reduce == "sum":
        return m.sum(axis=1)
    if abs:
        return m.max(axis=1)
    idx = np.abs(g).argmax(axis=1)[:, None]
    return np.take_along_axis(g, idx, axis=1)[:, 0]
