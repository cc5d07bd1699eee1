"""Occlusion sensitivity (Zeiler & Fergus 2014): slide a masking window over the image and measure
how much the target class score drops.

For image n, window position (y, x) and target class t:

    drop[n, y, x] = s(image_n)[t] - s(image_n with the window at (y, x) replaced by the baseline)[t]

where s is the softmax probability (default), the log-probability or the raw logit. The (N, H, W)
map at a pixel is the MEAN drop over all window positions that cover it (Captum's convention), so a
pixel's value does not depend on how many windows happen to overlap there.

Windows start at 0 and move by `stride`; with ``cover_edges=True`` (convkit's default) one more
window is placed flush with the bottom/right edge whenever the stride does not land there, so no
pixel is left without a value (Captum leaves such pixels uncovered). The occluded copies are built
and evaluated chunk by chunk (`batch_size` copies at a time: memory stays bounded) with no gradient
bookkeeping. Works with any convkit network and with any callable mapping [B, C, H, W] to logits.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _util as U

_OUTPUTS = ("prob", "log_prob", "logit")


def window_positions(size: int, window: int, stride: int, cover_edges: bool = True) -> np.ndarray:
    """Start offsets 0, stride, 2*stride, ... <= size - window (plus size - window when cover_edges)."""
    pos = list(range(0, size - window + 1, stride))
    if cover_edges and pos[-1] != size - window:
        pos.append(size - window)
    return np.asarray(pos, dtype=np.int64)


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Blur each channel of x [N, C, H, W] with a Gaussian of std `sigma` pixels (edges reflected)."""
    if sigma <= 0:
        return x.copy()
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    out = x.astype(np.float64)
    for axis in (2, 3):
        n = out.shape[axis]
        pad = [(0, 0)] * 4
        pad[axis] = (r, r)
        mode = "reflect" if n > r else "symmetric"
        p = np.pad(out, pad, mode=mode) if n > 1 else np.pad(out, pad, mode="edge")
        acc = np.zeros_like(out)
        for i, w in enumerate(k):
            sl = [slice(None)] * 4
            sl[axis] = slice(i, i + n)
            acc += w * p[tuple(sl)]
        out = acc
    return out.astype(x.dtype)


def make_baseline(x: np.ndarray, baseline, window, blur_sigma, fn: str = "occlusion"):
    """The values an occluded window takes: a scalar, an array [N|1, C, H, W], per-image channel
    means ('mean') or a blurred copy of the image ('blur')."""
    if isinstance(baseline, str):
        if baseline == "mean":
            return x.mean(axis=(2, 3), keepdims=True).astype(x.dtype)
        if baseline == "blur":
            sigma = max(window) / 2.0 if blur_sigma is None else U.as_float(blur_sigma, fn, "blur_sigma", lo=0.0)
            return gaussian_blur(x, sigma)
        raise ValueError(f"{fn}: baseline must be a number, an array, 'mean' or 'blur', got {baseline!r}")
    if isinstance(baseline, numbers.Real) and not isinstance(baseline, (bool, np.bool_)):
        return x.dtype.type(U.as_float(baseline, fn, "baseline"))
    if isinstance(baseline, (bool, np.bool_)) or baseline is None:
        raise TypeError(f"{fn}: baseline must be a number, an array, 'mean' or 'blur', got {baseline!r}")
    b = np.asarray(U.to_numpy(baseline) if isinstance(baseline, U.DeviceArray) else baseline)
    if b.dtype.kind not in "biuf":
        raise TypeError(f"{fn}: baseline must be a number, an array, 'mean' or 'blur', got dtype {b.dtype}")
    if b.ndim == 3:
        b = b[None]
    n, c, h, w = x.shape
    if b.ndim != 4 or b.shape[0] not in (1, n) or b.shape[1] not in (1, c) or b.shape[2:] != (h, w):
        raise ValueError(f"{fn}: an array baseline must have shape [C, H, W] or [N, C, H, W] = "
                         f"[{n}, {c}, {h}, {w}], got {list(b.shape)}")
    b = np.ascontiguousarray(b, dtype=x.dtype)
    if not np.isfinite(b).all():
        raise ValueError(f"{fn}: baseline contains NaN or infinity")
    return b


def _window_arg(window, sliding_window_shapes, c, fn):
    if sliding_window_shapes is not None:
        if window is not None:
            raise ValueError(f"{fn}: give window or its Captum alias sliding_window_shapes, not both")
        s = sliding_window_shapes
        if isinstance(s, (tuple, list)) and len(s) == 3:  # Captum's (C, h, w)
            if U.as_int(s[0], fn, "sliding_window_shapes[0]", 1) != c:
                raise ValueError(f"{fn}: sliding_window_shapes={tuple(s)} masks {s[0]} of {c} channels; convkit's "
                                 f"occlusion always masks all channels (use ({c}, h, w) or just (h, w))")
            s = s[1:]
        return U.as_pair(s, fn, "sliding_window_shapes", 1)
    return U.as_pair(8 if window is None else window, fn, "window", 1)


