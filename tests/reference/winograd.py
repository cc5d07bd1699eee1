"""Winograd's F(2 x 2, 3 x 3) in plain float64 numpy, for the tests of conv2d's Winograd route.

Two uses:
- with the real matrices it is another exact algorithm for the same convolution (checked against
  reference/conv2d.py), written independently of the C++ (einsums over tiles, no loops);
- with every matrix and input replaced by its absolute value it gives, per output, the sum of the
  magnitudes of all the terms the route adds, the transforms' included: the quantity that bounds its
  rounding error (a sum of n terms in any order is off by at most about n u times that sum). For the
  direct sum that magnitude is the convolution of |x| and |w|; the transforms add values that later
  cancel, so here it is larger (up to (8/3)^2 ~ 7 times for equal magnitudes).

The three passes are the linear map y = A^T [(G w G^T) (.) (B^T d B)] A over 2 x 2 output tiles
(d: each tile's 4 x 4 input patch) and its two adjoints, exactly as conv2d_winograd.cpp documents.
"""
import numpy as np

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]], np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, 1]], np.float64)


def _pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def _operands(absolute, *arrays):
    """The arrays in float64, or their absolute values."""
    return [np.abs(np.asarray(a, np.float64)) if absolute else np.asarray(a, np.float64) for a in arrays]


def _mats(absolute):
    return (np.abs(BT), np.abs(G), np.abs(AT)) if absolute else (BT, G, AT)


def _tiles(h, w, padding):
    """Tile rows and columns, and the padded plane's size (2 th + 2, 2 tw + 2)."""
    ph, pw = _pair(padding)
    oh, ow = h + 2 * ph - 2, w + 2 * pw - 2
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    return (ph, pw), (oh, ow), (th, tw)


def _patches(xp, th, tw):
    """[n, c, th, tw, 4, 4] patches of the padded planes xp [n, c, 2 th + 2, 2 tw + 2]."""
    n, c = xp.shape[:2]
    out = np.empty((n, c, th, tw, 4, 4))
    for s in range(4):
        for q in range(4):
            out[..., s, q] = xp[:, :, s:s + 2 * th:2, q:q + 2 * tw:2]
    return out


def forward(x, w, b=None, padding=0, groups=1, absolute=False):
    """y (or, with absolute=True, the magnitudes of its terms, from |x|, |w|, |b| and |matrices|)."""
    bt, g, at = _mats(absolute)
    x, w = _operands(absolute, x, w)
    n, c, h, wd = x.shape
    oc, cg = w.shape[:2]
    (ph, pw), (oh, ow), (th, tw) = _tiles(h, wd, padding)
    xp = np.zeros((n, c, 2 * th + 2, 2 * tw + 2))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    V = np.einsum("as,ncyxsq,bq->ncyxab", bt, _patches(xp, th, tw), bt)
    U = np.einsum("ak,ockl,bl->ocab", g, w, g)
    ocg = oc // groups
    M = np.concatenate([np.einsum("ocab,ncyxab->noyxab", U[k * ocg:(k + 1) * ocg], V[:, k * cg:(k + 1) * cg])
                        for k in range(groups)], axis=1)
    Y = np.einsum("ia,noyxab,jb->noyixj", at, M, at).reshape(n, oc, 2 * th, 2 * tw)[:, :, :oh, :ow]
    if b is not None:
        Y = Y + (np.abs(b) if absolute else np.asarray(b, np.float64))[None, :, None, None]
    return Y


