"""Iterative attacks: I-FGSM / PGD in the L-inf or L2 ball (Kurakin et al. 2017; Madry et al. 2018).

Starting from x_0 (x itself, a random point of the ball, or a given x_init projected into it), for
t = 0 .. steps-1:

  L-inf:  x_{t+1} = P(x_t + a * sign(g_t))
  L2:     x_{t+1} = P(x_t + a * g_t / ||g_t||_2)               (no move where g_t = 0)

with g_t = grad_x J(x_t) (J from convkit.attacks.losses) and P the projection onto the eps ball
around x followed by clipping to the pixel bounds:
  L-inf:  clip(x', max(lo, x - eps), min(hi, x + eps))
  L2:     d = x' - x;  d *= min(1, eps / ||d||_2);  clip(x + d, lo, hi)
(clipping to the box after the L2 projection only shrinks |d| componentwise, so the result stays in
the ball). I-FGSM is this with random_start=False.

early_stop=True freezes an image at the first iterate that fools the model (the prediction is read
from the same forward pass that computes g_t), so the returned image is the first fooling iterate
and `iterations` counts the steps it took; early_stop=False runs every image for all steps.
"""
from __future__ import annotations

import numpy as np

from . import _checks as C
from ._common import fooled, per_image_norm, progress_bar, setup
from .losses import check_loss, objective
from .result import finish


_BOX_CHUNK = 1 << 17  # elements per block of linf_box (1 MiB of float64: cache-sized, no page-faulting temporaries)


def linf_box(x: np.ndarray, eps: float, bounds):
    """(lower, upper) in x's dtype with lo <= lower <= x <= upper <= hi and, exactly as measured in
    float64, x - lower <= eps and upper - x <= eps. x +- eps is formed in float64 and rounded inward
    (toward x): a plain float32 x + float32(eps) can overshoot eps, by the rounding of eps itself.
    Computed in blocks of about _BOX_CHUNK elements, so the float64 temporaries stay in cache (over the
    whole Fashion-MNIST test set the unblocked version was a fifth of FGSM's time)."""
    lo, hi = bounds
    dt = x.dtype
    flat = np.ascontiguousarray(x).reshape(-1)
    lower = np.empty(flat.shape, dt)
    upper = np.empty(flat.shape, dt)
    down, up = np.asarray(-np.inf, dt), np.asarray(np.inf, dt)
    for s in range(0, flat.size, _BOX_CHUNK):
        xb = flat[s:s + _BOX_CHUNK].astype(np.float64)
        u64 = np.minimum(xb + eps, hi)
        ub = upper[s:s + _BOX_CHUNK]
        ub[...] = u64
        over = ub > u64
        if over.any():
            ub[over] = np.nextafter(ub[over], down)
        l64 = np.maximum(xb - eps, lo)
        lb = lower[s:s + _BOX_CHUNK]
        lb[...] = l64
        under = lb < l64
        if under.any():
            lb[under] = np.nextafter(lb[under], up)
    return lower.reshape(x.shape), upper.reshape(x.shape)


def project(x_adv: np.ndarray, x: np.ndarray, eps: float, norm: str, bounds) -> np.ndarray:
    """Project x_adv onto {|x_adv - x| <= eps (L-inf or L2)} and the pixel bounds.

    The result is inside the ball exactly as measured in float64 (not just up to float32 rounding).
    """
    lo, hi = bounds
    dt = x.dtype
    if norm == "linf":
        return np.clip(x_adv, *linf_box(x, eps, bounds))
    lo_, hi_ = np.asarray(lo, dt), np.asarray(hi, dt)
    x64 = x.astype(np.float64)
    # scale d = x_adv - x into the ball, then clip to the box (x is inside it, so clipping only
    # shrinks |d| componentwise): the usual order (Madry et al.), in float64
    d = np.asarray(x_adv, np.float64) - x64
    n = per_image_norm(d)
    d *= np.where(n > eps, eps / np.maximum(n, 1e-300), 1.0)
    out = np.clip((x64 + d).astype(dt), lo_, hi_)
    tiny = 4.0 * float(np.finfo(dt).eps)
    shrink = 1.0 - tiny
    for _ in range(20):  # rounding x + d to float32 can leave it a hair outside: pull those back in
        d = out.astype(np.float64) - x64
        n = per_image_norm(d)
        over = n.reshape(-1) > eps
        if not over.any():
            return out
        out = out.copy()
        out[over] = np.clip((x64[over] + d[over] * (eps / n[over] * shrink)).astype(dt), lo_, hi_)
        shrink *= 1.0 - 4.0 * tiny
    out[over] = x[over]  # unreachable in practice; never return a point outside the ball
    return out


