"""Plain float64 reference for conv2d (the specification; written for clarity, not speed).

    y[n, o, i, j] = b[o] + sum_{c', p, q} x[n, g*Cg + c', i*sh - ph + p*dh, j*sw - pw + q*dw] * w[o, c', p, q]

with g = o // (OC / groups) the group of output channel o, Cg = C / groups, and x zero outside the
image. Each kernel tap (p, q) reads a strided window of the zero-padded input; the backward passes
are the same windows used the other way round.
"""
import numpy as np


def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def out_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _geometry(x_shape, w_shape, stride, padding, dilation, groups):
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, c, h, w = x_shape
    oc, cg, kh, kw = w_shape
    assert c == cg * groups and oc % groups == 0
    oh, ow = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
    assert oh > 0 and ow > 0

    def window(p, q):
        """Index of the padded input that tap (p, q) reads for every output pixel: [.., OH, OW]."""
        return (slice(p * dh, p * dh + sh * (oh - 1) + 1, sh), slice(q * dw, q * dw + sw * (ow - 1) + 1, sw))

    return (ph, pw), (oh, ow), oc // groups, window


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    (ph, pw), (oh, ow), ocg, window = _geometry(x.shape, w.shape, stride, padding, dilation, groups)
    n, cg = x.shape[0], w.shape[1]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((n, w.shape[0], oh, ow))
    for o in range(w.shape[0]):
        xg = xp[:, (o // ocg) * cg:(o // ocg + 1) * cg]  # the input channels of o's group
        for p in range(w.shape[2]):
            for q in range(w.shape[3]):
                hs, ws = window(p, q)
                y[:, o] += np.einsum("nchw,c->nhw", xg[:, :, hs, ws], w[o, :, p, q])
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


def conv2d_backward_data(dy, w, x_shape, stride=1, padding=0, dilation=1, groups=1):
    """dL/dx: every output pixel sends dy * w back to the input pixels its window read."""
    dy, w = np.asarray(dy, np.float64), np.asarray(w, np.float64)
    (ph, pw), _, ocg, window = _geometry(x_shape, w.shape, stride, padding, dilation, groups)
    n, c, h, wd = x_shape
    cg = w.shape[1]
    dxp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    for o in range(w.shape[0]):
        g = o // ocg
        for p in range(w.shape[2]):
            for q in range(w.shape[3]):
                hs, ws = window(p, q)
                dxp[:, g * cg:(g + 1) * cg, hs, ws] += dy[:, o, None] * w[o, :, p, q][None, :, None, None]
    return dxp[:, :, ph:ph + h, pw:pw + wd]  # what landed on the padding is dropped


def conv2d_backward_weight(x, dy, w_shape, stride=1, padding=0, dilation=1, groups=1):
    """dL/dw[o, c', p, q]: the window tap (p, q) read, weighted by dy, summed over n, i, j."""
    x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    (ph, pw), _, ocg, window = _geometry(x.shape, w_shape, stride, padding, dilation, groups)
    cg = w_shape[1]
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dw = np.zeros(w_shape)
    for o in range(w_shape[0]):
        xg = xp[:, (o // ocg) * cg:(o // ocg + 1) * cg]
        for p in range(w_shape[2]):
            for q in range(w_shape[3]):
                hs, ws = window(p, q)
                dw[o, :, p, q] = np.einsum("nchw,nhw->c", xg[:, :, hs, ws], dy[:, o])
    return dw


def conv2d_backward_bias(dy):
    return np.asarray(dy, np.float64).sum(axis=(0, 2, 3))
