"""Plain float64 reference for max_pool2d (the specification; written for clarity, not speed).

Conventions (csrc/ops/max_pool2d.h):
- output size: floor((in + 2*pad - k) / stride) + 1, or ceil(...) + 1 in ceil mode minus one when the
  last window would start at or past in + pad;
- padded cells are -inf and never chosen; the index is row * W + col inside the (H, W) plane;
- the window is scanned in row-major order and an element replaces the running maximum when it is
  strictly greater (ties keep the first) or NaN (PyTorch's rule, so NaN propagates);
- backward adds dy into dx at the recorded index (overlapping windows add up).
"""
import math

import numpy as np


def out_size(size, kernel, stride, padding, ceil_mode):
    span = size + 2 * padding - kernel
    out = (math.ceil(span / stride) if ceil_mode else math.floor(span / stride)) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def max_pool2d(x, kernel, stride, padding, ceil_mode=False):
    """Returns (y, indices) for x [N, C, H, W]; kernel, stride, padding are (h, w) pairs."""
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh = out_size(h, kh, sh, ph, ceil_mode)
    ow = out_size(w, kw, sw, pw, ceil_mode)
    y = np.empty((n, c, oh, ow))
    idx = np.empty((n, c, oh, ow), np.int64)
    for i in range(oh):
        for j in range(ow):
            best = None
            best_idx = None
            for r in range(i * sh - ph, i * sh - ph + kh):  # row-major window order
                for q in range(j * sw - pw, j * sw - pw + kw):
                    if not (0 <= r < h and 0 <= q < w):
                        continue  # padding: -inf, never chosen
                    v = x[:, :, r, q]
                    if best is None:
                        best = v.copy()
                        best_idx = np.full((n, c), r * w + q, np.int64)
                        continue
                    take = (v > best) | np.isnan(v)
                    best = np.where(take, v, best)
                    best_idx = np.where(take, r * w + q, best_idx)
            y[:, :, i, j] = best
            idx[:, :, i, j] = best_idx
    return y, idx


def max_pool2d_backward(dy, idx, x_shape):
    """dx [x_shape]: dy added at the recorded indices of each (n, c) plane."""
    n, c, h, w = x_shape
    dx = np.zeros((n * c, h * w))
    np.add.at(dx, (np.arange(n * c)[:, None], np.asarray(idx).reshape(n * c, -1)),
              np.asarray(dy, np.float64).reshape(n * c, -1))
    return dx.reshape(x_shape)