def random_point(x: np.ndarray, eps: float, norm: str, bounds, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random point of the eps ball around each image, clipped to the bounds."""
    if norm == "linf":
        d = rng.uniform(-eps, eps, size=x.shape)
    else:
        d = rng.standard_normal(x.shape)
        dim = d[0].size
        d /= np.maximum(per_image_norm(d), 1e-300)
        d *= eps * rng.uniform(0.0, 1.0, size=(x.shape[0], 1, 1, 1)) ** (1.0 / dim)
    return project(x + d.astype(x.dtype), x, eps, norm, bounds)


def step(x_cur: np.ndarray, g: np.ndarray, step_size: float, norm: str) -> np.ndarray:
    if norm == "linf":
        return x_cur + np.sign(g) * np.asarray(step_size, x_cur.dtype)
    n = per_image_norm(g)
    unit = np.where(n > 0, g / np.maximum(n, 1e-300), 0.0)
    return x_cur + (step_size * unit).astype(x_cur.dtype)


def pgd(model, x, labels=None, *, eps, norm: str = "linf", steps: int = 10, step_size=None,
        random_start: bool = True, seed: int = 0, x_init=None, targeted: bool = False, target=None,
        loss: str = "ce", early_stop: bool = True, progress: bool = False):
    """Projected gradient descent (I-FGSM when random_start=False). Returns (x_adv, AttackResult).

    eps:        radius of the ball in pixel units (L-inf: max per-pixel change; L2: Euclidean norm per image).
    norm:       'linf' or 'l2'.
    steps:      gradient steps (>= 1).
    step_size:  per-step move (L-inf: per pixel; L2: Euclidean); default 2.5 * eps / steps (Madry et al.).
    random_start, seed: start from a uniform point of the ball (seeded); x_init: an explicit start
                (projected into the ball); give one or neither.
    loss:       'ce' (default), 'score' or 'margin' (see convkit.attacks.losses).
    early_stop: freeze an image at its first fooling iterate.
    """
    fn = "pgd"
    eps = C.number(eps, fn, "eps", 0.0)
    norm = C.norm_name(norm, fn)
    steps = C.integer(steps, fn, "steps", 1)
    step_size = 2.5 * eps / steps if step_size is None else C.number(step_size, fn, "step_size", 0.0)
    random_start = C.flag(random_start, fn, "random_start")
    early_stop = C.flag(early_stop, fn, "early_stop")
    seed = C.integer(seed, fn, "seed", 0)
    loss = check_loss(loss, fn)
    s = setup(fn, model, x, labels, target, targeted)
    am, x = s.am, s.x
    n = x.shape[0]
    if x_init is not None:
        if random_start:
            raise ValueError(f"{fn}: give x_init or random_start=True, not both")
        x0 = am.check_images(x_init, fn, "x_init")
        if x0.shape != x.shape:
            raise ValueError(f"{fn}: x_init must have the shape of x {C.shape_str(x.shape)}, got "
                             f"{C.shape_str(x0.shape)}")
        x_adv = project(x0, x, eps, norm, am.bounds)
    elif random_start:
        x_adv = random_point(x, eps, norm, am.bounds, np.random.default_rng(seed))
    else:
        x_adv = x.copy()

    cls = s.classes
    iterations = np.full(n, steps, np.int64)
    active = np.arange(n)
    box = linf_box(x, eps, am.bounds) if norm == "linf" else None
    a32 = np.asarray(step_size, x.dtype)
    with progress_bar(steps, f"pgd-{norm} eps={eps:g}", progress) as bar:
        for t in range(steps):
            full = active.size == n  # every image still moving: no gathers and scatters
            xa = x_adv if full else x_adv[active]
            z, g = am.value_and_grad(xa, lambda z, rows: objective(z, cls[active[rows]], loss, s.targeted)[1])
            if early_stop:
                done = fooled(np.argmax(z, axis=1), s, active)
                if done.any():
                    iterations[active[done]] = t
                    keep = ~done
                    active, xa, g = active[keep], xa[keep], g[keep]
                    full = False
                    if active.size == 0:
                        break
            if norm == "linf":
                new = np.sign(g)
                new *= a32
                new += xa
                lower, upper = box if full else (box[0][active], box[1][active])
                np.clip(new, lower, upper, out=new)
            else:
                new = project(step(xa, g, step_size, norm), x if full else x[active], eps, norm, am.bounds)
            if full:
                x_adv = new
            else:
                x_adv[active] = new
            if bar is not None:
                bar.update(1)
                bar.set_postfix(active=int(active.size))
    params = {"eps": eps, "norm": norm, "steps": steps, "step_size": step_size, "random_start": random_start,
              "seed": seed, "loss": loss, "early_stop": early_stop, "bounds": list(am.bounds)}
    res = finish(am, fn, params, x, x_adv, s.targeted, s.labels, s.target, s.orig, iterations)
    return x_adv, res