def backward_data(dy, w, x_shape, padding=0, groups=1, absolute=False):
    """dx, the adjoint of forward in x (or the magnitudes of its terms)."""
    bt, g, at = _mats(absolute)
    dy, w = _operands(absolute, dy, w)
    n, c, h, wd = x_shape
    oc, cg = w.shape[:2]
    (ph, pw), (oh, ow), (th, tw) = _tiles(h, wd, padding)
    dyp = np.zeros((n, oc, 2 * th, 2 * tw))
    dyp[:, :, :oh, :ow] = dy
    E = dyp.reshape(n, oc, th, 2, tw, 2).transpose(0, 1, 2, 4, 3, 5)  # [n, o, ty, tx, i, j]
    Y = np.einsum("ia,noyxij,jb->noyxab", at, E, at)
    U = np.einsum("ak,ockl,bl->ocab", g, w, g)
    ocg = oc // groups
    dV = np.concatenate([np.einsum("ocab,noyxab->ncyxab", U[k * ocg:(k + 1) * ocg], Y[:, k * ocg:(k + 1) * ocg])
                         for k in range(groups)], axis=1)
    dd = np.einsum("as,ncyxab,bq->ncyxsq", bt, dV, bt)
    dxp = np.zeros((n, c, 2 * th + 2, 2 * tw + 2))
    for s in range(4):
        for q in range(4):
            dxp[:, :, s:s + 2 * th:2, q:q + 2 * tw:2] += dd[..., s, q]
    return dxp[:, :, ph:ph + h, pw:pw + wd]


def backward_weight(x, dy, w_shape, padding=0, groups=1, absolute=False):
    """dw, the adjoint of forward in w (or the magnitudes of its terms)."""
    bt, g, at = _mats(absolute)
    x, dy = _operands(absolute, x, dy)
    n, c, h, wd = x.shape
    oc, cg = w_shape[:2]
    (ph, pw), (oh, ow), (th, tw) = _tiles(h, wd, padding)
    xp = np.zeros((n, c, 2 * th + 2, 2 * tw + 2))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    V = np.einsum("as,ncyxsq,bq->ncyxab", bt, _patches(xp, th, tw), bt)
    dyp = np.zeros((n, oc, 2 * th, 2 * tw))
    dyp[:, :, :oh, :ow] = dy
    Y = np.einsum("ia,noyxij,jb->noyxab", at, dyp.reshape(n, oc, th, 2, tw, 2).transpose(0, 1, 2, 4, 3, 5), at)
    ocg = oc // groups
    dU = np.concatenate([np.einsum("noyxab,ncyxab->ocab", Y[:, k * ocg:(k + 1) * ocg], V[:, k * cg:(k + 1) * cg])
                         for k in range(groups)], axis=0)
    return np.einsum("ak,ocab,bl->ockl", g, dU, g)


# ---- F(2, 5) along the rows (conv2d_winograd_rows.cpp) ----------------------------------------------
# 5-wide kernels of any height, stride 1: each output row cut into pairs (tiles) of outputs; tile t
# of output row y reads, per kernel row ky, the 6 values of padded input row y + ky at columns
# 2 t .. 2 t + 5. y_t = A^T [sum over c and ky of (G f_{o,c,ky}) (.) (B^T d_{c,y+ky,t})], and the two
# adjoints. The same matrices as the C++ (points 0, 1, -1, 2, -2 and infinity).

BT6 = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64)
G6 = np.array([[1 / 4, 0, 0, 0, 0], [-1 / 6] * 5, [-1 / 6, 1 / 6, -1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6, 1 / 3, 2 / 3], [1 / 24, -1 / 12, 1 / 6, -1 / 3, 2 / 3], [0, 0, 0, 0, 1]],
              np.float64)
AT6 = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 1]], np.float64)


def _rows_geometry(h, wd, kh, padding):
    ph, pw = _pair(padding)
    oh, ow = h + 2 * ph - kh + 1, wd + 2 * pw - 4
    return (ph, pw), (oh, ow), (ow + 1) // 2


def _rows_v(x, kh, padding, bt):
    """V [n, c, padded row, tile, 6] and the geometry, from x [n, c, h, w]."""
    n, c, h, wd = x.shape
    (ph, pw), (oh, ow), tw = _rows_geometry(h, wd, kh, padding)
    xp = np.zeros((n, c, h + 2 * ph, 2 * tw + 4))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    patches = np.stack([xp[..., l:l + 2 * tw:2] for l in range(6)], axis=-1)
    return np.einsum("jl,ncrtl->ncrtj", bt, patches), (ph, pw), (oh, ow), tw


