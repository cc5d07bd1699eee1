"""Plain float64 references for softmax, log_softmax and softmax cross-entropy over the last axis.

Every row has its maximum subtracted first (softmax is unchanged by a shift), which keeps exp in
(0, 1] for logits of any magnitude.
"""
import numpy as np


def _shifted(x):
    x = np.asarray(x, np.float64)
    return x - x.max(axis=1, keepdims=True)


def softmax(x):
    e = np.exp(_shifted(x))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(x):
    z = _shifted(x)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax_backward(y, dy):
    """dx = y * (dy - sum(dy * y)) per row (the Jacobian of softmax applied to dy)."""
    y, dy = np.asarray(y, np.float64), np.asarray(dy, np.float64)
    return y * (dy - (dy * y).sum(axis=1, keepdims=True))


def log_softmax_backward(y, dy):
    """dx = dy - softmax * sum(dy) per row, with softmax = exp(y)."""
    y, dy = np.asarray(y, np.float64), np.asarray(dy, np.float64)
    return dy - np.exp(y) * dy.sum(axis=1, keepdims=True)


def softmax_cross_entropy(logits, labels):
    """(loss [N], probs [N, K]) with loss[n] = logsumexp(logits[n]) - logits[n, labels[n]]."""
    labels = np.asarray(labels)
    loss = -log_softmax(logits)[np.arange(len(labels)), labels]
    return loss, softmax(logits)


def softmax_cross_entropy_backward(probs, labels, dloss):
    """dlogits[n] = dloss[n] * (probs[n] - onehot(labels[n]))."""
    probs = np.asarray(probs, np.float64)
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(labels)), np.asarray(labels)] = 1.0
    return np.asarray(dloss, np.float64)[:, None] * (probs - onehot)
