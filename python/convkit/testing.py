"""convkit.testing: the checks convkit's own tests use, exported for extension authors.

- assert_close: compare with a tolerance that scales with the reference (atol + rtol * |ref|) and
  report the first mismatches with their indices.
- check_gradients: central finite differences (float64) of <forward(inputs), dy> against the
  analytic gradients that a backward function returns.
- assert_raises: an exception of the given type whose message matches a pattern (a clear error).
"""
from __future__ import annotations

import re

import numpy as np

from .device import to_numpy


def assert_close(actual, expected, rtol: float = 1e-5, atol: float = 1e-6, name: str = "result",
                 max_report: int = 5) -> None:
    """Assert |actual - expected| <= atol + rtol * |expected| elementwise (shapes must match)."""
    a = np.asarray(to_numpy(actual), dtype=np.float64)
    e = np.asarray(to_numpy(expected), dtype=np.float64)
    if a.shape != e.shape:
        raise AssertionError(f"{name}: shape {a.shape} != expected {e.shape}")
    if np.isnan(e).any() or np.isnan(a).any():
        if not np.array_equal(np.isnan(a), np.isnan(e)):
            raise AssertionError(f"{name}: NaN positions differ ({int(np.isnan(a).sum())} vs {int(np.isnan(e).sum())})")
    err = np.abs(a - e)
    tol = atol + rtol * np.abs(e)
    bad = ~(err <= tol) & ~(np.isnan(a) & np.isnan(e))
    if bad.any():
        idx = np.argwhere(bad)[:max_report]
        lines = [f"  at {tuple(int(i) for i in ix)}: got {a[tuple(ix)]!r}, expected {e[tuple(ix)]!r}, "
                 f"|diff| {err[tuple(ix)]:.3e} > tol {tol[tuple(ix)]:.3e}" for ix in idx]
        raise AssertionError(f"{name}: {int(bad.sum())} of {a.size} elements differ "
                             f"(max |diff| {np.nanmax(err):.3e}, rtol {rtol}, atol {atol}):\n" + "\n".join(lines))


def check_gradients(forward, backward, inputs, seed: int = 0, eps: float = 1e-6, rtol: float = 1e-5,
                    atol: float = 1e-8, max_points: int = 64, names=None, dy=None) -> None:
    """Finite-difference check of a backward pass, in float64.

    forward(*inputs) -> y;  backward(dy, *inputs) -> one gradient per input (None to skip one).
    The scalar checked is L = sum(forward(*inputs) * dy) for a random dy; for each input, up to
    `max_points` random coordinates are perturbed by +-eps (central differences, error O(eps^2)).
    Inputs must be float64 numpy arrays; keep them away from kinks (ReLU at 0, max-pool ties).
    """
    rng = np.random.default_rng(seed)
    inputs = [np.array(x, dtype=np.float64, copy=True) for x in inputs]
    names = names or [f"input{i}" for i in range(len(inputs))]
    y = np.asarray(to_numpy(forward(*inputs)), dtype=np.float64)
    if dy is None:
        dy = rng.standard_normal(y.shape)
    grads = backward(dy, *inputs)
    if not isinstance(grads, (tuple, list)):
        grads = (grads,)
    if len(grads) != len(inputs):
        raise AssertionError(f"backward returned {len(grads)} gradients for {len(inputs)} inputs")

    def loss() -> float:
        return float(np.sum(np.asarray(to_numpy(forward(*inputs)), dtype=np.float64) * dy))

    for x, g, name in zip(inputs, grads, names):
        if g is None:
            continue
        g = np.asarray(to_numpy(g), dtype=np.float64)
        if g.shape != x.shape:
            raise AssertionError(f"gradient of {name}: shape {g.shape} != input shape {x.shape}")
        flat = x.reshape(-1)
        points = rng.choice(flat.size, size=min(max_points, flat.size), replace=False)
        num = np.empty(points.size)
        for j, p in enumerate(points):
            old = flat[p]
            flat[p] = old + eps
            lp = loss()
            flat[p] = old - eps
            lm = loss()
            flat[p] = old
            num[j] = (lp - lm) / (2 * eps)
        ana = g.reshape(-1)[points]
        scale = max(1.0, float(np.max(np.abs(num))))  # Caffe's relative scale max(|a|, |b|, 1)
        assert_close(ana, num, rtol=rtol, atol=atol * scale + rtol * scale * 1e-2, name=f"gradient of {name}")


def assert_raises(exc_type, pattern: str, fn, *args, **kwargs):
    """Call fn and assert it raises exc_type with a message matching `pattern` (re.search)."""
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        if not re.search(pattern, str(e)):
            raise AssertionError(f"{exc_type.__name__} raised, but message {str(e)!r} does not match {pattern!r}")
        return e
    except Exception as e:  # noqa: BLE001 - report the wrong kind
        raise AssertionError(f"expected {exc_type.__name__} matching {pattern!r}, got {type(e).__name__}: {e}") from e
    raise AssertionError(f"expected {exc_type.__name__} matching {pattern!r}, but nothing was raised")
