"""Checks that attribution maps tell the truth: rank agreement between maps, and the model
randomization test of Adebayo et al. (2018), "Sanity Checks for Saliency Maps": maps that do not
change when the trained weights are replaced by random ones explain nothing about the training."""
from __future__ import annotations

import copy

import numpy as np

from ..device import to_numpy


def _ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 along the last axis, ties getting the mean of their ranks (as Spearman needs)."""
    order = np.argsort(a, axis=-1, kind="stable")
    s = np.take_along_axis(a, order, axis=-1)
    n = a.shape[-1]
    ranks = np.empty(a.shape, dtype=np.float64)
    for r in range(a.shape[0]):
        starts = np.flatnonzero(np.r_[True, s[r, 1:] != s[r, :-1]])
        ends = np.r_[starts[1:], n]
        mean_rank = (starts + ends - 1) / 2.0
        ranks[r, order[r]] = np.repeat(mean_rank, ends - starts)
    return ranks


def rank_correlation(a, b) -> np.ndarray:
    """Spearman rank correlation of a[i] and b[i] for every i: maps [N, ...] -> [N] in [-1, 1]
    (0 for a constant map)."""
    fn = "rank_correlation"
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim < 2:
        raise ValueError(f"{fn}: a and b must have the same shape [N, ...], got {list(x.shape)} and {list(y.shape)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"{fn}: maps contain NaN or infinity")
    rx = _ranks(x.reshape(x.shape[0], -1))
    ry = _ranks(y.reshape(y.shape[0], -1))
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(axis=1) * (ry ** 2).sum(axis=1))
    return np.divide((rx * ry).sum(axis=1), den, out=np.zeros(x.shape[0]), where=den > 0)


def chance_rank_correlation(a, b, shifts: int = 5) -> float:
    """The rank correlation expected by chance: a[i] against b[(i + s) % N] (other images' maps),
    averaged over `shifts` shifts. Compare the matched mean of rank_correlation(a, b) with this."""
    x, y = np.asarray(a), np.asarray(b)
    n = x.shape[0]
    if n < 2:
        raise ValueError("chance_rank_correlation: need at least 2 maps")
    vals = [rank_correlation(x, np.roll(y, s, axis=0)).mean() for s in range(1, min(shifts, n - 1) + 1)]
    return float(np.mean(vals))


def window_smooth(maps, window, stride=1, cover_edges: bool = True) -> np.ndarray:
    """Maps [N, H, W] seen at an occlusion map's resolution: every window position gets the mean of
    the map inside it, and every pixel the mean over the windows that cover it (exactly how
    occlusion turns per-window drops into a pixel map). Use it before comparing a pixel-sharp
    saliency map with an occlusion map of the same window and stride."""
    from .occlusion import window_positions
    from ._util import as_images, as_pair

    m = as_images(maps, "window_smooth", "maps", ndim=3).astype(np.float64)
    n, h, w = m.shape
    wh, ww = as_pair(window, "window_smooth", "window")
    sh, sw = as_pair(stride, "window_smooth", "stride")
    if wh > h or ww > w:
        raise ValueError(f"window_smooth: window {wh}x{ww} is larger than the maps {h}x{w}")
    ii = np.zeros((n, h + 1, w + 1))
    ii[:, 1:, 1:] = m.cumsum(1).cumsum(2)  # integral image: window sums in O(1)
    total = np.zeros((n, h, w))
    count = np.zeros((h, w))
    for y0 in window_positions(h, wh, sh, cover_edges):
        for x0 in window_positions(w, ww, sw, cover_edges):
            s = ii[:, y0 + wh, x0 + ww] - ii[:, y0, x0 + ww] - ii[:, y0 + wh, x0] + ii[:, y0, x0]
            total[:, y0:y0 + wh, x0:x0 + ww] += (s / (wh * ww))[:, None, None]
            count[y0:y0 + wh, x0:x0 + ww] += 1
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def randomize_weights(model, layers=None, seed: int = 0):
    """A deep copy of `model` whose parameters (all, or those of the named `layers`) are replaced by
    Gaussian noise with each array's own standard deviation (zero arrays, e.g. fresh biases, stay
    zero). The original model is not changed."""
    rng = np.random.default_rng(seed)
    m = copy.deepcopy(model)
    if hasattr(m, "clear_cache"):
        m.clear_cache()
    state = {}
    for name, p in m.named_parameters():
        if layers is not None and name.rsplit(".", 1)[0] not in layers:
            continue
        a = np.asarray(to_numpy(getattr(p, "data", p)), dtype=np.float64)
        std = float(a.std())
        state[name] = (rng.standard_normal(a.shape) * std).astype(a.dtype) if std > 0 else a.copy()
    if layers is not None:
        known = {n.rsplit(".", 1)[0] for n, _ in m.named_parameters()}
        missing = [nm for nm in layers if nm not in known]
        if missing:
            raise KeyError(f"randomize_weights: no parameters in layers {missing}; layers with parameters: "
                           f"{sorted(known)}")
    m.load_state_dict(state, strict=False)
    return m


def map_similarity(maps_a, maps_b) -> dict:
    """Mean rank correlation of matched maps [N, H, W] and its chance level (mismatched pairs)."""
    ra = rank_correlation(maps_a, maps_b)
    return {"rank_correlation": float(ra.mean()), "chance": chance_rank_correlation(maps_a, maps_b),
            "n": int(np.asarray(maps_a).shape[0])}


__all__ = ["chance_rank_correlation", "map_similarity", "randomize_weights", "rank_correlation", "window_smooth"]
