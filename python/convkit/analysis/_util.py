"""Shared plumbing of the analysis tools: argument checks, targets, models and batches.

Every public tool converts its image argument with :func:`as_images` (lists, integer or
non-contiguous arrays become contiguous float arrays; a wrong rank, NaN or an empty array is a
ValueError naming the argument) and its class argument with :func:`resolve_target` (Captum's
convention: an int for every image, a list or array with one class per image, or None for the
class the model predicts).
"""
from __future__ import annotations

import contextlib
import numbers

import numpy as np

from ..device import DeviceArray, asarray, to_numpy

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# ---- arguments ------------------------------------------------------------------------------------

def as_images(x, fn: str, name: str = "x", dtype=None, ndim: int = 4) -> np.ndarray:
    """x as a C-contiguous float numpy array of rank `ndim` (default [N, C, H, W]).

    float32/float64 keep their dtype unless `dtype` is given; integer, bool and float16 arrays become
    float32 (values are NOT rescaled: uint8 images stay in 0..255). DeviceArrays are copied to the host.
    """
    if isinstance(x, DeviceArray):
        x = x.to_numpy()
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{fn}: {name} must be an array of images [N, C, H, W], got {type(x).__name__}")
    try:
        a = np.asarray(x)
    except (ValueError, TypeError) as e:  # ragged lists
        raise ValueError(f"{fn}: {name} could not be read as an array ({e})") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{fn}: {name} must hold real numbers, got dtype {a.dtype}")
    if a.ndim != ndim:
        layout = "[N, C, H, W]" if ndim == 4 else f"rank {ndim}"
        hint = " (for one image of shape [C, H, W] pass x[None])" if ndim == 4 and a.ndim == 3 else ""
        raise ValueError(f"{fn}: {name} must have shape {layout}, got shape {list(a.shape)}{hint}")
    if a.size == 0:
        raise ValueError(f"{fn}: {name} is empty (shape {list(a.shape)})")
    if dtype is None:
        dtype = a.dtype if a.dtype in _FLOATS else np.float32
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{fn}: {name} contains NaN or infinity")
    return a