def _stride_arg(stride, strides, win, fn):
    if strides is not None:
        if stride is not None:
            raise ValueError(f"{fn}: give stride or its Captum alias strides, not both")
        s = strides
        if isinstance(s, (tuple, list)) and len(s) == 3:  # Captum's (c, h, w): the channel stride is moot
            s = s[1:]
        return U.as_pair(s, fn, "strides", 1)
    if stride is None:  # default: a quarter of the window (overlapping windows give smooth maps)
        return max(1, win[0] // 4), max(1, win[1] // 4)
    return U.as_pair(stride, fn, "stride", 1)


def occlusion(model, x, target=None, window=None, stride=None, baseline=None, *, output: str = "prob",
              batch_size: int = 512, cover_edges: bool = True, blur_sigma=None, device=None, progress=None,
              sliding_window_shapes=None, strides=None, baselines=None) -> np.ndarray:
    """Occlusion map [N, H, W]: mean drop of the target score over the windows covering each pixel.

    model: a convkit network or any callable [B, C, H, W] -> logits [B, K].
    x: images [N, C, H, W] (lists, ints and non-contiguous arrays are converted).
    target: int, list/array of N ints, or None (the predicted class).
    window, stride: int or (h, w); stride defaults to a quarter of the window.
    baseline: a number (default 0), an array [C, H, W] / [N, C, H, W], 'mean' (each image's channel means) or
      'blur' (a Gaussian blur of the image, std `blur_sigma`, default max(window)/2).
    output: 'prob' (softmax probability, default), 'log_prob' or 'logit'.
    batch_size: occluded copies per forward pass (bounds memory).
    Captum aliases: sliding_window_shapes (also (C, h, w)), strides, baselines.
    """
    fn = "occlusion"
    U.check_callable(model, fn)
    x = U.as_images(x, fn)
    x = x.astype(U.model_dtype(model, x.dtype), copy=False)
    n, c, h, w = x.shape
    win = _window_arg(window, sliding_window_shapes, c, fn)
    if win[0] > h or win[1] > w:
        raise ValueError(f"{fn}: window {win[0]}x{win[1]} is larger than the image {h}x{w}")
    st = _stride_arg(stride, strides, win, fn)
    if baselines is not None:
        if baseline is not None:
            raise ValueError(f"{fn}: give baseline or its Captum alias baselines, not both")
        baseline = baselines
    if baseline is None:
        baseline = 0.0
    if output not in _OUTPUTS:
        raise ValueError(f"{fn}: output must be one of {_OUTPUTS}, got {output!r}")
    batch_size = U.as_int(batch_size, fn, "batch_size", 1)
    base = make_baseline(x, baseline, win, blur_sigma, fn)
    dev = U.model_device(model, device)

    ys = window_positions(h, win[0], st[0], bool(cover_edges))
    xs = window_positions(w, win[1], st[1], bool(cover_edges))
    wy = np.repeat(ys, xs.size)
    wx = np.tile(xs, ys.size)
    nwin = wy.size

    def score(z, t):
        if output == "logit":
            return np.asarray(z, dtype=np.float64)[np.arange(len(t)), t]
        s = U.softmax(z) if output == "prob" else U.log_softmax(z)
        return s[np.arange(len(t)), t]

    rows, cols = np.arange(h), np.arange(w)
    drops = np.empty(n * nwin, dtype=np.float64)
    with U.eval_mode(model), U.no_grad_if_module(model):
        z0 = np.concatenate([U.logits_of(model, x[a:b], dev, fn) for a, b in U.batches(n, batch_size)])
        t = U.resolve_target(target, n, z0.shape[1], lambda: z0.argmax(axis=1), fn)
        s0 = score(z0, t)
        bar = U.progress(n * nwin, "occlusion", progress)
        try:
            for a, b in U.batches(n * nwin, batch_size):
                k = np.arange(a, b)
                img, win_id = k // nwin, k % nwin
                y0, x0 = wy[win_id][:, None], wx[win_id][:, None]
                mask = (((rows >= y0) & (rows < y0 + win[0]))[:, :, None]
                        & ((cols >= x0) & (cols < x0 + win[1]))[:, None, :])[:, None]
                fill = base[img] if isinstance(base, np.ndarray) and base.ndim == 4 and base.shape[0] == n else base
                xb = np.where(mask, fill, x[img]).astype(x.dtype, copy=False)
                drops[a:b] = s0[img] - score(U.logits_of(model, xb, dev, fn), t[img])
                bar.update(b - a)
        finally:
            bar.close()

    drops = drops.reshape(n, nwin)
    total = np.zeros((n, h, w), dtype=np.float64)
    count = np.zeros((h, w), dtype=np.float64)
    for j in range(nwin):
        sl = (slice(wy[j], wy[j] + win[0]), slice(wx[j], wx[j] + win[1]))
        total[(slice(None),) + sl] += drops[:, j, None, None]
        count[sl] += 1.0
    out = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return out.astype(x.dtype)
