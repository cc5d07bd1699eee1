"""Cross-entropy loss over logits, via convkit.functional.softmax_cross_entropy and its backward."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..device import DeviceArray, to_numpy
from . import _arith

_REDUCTIONS = ("mean", "sum", "none")


def cross_entropy(logits, labels, reduction: str = "mean"):
    """Softmax cross-entropy of logits [N, K] against integer labels [N].

    Returns ``(loss, dlogits)``: loss is a Python float for reduction 'mean' (over the batch) or
    'sum', and the per-row loss array [N] for 'none'; dlogits [N, K] is the gradient of that loss
    (for 'none': of the sum of the rows), on the logits' device.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    loss, probs = F.softmax_cross_entropy(logits, labels)
    n = logits.shape[0]
    w = 1.0 / n if reduction == "mean" else 1.0
    dloss = _arith.full_like_rows(logits, n, w)
    dlogits = F.softmax_cross_entropy_backward(probs, _labels_like(labels, logits), dloss)
    if reduction == "none":
        return loss, dlogits
    total = float(np.sum(to_numpy(loss), dtype=np.float64))
    return (total / n if reduction == "mean" else total), dlogits


def _labels_like(labels, logits):
    if isinstance(labels, (list, tuple)):
        labels = np.asarray(labels)
    if isinstance(labels, np.ndarray) and labels.dtype != np.int64 and labels.dtype.kind in "iu":
        labels = labels.astype(np.int64)
    if isinstance(logits, DeviceArray) and isinstance(labels, np.ndarray):
        labels = DeviceArray.from_numpy(np.ascontiguousarray(labels))
    return labels


class CrossEntropyLoss:
    """``loss = criterion(logits, labels)`` (a float for 'mean'/'sum'); ``criterion.backward()`` then
    returns dlogits, ready for ``model.backward``."""

    def __init__(self, reduction: str = "mean"):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"CrossEntropyLoss: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self._dlogits = None

    def __call__(self, logits, labels):
        return self.forward(logits, labels)

    def forward(self, logits, labels):
        loss, self._dlogits = cross_entropy(logits, labels, self.reduction)
        return loss

    def backward(self):
        if self._dlogits is None:
            raise RuntimeError("CrossEntropyLoss.backward: call the loss on (logits, labels) first")
        return self._dlogits