def as_int(v, fn: str, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{fn}: {name} must be an int, got {type(v).__name__} {v!r}")
    v = int(v)
    if minimum is not None and v < minimum:
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{fn}: {name} must be <= {maximum}, got {v}")
    return v


def as_float(v, fn: str, name: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a number, got {type(v).__name__} {v!r}")
    v = float(v)
    if not np.isfinite(v):
        raise ValueError(f"{fn}: {name} must be finite, got {v}")
    if lo is not None and v < lo:
        raise ValueError(f"{fn}: {name} must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise ValueError(f"{fn}: {name} must be <= {hi}, got {v}")
    return v


def as_pair(v, fn: str, name: str, minimum: int = 1) -> tuple[int, int]:
    if isinstance(v, (tuple, list, np.ndarray)):
        if len(v) != 2:
            raise ValueError(f"{fn}: {name} must be an int or a pair of ints (height, width), got {v!r}")
        return as_int(v[0], fn, name, minimum), as_int(v[1], fn, name, minimum)
    i = as_int(v, fn, name, minimum)
    return i, i


def as_labels(labels, n: int, fn: str, name: str = "labels") -> np.ndarray:
    """A 1-D int64 array of n class labels."""
    try:
        a = np.asarray(labels)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{fn}: {name} could not be read as an array ({e})") from None
    if a.dtype.kind == "b" or a.dtype.kind not in "iuf":
        raise TypeError(f"{fn}: {name} must be integer class labels, got dtype {a.dtype}")
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{fn}: {name} must have shape [{n}] (one label per row), got {list(a.shape)}")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise TypeError(f"{fn}: {name} must be integer class labels, got non-integer floats")
    return a.astype(np.int64)


def resolve_target(target, n: int, num_classes: int, predicted, fn: str) -> np.ndarray:
    """One class per image: int -> the same for all; list/array of n ints; None -> `predicted()`."""
    if target is None:
        t = np.asarray(predicted(), dtype=np.int64)
        return t
    if isinstance(target, (bool, np.bool_)):
        raise TypeError(f"{fn}: target must be an int, a list/array of ints (one per image) or None, got bool")
    if isinstance(target, numbers.Integral):
        t = np.full(n, int(target), dtype=np.int64)
    else:
        if isinstance(target, DeviceArray):
            target = target.to_numpy()
        try:
            a = np.asarray(target)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{fn}: target could not be read as an array ({e})") from None
        if a.dtype.kind not in "iu":
            raise TypeError(f"{fn}: target must be an int, a list/array of ints (one per image) or None, "
                            f"got {type(target).__name__} of dtype {a.dtype}")
        if a.ndim == 0:
            a = np.full(n, int(a))
        if a.ndim != 1 or a.shape[0] != n:
            raise ValueError(f"{fn}: target must have one class per image ({n}), got shape {list(a.shape)}")
        t = a.astype(np.int64)
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        bad = int(t[(t < 0) | (t >= num_classes)][0])
        raise ValueError(f"{fn}: target class {bad} is out of range for a model with {num_classes} outputs")
    return t


# ---- models ---------------------------------------------------------------------------------------

def is_module(model) -> bool:
    """A convkit network (forward + backward), as opposed to any callable returning logits."""
    try:
        from ..nn import Module
    except ImportError:  # convkit.nn not there yet: treat everything as a plain callable
        return False
    return isinstance(model, Module)


def model_device(model, device=None) -> str:
    if device is not None:
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        return device
    return getattr(model, "device", "cpu") if is_module(model) else "cpu"


def model_dtype(model, x_dtype) -> np.dtype:
    """The dtype the model computes in (its parameters'), else x's."""
    if is_module(model):
        d = getattr(model, "dtype", None)
        if d is not None and np.dtype(d) in _FLOATS:
            return np.dtype(d)
    return np.dtype(x_dtype)


@contextlib.contextmanager
def eval_mode(model):
    """Run with dropout off (eval mode) and restore the model's mode afterwards."""
    was = getattr(model, "training", None)
    if was and hasattr(model, "eval"):
        model.eval()
    try:
        yield
    finally:
        if was and hasattr(model, "train"):
            model.train(True)


@contextlib.contextmanager
def no_grad_if_module(model):
    if is_module(model):
        from ..nn import no_grad
        with no_grad():
            yield
    else:
        yield


def check_callable(model, fn: str, need_backward: bool = False) -> None:
    if need_backward:
        if not (hasattr(model, "forward") and hasattr(model, "backward")):
            raise TypeError(f"{fn}: model must be a convkit network with forward and backward "
                            f"(convkit.nn.Module), got {type(model).__name__}")
    elif not callable(model):
        raise TypeError(f"{fn}: model must be a convkit network or a callable returning logits, "
                        f"got {type(model).__name__}")


def logits_of(model, xb: np.ndarray, device: str, fn: str, n: int | None = None) -> np.ndarray:
    """model(xb) as a float numpy array [n, K] (xb moved to `device` first)."""
    y = model(asarray(xb, device=device) if device != "cpu" else xb)
    y = np.asarray(to_numpy(y)) if isinstance(y, (np.ndarray, DeviceArray)) else np.asarray(y)
    n = xb.shape[0] if n is None else n
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"{fn}: the model must return logits of shape [N, classes] = [{n}, K], "
                         f"got shape {list(y.shape)}")
    return y


def softmax(z: np.ndarray) -> np.ndarray:
    """Row softmax in float64 (stable: subtracts the row max)."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def progress(total: int, desc: str, enabled):
    """A tqdm bar (None: shown only on a terminal), or a no-op when tqdm is missing."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    disable = None if enabled is None else (not enabled)
    return tqdm(total=total, desc=desc, disable=disable, leave=False, unit="img")


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def batches(n: int, batch_size: int):
    for s in range(0, n, batch_size):
        yield s, min(n, s + batch_size)
