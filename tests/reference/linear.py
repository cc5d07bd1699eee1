"""Plain float64 reference for the fully connected layer (the specification; see csrc/ops/linear.h).

    y[n, o]  = b[o] + sum_i x[n, i] * w[o, i]
    dx[n, i] = sum_o dy[n, o] * w[o, i]
    dw[o, i] = sum_n dy[n, o] * x[n, i]
    db[o]    = sum_n dy[n, o]
"""
import numpy as np


def _f64(a):
    return np.asarray(a, np.float64)


def linear(x, w, b=None):
    x, w = _f64(x), _f64(w)
    y = np.einsum("ni,oi->no", x, w)
    if b is not None:
        y = y + _f64(b)[None, :]
    return y


def linear_backward_data(dy, w):
    return np.einsum("no,oi->ni", _f64(dy), _f64(w))


def linear_backward_weight(x, dy):
    return np.einsum("no,ni->oi", _f64(dy), _f64(x))


def linear_backward_bias(dy):
    return _f64(dy).sum(axis=0)
