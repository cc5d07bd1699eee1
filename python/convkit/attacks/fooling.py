"""Fooling images and class visualization: gradient ascent on a class's unnormalized score.

Fooling images (the lecture): start from any image, pick a target class, and repeat

    x <- clip(x + a * g / ||g||_2, lo, hi),   g = grad_x Score_target(x)        (norm="l2")
    x <- clip(x + a * sign(g), lo, hi)                                          (norm="linf")

until the network predicts the target (with at least `min_confidence` softmax probability, if
given) or `steps` is reached. The step is normalized, so `step_size` is the distance moved per step
in pixel units whatever the scale of the gradient; each image stops on its own. Gradient components
that push a pixel already at a bound further out are dropped before normalizing (they could not
move it), so the whole step goes where the image can change. loss="score" is the lecture's
objective; loss="margin" or "ce" reach the target with smaller changes (see losses.py).

Class visualization (Simonyan et al. 2014): the same ascent from noise, with an L2 penalty
l2_reg * ||x - c||^2 pulling toward c (the normalization mean if the AttackModel has one, else the
lower bound, e.g. black), random jitter (a circular shift of up to `jitter` pixels before each step,
undone after) and an occasional Gaussian blur, which keep the image from filling with noise.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _checks as C
from ._common import per_image_norm, progress_bar, setup
from .losses import check_loss, objective
from .model import as_attack_model, probabilities
from .result import finish


def every_target(x, labels, num_classes: int):
    """(x_rep, labels_rep, target_rep): each image paired with every class other than its label."""
    x = np.asarray(x)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if labels.shape[0] != x.shape[0]:
        raise ValueError(f"every_target: labels has {labels.shape[0]} entries but x has {x.shape[0]} images")
    idx, tgt = [], []
    for i, y in enumerate(labels):
        for t in range(num_classes):
            if t != y:
                idx.append(i)
                tgt.append(t)
    idx = np.asarray(idx, np.int64)
    return np.ascontiguousarray(x[idx]), labels[idx], np.asarray(tgt, np.int64)


def _normalized_step(g, step_size, norm):
    if norm == "linf":
        return np.sign(g) * np.asarray(step_size, g.dtype)
    n = per_image_norm(g)
    return (step_size * np.where(n > 0, g / np.maximum(n, 1e-300), 0.0)).astype(g.dtype)


def fooling_images(model, x, target, *, steps: int = 100, step_size: float = 0.2, norm: str = "l2",
                   min_confidence: float | None = None, labels=None, loss: str = "score", progress: bool = False):
    """Targeted fooling images by normalized ascent on Score_target. Returns (x_fool, AttackResult).

    target:          an int, or one class per image.
    step_size:       pixel-unit move per step (L2 norm of the step, or per-pixel for norm='linf'); the
                     default 0.2 reaches the target on 99.9% of the (sample image, other class) pairs of
                     the shipped LeNet-5 within 100 steps.
    min_confidence:  also require softmax(target) >= this before stopping (None: the prediction alone).
    labels:          the true classes, recorded only.
    """
    fn = "fooling_images"
    steps = C.integer(steps, fn, "steps", 1)
    step_size = C.number(step_size, fn, "step_size", 0.0, lo_open=True)
    norm = C.norm_name(norm, fn)
    loss = check_loss(loss, fn)
    if min_confidence is not None:
        min_confidence = C.number(min_confidence, fn, "min_confidence", 0.0)
        if min_confidence >= 1.0:
            raise ValueError(f"{fn}: min_confidence must be < 1, got {min_confidence:g}")
    s = setup(fn, model, x, labels, target, True)
    am, x = s.am, s.x
    lo, hi = (np.asarray(b, x.dtype) for b in am.bounds)
    tgt = s.target
    x_adv = x.copy()
    iterations = np.full(x.shape[0], steps, np.int64)
    active = np.arange(x.shape[0])

    def reached(z, rows):
        hit = np.argmax(z, axis=1) == tgt[rows]
        if min_confidence is not None:
            hit &= probabilities(z)[np.arange(z.shape[0]), tgt[rows]] >= min_confidence
        return hit

    with progress_bar(steps, "fooling images", progress) as bar:
        for t in range(steps):
            xa = x_adv[active]
            z, g = am.value_and_grad(xa, lambda z, rows: objective(z, tgt[active[rows]], loss, True)[1])
            done = reached(z, active)
            iterations[active[done]] = t
            keep = ~done
            active, xa, g = active[keep], xa[keep], g[keep]
            if active.size == 0:
                break
            # a pixel at a bound cannot move further out: drop those components before normalizing, so
            # that the whole step goes where the image can still change
            g[((xa >= hi) & (g > 0)) | ((xa <= lo) & (g < 0))] = 0
            x_adv[active] = np.clip(xa + _normalized_step(g, step_size, norm), lo, hi)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(active=int(active.size))
    params = {"steps": steps, "step_size": step_size, "norm": norm, "min_confidence": min_confidence,
              "loss": loss, "bounds": list(am.bounds)}
    return x_adv, finish(am, fn, params, x, x_adv, True, s.labels, tgt, s.orig, iterations)


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of [N, C, H, W] over H and W (reflect padding, radius ceil(3 sigma))."""
    if sigma <= 0:
        return x
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    y = x.astype(np.float64)
    for axis in (2, 3):
        r_eff = min(r, y.shape[axis] - 1)
        if r_eff <= 0:
            continue
        kk = k[r - r_eff:r + r_eff + 1]
        kk = kk / kk.sum()
        pad = [(0, 0)] * 4
        pad[axis] = (r_eff, r_eff)
        p = np.pad(y, pad, mode="reflect")
        out = np.zeros_like(y)
        for j, w in enumerate(kk):
            sl = [slice(None)] * 4
            sl[axis] = slice(j, j + y.shape[axis])
            out += w * p[tuple(sl)]
        y = out
    return y.astype(x.dtype)


