"""Patch attacks: perturbations confined to one region of the image.

patch_attack: per image, the pixels inside a mask are free (within the pixel bounds, and within
eps of the original if eps is given); everything outside stays bit-for-bit unchanged. The region is
a fixed box (top, left, height, width), a box of a given size at a random place per image (seeded),
or any mask array. The pixels are optimized by signed-gradient steps (I-FGSM restricted to the mask):

    x <- clip(x + a * sign(g) * m, lo, hi)

universal_patch (Brown et al. 2017, without the scale/rotation transforms): ONE patch P [C, h, w]
optimized over a batch of images. Each step pastes P at a random place in each image of a minibatch
(overwriting those pixels), computes g = grad_x J for the batch and moves P by a * sign(sum of the
gradients under each pasted copy). It is then evaluated by pasting it at fresh random places.
"""
from __future__ import annotations

import numpy as np

from . import _checks as C
from ._common import fooled, progress_bar, setup
from .losses import check_loss, objective
from .pgd import linf_box
from .result import finish


# ---- regions --------------------------------------------------------------------------------------

def _size_pair(size, fn, hw):
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (size, size)
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise ValueError(f"{fn}: size must be an int or (height, width), got {size!r}")
    h, w = (C.integer(v, fn, "size", 1) for v in size)
    if h > hw[0] or w > hw[1]:
        raise ValueError(f"{fn}: patch size ({h}, {w}) does not fit in images of size {hw[0]}x{hw[1]}")
    return h, w


def random_locations(n: int, image_hw, patch_hw, seed: int = 0) -> np.ndarray:
    """[n, 2] (top, left) corners, uniform over the places where the patch fits."""
    rng = np.random.default_rng(seed)
    top = rng.integers(0, image_hw[0] - patch_hw[0] + 1, size=n)
    left = rng.integers(0, image_hw[1] - patch_hw[1] + 1, size=n)
    return np.stack([top, left], axis=1).astype(np.int64)


