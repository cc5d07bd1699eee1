"""Argument checks shared by every attack: one place, one wording.

Friendly where it is safe (lists, ints, non-contiguous or integer arrays are converted to contiguous
floating-point arrays), strict where a silent fix would hide a mistake (wrong rank, NaN, values
outside the pixel bounds, a target list of the wrong length, eps < 0): those raise ValueError or
TypeError naming the function and the argument.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..device import DeviceArray, to_numpy

NORMS = {"linf": "linf", "inf": "linf", "l2": "l2", "2": "l2"}


def shape_str(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def number(v, fn: str, name: str, lo: float | None = None, lo_open: bool = False) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a number, got {type(v).__name__} {v!r}")
    v = float(v)
    if not np.isfinite(v):
        raise ValueError(f"{fn}: {name} must be finite, got {v}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"{fn}: {name} must be {'>' if lo_open else '>='} {lo:g}, got {v:g}")
    return v


def integer(v, fn: str, name: str, lo: int | None = None) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{fn}: {name} must be an int, got {type(v).__name__} {v!r}")
    v = int(v)
    if lo is not None and v < lo:
        raise ValueError(f"{fn}: {name} must be >= {lo}, got {v}")
    return v


def flag(v, fn: str, name: str) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be True or False, got {type(v).__name__} {v!r}")
    return bool(v)


def norm_name(v, fn: str) -> str:
    key = "inf" if v in (np.inf, float("inf")) else str(v).lower().replace("_", "")
    if key not in NORMS:
        raise ValueError(f"{fn}: norm must be 'linf' or 'l2', got {v!r}")
    return NORMS[key]


def bounds_pair(bounds, fn: str = "AttackModel") -> tuple[float, float]:
    if not isinstance(bounds, (tuple, list, np.ndarray)) or len(bounds) != 2:
        raise ValueError(f"{fn}: bounds must be a pair (lo, hi), got {bounds!r}")
    lo = number(bounds[0], fn, "bounds[0]")
    hi = number(bounds[1], fn, "bounds[1]")
    if not lo < hi:
        raise ValueError(f"{fn}: bounds must have lo < hi, got ({lo:g}, {hi:g})")
    return lo, hi


def images(x, fn: str, bounds: tuple[float, float], dtype, name: str = "x") -> np.ndarray:
    """x as a contiguous [N, C, H, W] host array of `dtype`, finite and inside `bounds`."""
    if isinstance(x, DeviceArray):
        x = to_numpy(x)
    if isinstance(x, (str, bytes, dict, set)) or x is None:
        raise TypeError(f"{fn}: {name} must be an array of images [N, C, H, W], got {type(x).__name__}")
    try:
        a = np.asarray(x)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise ValueError(f"{fn}: {name} could not be read as an array of images [N, C, H, W]: {e}") from None
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise TypeError(f"{fn}: {name} must hold numbers, got dtype {a.dtype}")
    if a.ndim != 4:
        hint = " (add a batch axis: x[None])" if a.ndim == 3 else ""
        raise ValueError(f"{fn}: {name} must have shape [N, C, H, W], got {shape_str(a.shape)}{hint}")
    if a.size == 0:
        raise ValueError(f"{fn}: {name} is empty (shape {shape_str(a.shape)})")
    a = np.ascontiguousarray(a, dtype=dtype)
    if not np.isfinite(a).all():
        bad = int(np.count_nonzero(~np.isfinite(a)))
        raise ValueError(f"{fn}: {name} contains {bad} NaN or infinite values")
    lo, hi = bounds
    amin, amax = float(a.min()), float(a.max())
    if amin < lo or amax > hi:
        hint = " (8-bit images? divide by 255)" if amax > 1.5 and hi <= 1.0 else ""
        raise ValueError(f"{fn}: {name} has values in [{amin:g}, {amax:g}], outside the model's pixel bounds "
                         f"[{lo:g}, {hi:g}]{hint}")
    return a


def classes(v, fn: str, name: str, n: int, num_classes: int | None = None) -> np.ndarray:
    """An int, or a list / array of n ints, as an int64 array [n], each in [0, num_classes)."""
    if isinstance(v, DeviceArray):
        v = to_numpy(v)
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be an int or a sequence of ints, got {v!r}")
    if isinstance(v, numbers.Integral):
        a = np.full(n, int(v), np.int64)
    else:
        if isinstance(v, (str, bytes, dict, set)) or v is None:
            raise TypeError(f"{fn}: {name} must be an int or a sequence of ints, got {type(v).__name__}")
        try:
            a = np.asarray(v)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{fn}: {name} could not be read as a sequence of ints: {e}") from None
        if a.dtype.kind == "b" or a.dtype.kind not in "iu":
            if a.dtype.kind == "f" and a.size and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
                pass  # float array of whole numbers (e.g. labels read from a CSV): accepted
            else:
                raise TypeError(f"{fn}: {name} must hold ints, got dtype {a.dtype}")
        if a.ndim != 1:
            raise ValueError(f"{fn}: {name} must be an int or a 1-D sequence of {n} ints, got shape "
                             f"{shape_str(a.shape)}")
        if a.shape[0] != n:
            raise ValueError(f"{fn}: {name} has {a.shape[0]} entries but x has {n} images; give one per image "
                             f"(or a single int for all)")
        a = a.astype(np.int64)
    if num_classes is not None:
        check_class_range(a, fn, name, num_classes)
    return a


def check_class_range(a: np.ndarray, fn: str, name: str, num_classes: int) -> None:
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"{fn}: {name} must lie in [0, {num_classes}) (the model has {num_classes} classes), "
                         f"got values in [{lo}, {hi}]")


def label_and_target(fn: str, labels, target, targeted, n: int, num_classes: int, predicted: np.ndarray):
    """Resolve (labels, target) for an attack; explicit `targeted=`, no guessing.

    Untargeted: labels required (the true classes, or 'predicted' for the model's own predictions);
    target must be None. Targeted: target required; labels optional (used for the record only).
    """
    targeted = flag(targeted, fn, "targeted")
    if isinstance(labels, str):
        if labels != "predicted":
            raise ValueError(f"{fn}: labels must be ints or 'predicted', got {labels!r}")
        lab = predicted.astype(np.int64).copy()
    elif labels is None:
        lab = None
    else:
        lab = classes(labels, fn, "labels", n, num_classes)
    if targeted:
        if target is None:
            raise ValueError(f"{fn}: targeted=True needs target= (an int, or one class per image)")
        tgt = classes(target, fn, "target", n, num_classes)
    else:
        if target is not None:
            raise ValueError(f"{fn}: target= was given but targeted=False; pass targeted=True for a targeted attack")
        if lab is None:
            raise ValueError(f"{fn}: an untargeted attack needs labels= (the true classes, or labels='predicted' "
                             f"to attack the model's own predictions)")
        tgt = None
    return targeted, lab, tgt
