"""The objectives attacks climb, and their gradients with respect to the logits.

Every attack ASCENDS an objective J(z) of the logits z [N, K]; c is the true class (untargeted) or the
target class (targeted):

  loss="ce"     untargeted  J = -log softmax(z)[c]      (raise the loss of the true label)
                targeted    J = +log softmax(z)[c]      (lower the loss of the target)
  loss="score"  untargeted  J = -z[c]                   (lower the true class's unnormalized score)
                targeted    J = +z[c]                   (the lecture's gradient of Score_target)
  loss="margin" untargeted  J = max_{j != c} z[j] - z[c]   (Carlini-Wagner margin)
                targeted    J = z[c] - max_{j != c} z[j]

log softmax is convkit.functional.log_softmax (stable: the row max is subtracted first) and the "ce"
gradient is its backward, dz = dls - softmax(z) * sum(dls) with dls = +-onehot(c), i.e.
softmax(z) - onehot(c) (untargeted) or onehot(c) - softmax(z) (targeted). Gradients are of the SUM
over images, so each image's gradient is its own (what sign() and per-image normalization need).
"""
from __future__ import annotations

import numpy as np

from .. import functional as F

LOSSES = ("ce", "score", "margin")


def check_loss(loss, fn: str) -> str:
    if loss not in LOSSES:
        raise ValueError(f"{fn}: loss must be one of {', '.join(repr(x) for x in LOSSES)}, got {loss!r}")
    return loss


def objective(logits: np.ndarray, classes: np.ndarray, loss: str, targeted: bool):
    """(J per image [N] float64, dJ/dlogits [N, K] in the logits' dtype)."""
    z = np.ascontiguousarray(logits)
    n, k = z.shape
    rows = np.arange(n)
    sign = 1.0 if targeted else -1.0
    onehot = np.zeros_like(z)
    onehot[rows, classes] = sign
    if loss == "ce":
        ls = F.log_softmax(z)
        value = sign * ls[rows, classes].astype(np.float64)
        dz = F.log_softmax_backward(ls, onehot)
    elif loss == "score":
        value = sign * z[rows, classes].astype(np.float64)
        dz = onehot
    else:  # margin
        others = z.astype(np.float64).copy()
        others[rows, classes] = -np.inf
        j = np.argmax(others, axis=1)
        value = sign * (z[rows, classes].astype(np.float64) - others[rows, j])
        dz = onehot
        dz[rows, j] = -sign
    return value, np.ascontiguousarray(dz, dtype=z.dtype)