def class_visualization(model, target, *, shape, steps: int = 200, step_size: float = 0.1,
                        l2_reg: float = 1e-3, jitter: int = 2, blur_every: int = 10, blur_sigma: float = 0.5,
                        seed: int = 0, x_init=None, progress: bool = False):
    """Images that maximize a class's score, from noise. Returns (images [T, C, H, W], AttackResult).

    target: an int or a list of classes (one image each); shape: (C, H, W) of one image.
    The objective is Score_target(x) - l2_reg * ||x - c||^2 (see the module docstring for c); it is
    climbed with L2-normalized steps of `step_size`, for all `steps` (no early stop).
    """
    fn = "class_visualization"
    am = as_attack_model(model, fn)
    am.require_gradient(fn)
    if not isinstance(shape, (tuple, list)) or len(shape) != 3:
        raise ValueError(f"{fn}: shape must be (C, H, W) of one image, got {shape!r}")
    shape = tuple(C.integer(v, fn, "shape", 1) for v in shape)
    steps = C.integer(steps, fn, "steps", 1)
    step_size = C.number(step_size, fn, "step_size", 0.0, lo_open=True)
    l2_reg = C.number(l2_reg, fn, "l2_reg", 0.0)
    jitter = C.integer(jitter, fn, "jitter", 0)
    blur_every = C.integer(blur_every, fn, "blur_every", 0)
    blur_sigma = C.number(blur_sigma, fn, "blur_sigma", 0.0)
    seed = C.integer(seed, fn, "seed", 0)
    if isinstance(target, numbers.Integral) and not isinstance(target, (bool, np.bool_)):
        target = [int(target)]
    try:
        n = len(target)
    except TypeError:
        raise TypeError(f"{fn}: target must be an int or a sequence of ints, got {type(target).__name__}") from None
    if n == 0:
        raise ValueError(f"{fn}: target is empty")
    lo, hi = am.bounds
    rng = np.random.default_rng(seed)
    if x_init is None:
        x0 = lo + (hi - lo) * np.clip(0.5 + 0.1 * rng.standard_normal((n,) + shape), 0.0, 1.0)
    else:
        x0 = x_init
    s = setup(fn, am, x0, None, target, True)
    x0 = s.x
    if x0.shape[1:] != shape:
        raise ValueError(f"{fn}: x_init must have images of shape {list(shape)}, got {list(x0.shape[1:])}")
    tgt = s.target
    c = am.mean.reshape(1, -1, 1, 1) if am.mean is not None else lo
    x = x0.astype(np.float64)
    lo_, hi_ = float(lo), float(hi)
    with progress_bar(steps, "class visualization", progress) as bar:
        for t in range(steps):
            ox, oy = (rng.integers(-jitter, jitter + 1, size=2) if jitter else (0, 0))
            xj = np.roll(x, (int(ox), int(oy)), axis=(2, 3))
            _, g = am.value_and_grad(np.ascontiguousarray(xj, dtype=am.dtype),
                                     lambda z, rows: objective(z, tgt[rows], "score", True)[1])
            g = np.roll(g.astype(np.float64), (-int(ox), -int(oy)), axis=(2, 3))
            g -= 2.0 * l2_reg * (x - c)
            x = np.clip(x + _normalized_step(g, step_size, "l2"), lo_, hi_)
            if blur_every and blur_sigma > 0 and (t + 1) % blur_every == 0 and t + 1 < steps:
                x = gaussian_blur(x, blur_sigma)
            if bar is not None:
                bar.update(1)
    x = np.ascontiguousarray(np.clip(x, lo_, hi_), dtype=am.dtype)
    params = {"steps": steps, "step_size": step_size, "l2_reg": l2_reg, "jitter": jitter,
              "blur_every": blur_every, "blur_sigma": blur_sigma, "seed": seed, "bounds": list(am.bounds)}
    return x, finish(am, fn, params, x0, x, True, None, tgt, s.orig, np.full(n, steps, np.int64))