def region_mask(x_shape, *, mask=None, box=None, size=None, location: str = "random", seed: int = 0,
                fn: str = "region_mask") -> np.ndarray:
    """A {0, 1} mask broadcastable to x_shape [N, C, H, W], from exactly one of mask / box / size.

    box = (top, left, height, width): the same box in every image.
    size = (h, w) or an int: an h x w box at location 'random' (per image, seeded) or 'center'.
    mask: an array of 0/1 (or bool) of shape [H, W], [N, H, W], [1 or N, 1 or C, H, W].
    """
    n, c, h, w = x_shape
    given = [k for k, v in (("mask", mask), ("box", box), ("size", size)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"{fn}: give exactly one of mask=, box= or size= (got {', '.join(given) or 'none'})")
    if box is not None:
        if not isinstance(box, (tuple, list)) or len(box) != 4:
            raise ValueError(f"{fn}: box must be (top, left, height, width), got {box!r}")
        top, left, bh, bw = (C.integer(v, fn, "box", 0) for v in box)
        if bh < 1 or bw < 1 or top + bh > h or left + bw > w:
            raise ValueError(f"{fn}: box (top={top}, left={left}, height={bh}, width={bw}) must be non-empty and "
                             f"inside the {h}x{w} image")
        m = np.zeros((1, 1, h, w), np.float32)
        m[..., top:top + bh, left:left + bw] = 1
        return m
    if size is not None:
        ph, pw = _size_pair(size, fn, (h, w))
        if location == "center":
            locs = np.tile([[(h - ph) // 2, (w - pw) // 2]], (n, 1))
        elif location == "random":
            locs = random_locations(n, (h, w), (ph, pw), C.integer(seed, fn, "seed", 0))
        else:
            raise ValueError(f"{fn}: location must be 'random' or 'center', got {location!r}")
        m = np.zeros((n, 1, h, w), np.float32)
        for i, (t, le) in enumerate(locs):
            m[i, :, t:t + ph, le:le + pw] = 1
        return m
    a = np.asarray(mask)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{fn}: mask must hold 0/1 or bools, got dtype {a.dtype}")
    if a.ndim == 2:
        a = a[None, None]
    elif a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or a.shape[-2:] != (h, w) or a.shape[0] not in (1, n) or a.shape[1] not in (1, c):
        raise ValueError(f"{fn}: mask must have shape [H, W], [N, H, W] or [1|N, 1|C, H, W] for images "
                         f"{C.shape_str(x_shape)}, got {C.shape_str(np.shape(mask))}")
    a = a.astype(np.float64)
    if not np.all((a == 0) | (a == 1)):
        raise ValueError(f"{fn}: mask must hold only 0 and 1 (or bools)")
    if not np.all(a.reshape(a.shape[0], -1).any(axis=1)):
        raise ValueError(f"{fn}: mask is empty (all zeros) for at least one image: nothing to perturb")
    return a.astype(np.float32)


# ---- per-image patch ------------------------------------------------------------------------------

def patch_attack(model, x, labels=None, *, mask=None, box=None, size=None, location: str = "random",
                 seed: int = 0, steps: int = 100, step_size: float = 0.05, eps: float | None = None,
                 init: str = "original", targeted: bool = False, target=None, loss: str = "ce",
                 early_stop: bool = True, progress: bool = False):
    """A localized attack: only the pixels inside the region change. Returns (x_adv, AttackResult).

    Region: exactly one of mask= (0/1 array), box=(top, left, height, width), size=(h, w) with
    location='random' (seeded per image) or 'center'.
    steps, step_size: signed-gradient steps (per-pixel size, pixel units).
    eps:   optionally also bound |x_adv - x| <= eps inside the region (None: only the pixel bounds).
    init:  'original' (start from the image) or 'random' (uniform noise in the region, seeded).
    """
    fn = "patch_attack"
    steps = C.integer(steps, fn, "steps", 1)
    step_size = C.number(step_size, fn, "step_size", 0.0, lo_open=True)
    eps = None if eps is None else C.number(eps, fn, "eps", 0.0)
    seed = C.integer(seed, fn, "seed", 0)
    early_stop = C.flag(early_stop, fn, "early_stop")
    loss = check_loss(loss, fn)
    if init not in ("original", "random"):
        raise ValueError(f"{fn}: init must be 'original' or 'random', got {init!r}")
    s = setup(fn, model, x, labels, target, targeted)
    am, x = s.am, s.x
    m = np.broadcast_to(region_mask(x.shape, mask=mask, box=box, size=size, location=location, seed=seed, fn=fn),
                        x.shape).astype(x.dtype)
    lo, hi = (np.asarray(b, x.dtype) for b in am.bounds)
    lower, upper = (lo, hi) if eps is None else linf_box(x, eps, am.bounds)
    x_adv = x.copy()
    if init == "random":
        rng = np.random.default_rng(seed + 1)
        noise = rng.uniform(float(lo), float(hi), size=x.shape).astype(x.dtype)
        x_adv = np.where(m > 0, np.clip(noise, lower, upper), x)
    cls = s.classes
    iterations = np.full(x.shape[0], steps, np.int64)
    active = np.arange(x.shape[0])
    with progress_bar(steps, "patch attack", progress) as bar:
        for t in range(steps):
            xa = x_adv[active]
            z, g = am.value_and_grad(xa, lambda z, rows: objective(z, cls[active[rows]], loss, s.targeted)[1])
            if early_stop:
                done = fooled(np.argmax(z, axis=1), s, active)
                iterations[active[done]] = t
                keep = ~done
                active, xa, g = active[keep], xa[keep], g[keep]
                if active.size == 0:
                    break
            ma = m[active]
            stepped = xa + np.sign(g) * np.asarray(step_size, x.dtype) * ma
            la = lower if np.ndim(lower) == 0 else lower[active]
            ua = upper if np.ndim(upper) == 0 else upper[active]
            # outside the mask the step is 0 and x is inside [lower, upper]: those pixels stay equal to x
            x_adv[active] = np.where(ma > 0, np.clip(stepped, la, ua), x[active])
            if bar is not None:
                bar.update(1)
    area = m.reshape(m.shape[0], -1).sum(axis=1) / m[0].size
    params = {"steps": steps, "step_size": step_size, "eps": eps, "init": init, "loss": loss,
              "early_stop": early_stop, "region": "mask" if mask is not None else ("box" if box is not None
                                                                                     else f"size-{location}"),
              "bounds": list(am.bounds)}
    return x_adv, finish(am, fn, params, x, x_adv, s.targeted, s.labels, s.target, s.orig, iterations,
                         extras={"mask": m[:, :1].astype(bool), "area_fraction": area})


# ---- universal patch ------------------------------------------------------------------------------

def apply_patch(x, patch, locations) -> np.ndarray:
    """A copy of x [N, C, H, W] with patch [C, h, w] pasted (overwriting) at locations [N, 2] (top, left)."""
    fn = "apply_patch"
    x = np.asarray(x)
    patch = np.asarray(patch, x.dtype)
    locations = np.asarray(locations, np.int64)
    if x.ndim != 4:
        raise ValueError(f"{fn}: x must have shape [N, C, H, W], got {C.shape_str(x.shape)}")
    if patch.ndim != 3 or patch.shape[0] != x.shape[1]:
        raise ValueError(f"{fn}: patch must have shape [C, h, w] with C={x.shape[1]}, got {C.shape_str(patch.shape)}")
    if locations.shape != (x.shape[0], 2):
        raise ValueError(f"{fn}: locations must have shape [{x.shape[0]}, 2] (top, left), got "
                         f"{C.shape_str(locations.shape)}")
    ph, pw = patch.shape[1:]
    h, w = x.shape[2:]
    if (locations < 0).any() or (locations[:, 0] + ph > h).any() or (locations[:, 1] + pw > w).any():
        raise ValueError(f"{fn}: every {ph}x{pw} patch must lie inside the {h}x{w} image")
    out = np.array(x, copy=True)
    for i, (t, le) in enumerate(locations):
        out[i, :, t:t + ph, le:le + pw] = patch
    return out


def evaluate_patch(model, x, labels=None, patch=None, *, locations=None, seed: int = 1, targeted: bool = False,
                   target=None):
    """Paste `patch` at `locations` (default: random, seeded) and re-predict. Returns (x_adv, AttackResult)."""
    fn = "evaluate_patch"
    s = setup(fn, model, x, labels, target, targeted, need_gradient=False)
    am, x = s.am, s.x
    if patch is None:
        raise ValueError(f"{fn}: patch is required")
    p = np.asarray(patch)
    if p.ndim != 3:
        raise ValueError(f"{fn}: patch must have shape [C, h, w], got {C.shape_str(p.shape)}")
    p = C.images(p[None], fn, am.bounds, x.dtype, "patch")[0]
    if locations is None:
        locations = random_locations(x.shape[0], x.shape[2:], p.shape[1:], C.integer(seed, fn, "seed", 0))
    x_adv = apply_patch(x, p, locations)
    params = {"patch_size": list(p.shape[1:]), "seed": seed, "bounds": list(am.bounds)}
    return x_adv, finish(am, "universal_patch", params, x, x_adv, s.targeted, s.labels, s.target, s.orig,
                         np.zeros(x.shape[0], np.int64), extras={"patch": p, "locations": np.asarray(locations)})


def universal_patch(model, x, labels=None, *, size, steps: int = 200, step_size: float = 0.05,
                    batch_size: int = 64, targeted: bool = False, target=None, loss: str = "ce", seed: int = 0,
                    progress: bool = False):
    """One patch that fools the model wherever it is pasted. Returns (x_adv, AttackResult).

    The patch (size (h, w) or an int) is optimized over x for `steps` steps on random minibatches of
    `batch_size` images, each with the patch at a random place; the result evaluates it on all of x
    at fresh random places (seed + 1). The patch itself is in result.extras['patch'] [C, h, w] and
    the places in result.extras['locations']; paste it elsewhere with apply_patch / evaluate_patch.
    """
    fn = "universal_patch"
    steps = C.integer(steps, fn, "steps", 1)
    step_size = C.number(step_size, fn, "step_size", 0.0, lo_open=True)
    batch_size = C.integer(batch_size, fn, "batch_size", 1)
    seed = C.integer(seed, fn, "seed", 0)
    loss = check_loss(loss, fn)
    s = setup(fn, model, x, labels, target, targeted)
    am, x = s.am, s.x
    n, c, h, w = x.shape
    ph, pw = _size_pair(size, fn, (h, w))
    rng = np.random.default_rng(seed)
    lo, hi = am.bounds
    patch = rng.uniform(lo, hi, size=(c, ph, pw)).astype(x.dtype)
    cls = s.classes
    with progress_bar(steps, "universal patch", progress) as bar:
        for _ in range(steps):
            idx = rng.choice(n, size=min(batch_size, n), replace=False)
            locs = random_locations(idx.size, (h, w), (ph, pw), int(rng.integers(2**31)))
            xb = apply_patch(x[idx], patch, locs)
            _, g = am.value_and_grad(xb, lambda z, rows: objective(z, cls[idx[rows]], loss, s.targeted)[1])
            gp = np.zeros(patch.shape, np.float64)
            for i, (t, le) in enumerate(locs):
                gp += g[i, :, t:t + ph, le:le + pw]
            patch = np.clip(patch + np.sign(gp).astype(x.dtype) * np.asarray(step_size, x.dtype),
                            np.asarray(lo, x.dtype), np.asarray(hi, x.dtype))
            if bar is not None:
                bar.update(1)
    x_adv, res = evaluate_patch(am, x, s.labels, patch, seed=seed + 1, targeted=s.targeted, target=s.target)
    res.params.update({"steps": steps, "step_size": step_size, "batch_size": batch_size, "loss": loss,
                       "seed": seed})
    res.iterations[:] = steps
    return x_adv, res