def _rows_ym(dy, tw, at):
    """(A e_t) [n, o, y, tile, 6] from dy [n, o, oh, ow]."""
    n, oc, oh, ow = dy.shape
    dyp = np.zeros((n, oc, oh, 2 * tw))
    dyp[..., :ow] = dy
    return np.einsum("ij,noyti->noytj", at, dyp.reshape(n, oc, oh, tw, 2))


def _rows_mats(absolute):
    return (np.abs(BT6), np.abs(G6), np.abs(AT6)) if absolute else (BT6, G6, AT6)


def rows_forward(x, w, b=None, padding=0, groups=1, absolute=False):
    """y through F(2, 5) along the rows (or, with absolute=True, the magnitudes of its terms)."""
    bt, g, at = _rows_mats(absolute)
    x, w = _operands(absolute, x, w)
    oc, cg, kh = w.shape[:3]
    V, _, (oh, ow), tw = _rows_v(x, kh, padding, bt)
    U = np.einsum("jk,ocyk->ocyj", g, w)
    ocg = oc // groups
    M = np.zeros((x.shape[0], oc, oh, tw, 6))
    for k in range(groups):
        for ky in range(kh):
            M[:, k * ocg:(k + 1) * ocg] += np.einsum("ocj,ncytj->noytj", U[k * ocg:(k + 1) * ocg, :, ky],
                                                     V[:, k * cg:(k + 1) * cg, ky:ky + oh])
    Y = np.einsum("ij,noytj->noyti", at, M).reshape(x.shape[0], oc, oh, 2 * tw)[..., :ow]
    if b is not None:
        Y = Y + (np.abs(b) if absolute else np.asarray(b, np.float64))[None, :, None, None]
    return Y


def rows_backward_data(dy, w, x_shape, padding=0, groups=1, absolute=False):
    """dx, the adjoint of rows_forward in x (or the magnitudes of its terms)."""
    bt, g, at = _rows_mats(absolute)
    dy, w = _operands(absolute, dy, w)
    n, c, h, wd = x_shape
    oc, cg, kh = w.shape[:3]
    (ph, pw), (oh, ow), tw = _rows_geometry(h, wd, kh, padding)
    Ym = _rows_ym(dy, tw, at)
    U = np.einsum("jk,ocyk->ocyj", g, w)
    ocg = oc // groups
    dV = np.zeros((n, c, oh + kh - 1, tw, 6))
    for k in range(groups):
        for ky in range(kh):
            dV[:, k * cg:(k + 1) * cg, ky:ky + oh] += np.einsum("ocj,noytj->ncytj", U[k * ocg:(k + 1) * ocg, :, ky],
                                                                Ym[:, k * ocg:(k + 1) * ocg])
    dd = np.einsum("jl,ncrtj->ncrtl", bt, dV)
    dxp = np.zeros((n, c, oh + kh - 1, 2 * tw + 4))
    for l in range(6):
        dxp[..., l:l + 2 * tw:2] += dd[..., l]
    return dxp[:, :, ph:ph + h, pw:pw + wd]


def rows_backward_weight(x, dy, w_shape, padding=0, groups=1, absolute=False):
    """dw, the adjoint of rows_forward in w (or the magnitudes of its terms)."""
    bt, g, at = _rows_mats(absolute)
    x, dy = _operands(absolute, x, dy)
    oc, cg, kh = w_shape[:3]
    V, _, (oh, ow), tw = _rows_v(x, kh, padding, bt)
    Ym = _rows_ym(dy, tw, at)
    ocg = oc // groups
    dU = np.zeros((oc, cg, kh, 6))
    for k in range(groups):
        for ky in range(kh):
            dU[k * ocg:(k + 1) * ocg, :, ky] = np.einsum("noytj,ncytj->ocj", Ym[:, k * ocg:(k + 1) * ocg],
                                                         V[:, k * cg:(k + 1) * cg, ky:ky + oh])
    return np.einsum("jk,ocyj->ocyk", g, dU)
