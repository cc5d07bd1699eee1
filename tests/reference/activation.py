"""Plain float64 references for relu and dropout (the specification; written for clarity)."""
import numpy as np

from convkit import _core  # noqa: F401  (dropout's mask hash is specified in csrc/ops/activation.h)


def relu(x):
    return np.maximum(np.asarray(x, np.float64), 0.0)


def relu_backward(dy, y):
    return np.where(np.asarray(y) > 0, np.asarray(dy, np.float64), 0.0)


def _splitmix_uniform(seed: int, i: np.ndarray) -> np.ndarray:
    """The dropout hash of activation.h, in numpy uint64 arithmetic (wrapping like C++)."""
    m = np.uint64(0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        i = i.astype(np.uint64)
        z = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + i + np.uint64(0x632BE59BD9B4E019)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        z = z + i * np.uint64(0xD1B54A32D192ED03)
        z = (z ^ (z >> np.uint64(29))) * np.uint64(0xBF58476D1CE4E5B9)
        z = z ^ (z >> np.uint64(32))
    z &= m
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def dropout(x, p, seed):
    x = np.asarray(x, np.float64)
    keep = _splitmix_uniform(seed, np.arange(x.size)).reshape(x.shape) >= p
    return np.where(keep, x / (1.0 - p), 0.0), keep.astype(np.uint8)
