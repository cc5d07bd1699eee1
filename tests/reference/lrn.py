"""Plain float64 reference for local response normalization across channels (the specification).

csrc/ops/lrn.h, the PyTorch / Caffe convention (alpha divided by the window size n):
    W(c)     = [c - n//2, c + (n-1)//2] clipped to [0, C)
    scale[c] = k + alpha / n * sum_{c' in W(c)} x[c']**2
    y[c]     = x[c] * scale[c]**(-beta)
Backward (derived in csrc/ops/lrn.cpp):
    dx[j] = dy[j] * scale[j]**(-beta)
            - 2 * alpha * beta / n * x[j] * sum_{c : j in W(c)} dy[c] * y[c] / scale[c]
where j in W(c) exactly when c lies in [j - (n-1)//2, j + n//2].
"""
import numpy as np


def window(c, n, channels):
    """The channels whose squares enter scale[c]."""
    return range(max(0, c - n // 2), min(channels - 1, c + (n - 1) // 2) + 1)


def lrn(x, size, alpha, beta, k):
    """Returns (y, scale) for x [N, C, H, W]."""
    x = np.asarray(x, np.float64)
    channels = x.shape[1]
    scale = np.empty_like(x)
    for c in range(channels):
        sum_sq = sum(x[:, cc] ** 2 for cc in window(c, size, channels))
        scale[:, c] = k + alpha / size * sum_sq
    return x * scale ** (-beta), scale


def lrn_backward(x, y, scale, dy, size, alpha, beta, k):
    x, y, scale, dy = (np.asarray(a, np.float64) for a in (x, y, scale, dy))
    channels = x.shape[1]
    ratio = dy * y / scale
    dx = np.empty_like(x)
    for j in range(channels):
        users = [c for c in range(channels) if j in window(c, size, channels)]
        dx[:, j] = dy[:, j] * scale[:, j] ** (-beta) - 2 * alpha * beta / size * x[:, j] * sum(ratio[:, c] for c in users)
    return dx
