"""Where arrays live: numpy arrays on the CPU, DeviceArray on CUDA; moving between them."""
from __future__ import annotations

import numpy as np

from . import _core

DeviceArray = _core.DeviceArray


def cuda_available() -> bool:
    """True when convkit was built with CUDA and a device is usable right now."""
    if not _core.cuda_compiled():
        return False
    n, _ = _core.cuda_device_count()
    return n > 0


def cuda_unavailable_reason() -> str:
    """Why CUDA cannot be used ('' when it can)."""
    if not _core.cuda_compiled():
        return "convkit was built without CUDA support (nvcc was not found at build time)"
    n, reason = _core.cuda_device_count()
    return "" if n > 0 else reason


def device_of(x) -> str:
    """'cpu' for numpy arrays, 'cuda' for DeviceArray; TypeError otherwise."""
    if isinstance(x, np.ndarray):
        return "cpu"
    if isinstance(x, DeviceArray):
        return "cuda"
    raise TypeError(f"expected a numpy array or convkit.DeviceArray, got {type(x).__name__}")


def _check_device_name(device: str) -> str:
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not cuda_available():
        raise RuntimeError(f"device='cuda' requested but CUDA is not usable: {cuda_unavailable_reason()}")
    return device


def asarray(x, device: str = "cpu", dtype=None):
    """x on `device` ('cpu' -> C-contiguous numpy array, 'cuda' -> DeviceArray), converting dtype if given."""
    _check_device_name(device)
    if isinstance(x, DeviceArray):
        if dtype is not None and np.dtype(dtype) != x.dtype:
            x = DeviceArray.from_numpy(np.ascontiguousarray(x.to_numpy(), dtype=dtype))
        return x if device == "cuda" else x.to_numpy()
    a = np.ascontiguousarray(x, dtype=dtype)
    return DeviceArray.from_numpy(a) if device == "cuda" else a


def to_numpy(x) -> np.ndarray:
    """A numpy copy (DeviceArray) or the array itself (numpy)."""
    if isinstance(x, DeviceArray):
        return x.to_numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"expected a numpy array or convkit.DeviceArray, got {type(x).__name__}")
