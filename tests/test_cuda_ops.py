"""Every CUDA kernel held to the CPU kernel on random shapes (odd sizes, groups, stride > kernel,
dilation, ceil_mode, batch 1, one channel, tiles larger than one block), forward and backward, and the
backward passes finite-difference checked through the CUDA kernels in float64.

Skipped, with the driver's reason, where no CUDA device is usable. (A build with
-DCONVKIT_CUDA=EMULATE runs these tests on the CPU emulator in cuda/emu; see cuda/emu/cuda_runtime.h.)

Tolerances. A sum of K products evaluated in any order (blocked, FMA or not) is within
K * u * sum|terms| of the exact value (u = 2^-24 in float32, 2^-53 in float64), so the CPU and CUDA
results differ by at most 2 (K + 2) u R, where R is the same op applied to the absolute values of
the inputs (computed in float64 on the CPU): `bound()` below. That bound is rigorous, scaled to each
element, and still catches any indexing error (which shows up as an O(R) difference). Ops without
long sums (pooling, routing a gradient) must agree exactly; the softmax and LRN bounds are derived
where they are used.

Every output is poisoned before the CUDA call: the allocator cache is filled with NaN blocks of the
output's size, so an element the kernel never writes shows up as NaN.
"""
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import convkit
import convkit.functional as F
from convkit import to_numpy
from convkit.device import cuda_available, cuda_unavailable_reason
from convkit.testing import check_gradients

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not cuda_available(), reason=f"no usable CUDA device: {cuda_unavailable_reason()}")]

U = {np.dtype(np.float32): 2.0 ** -24, np.dtype(np.float64): 2.0 ** -53}
FLOATS = st.sampled_from([np.float32, np.float64])


def dev(a):
    return convkit.asarray(a, device="cuda")


def poison(shape, dtype, count=3):
    """Leave `count` blocks of this size at the top of the device allocator's cache, filled with NaN
    (integers: -7), so outputs allocated next start out as poison."""
    value = np.nan if np.dtype(dtype).kind == "f" else -7
    arrays = [convkit.empty(shape, dtype, device="cuda").fill_(value) for _ in range(count)]
    del arrays


def a64(x):
    return np.abs(np.asarray(to_numpy(x), np.float64))


def bound(k_terms, dtype, ref_abs):
    """2 (K + 2) u R, elementwise (see the module docstring)."""
    return 2.0 * (k_terms + 2) * U[np.dtype(dtype)] * ref_abs + 1e-300


def assert_within(got, ref, tol, name):
    g = np.asarray(to_numpy(got), np.float64)
    r = np.asarray(to_numpy(ref), np.float64)
    assert g.shape == r.shape, f"{name}: shape {g.shape} != {r.shape}"
    assert not np.isnan(g).any(), f"{name}: {int(np.isnan(g).sum())} NaN (unwritten or bad) elements, first at " \
                                  f"{tuple(np.argwhere(np.isnan(g))[0])}"
    err = np.abs(g - r)
    bad = err > tol
    if bad.any():
        idx = [tuple(int(v) for v in i) for i in np.argwhere(bad)[:5]]
        lines = [f"  at {i}: cuda {g[i]!r}, cpu {r[i]!r}, |diff| {err[i]:.3e} > {np.broadcast_to(tol, g.shape)[i]:.3e}"
                 for i in idx]
        raise AssertionError(f"{name}: {int(bad.sum())} of {g.size} elements differ:\n" + "\n".join(lines))


def assert_same(got, ref, name):
    g, r = to_numpy(got), to_numpy(ref)
    assert g.shape == r.shape and g.dtype == r.dtype, f"{name}: {g.shape} {g.dtype} != {r.shape} {r.dtype}"
    if not np.array_equal(g, r, equal_nan=g.dtype.kind == "f"):
        bad = np.argwhere(~((g == r) | (np.isnan(g) & np.isnan(r)) if g.dtype.kind == "f" else g == r))
        raise AssertionError(f"{name}: {len(bad)} elements differ, first at {tuple(bad[0])}: "
                             f"cuda {g[tuple(bad[0])]!r} cpu {r[tuple(bad[0])]!r}")


# ---- conv2d -----------------------------------------------------------------------------------------------

def conv_out(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def check_conv(n, c, h, w, oc, kh, kw, stride, pad, dil, groups, dt, seed, bias=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dt)
    wt = rng.standard_normal((oc, c // groups, kh, kw)).astype(dt)
    b = rng.standard_normal(oc).astype(dt) if bias else None
    args = (stride, pad, dil, groups)
    oh, ow = conv_out(h, kh, stride[0], pad[0], dil[0]), conv_out(w, kw, stride[1], pad[1], dil[1])
    dy = rng.standard_normal((n, oc, oh, ow)).astype(dt)

    y = F.conv2d(x, wt, b, *args)
    dx = F.conv2d_backward_data(dy, wt, x.shape, *args)
    dw = F.conv2d_backward_weight(x, dy, wt.shape, *args)
    db = F.conv2d_backward_bias(dy)
    r_y = F.conv2d(a64(x), a64(wt), a64(b) if bias else None, *args)
    r_dx = F.conv2d_backward_data(a64(dy), a64(wt), x.shape, *args)
    r_dw = F.conv2d_backward_weight(a64(x), a64(dy), wt.shape, *args)
    r_db = F.conv2d_backward_bias(a64(dy))

    xd, wd, dyd = dev(x), dev(wt), dev(dy)
    poison(y.shape, dt)
    yd = F.conv2d(xd, wd, dev(b) if bias else None, *args)
    poison(x.shape, dt)
    dxd = F.conv2d_backward_data(dyd, wd, x.shape, *args)
    poison(wt.shape, dt)
    dwd = F.conv2d_backward_weight(xd, dyd, wt.shape, *args)
    poison((oc,), dt)
    dbd = F.conv2d_backward_bias(dyd)
    cg, ocg = c // groups, oc // groups
    assert isinstance(yd, convkit.DeviceArray) and yd.dtype == dt
    assert_within(yd, y, bound(cg * kh * kw + 1, dt, r_y), "conv2d forward")
    assert_within(dxd, dx, bound(ocg * kh * kw, dt, r_dx), "conv2d backward data")
    assert_within(dwd, dw, bound(n * oh * ow, dt, r_dw), "conv2d backward weight")
    assert_within(dbd, db, bound(n * oh * ow, dt, r_db), "conv2d backward bias")


@st.composite
def conv_problems(draw):
    groups = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    pad = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dil = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    h, w = draw(st.integers(1, 13)), draw(st.integers(1, 13))
    assume(conv_out(h, kh, stride[0], pad[0], dil[0]) >= 1 and conv_out(w, kw, stride[1], pad[1], dil[1]) >= 1)
    return dict(n=draw(st.integers(1, 3)), c=groups * draw(st.integers(1, 4)), h=h, w=w,
                oc=groups * draw(st.integers(1, 4)), kh=kh, kw=kw, stride=stride, pad=pad, dil=dil, groups=groups,
                dt=draw(FLOATS), bias=draw(st.booleans()))


@given(p=conv_problems(), seed=st.integers(0, 2**31))
def test_conv2d_random_shapes(p, seed):
    check_conv(**p, seed=seed)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [
    # n, c, h, w, oc, kh, kw, stride, pad, dil, groups
    (2, 16, 9, 9, 130, 3, 3, (1, 1), (1, 1), (1, 1), 1),      # output channels span two tiles
    (1, 140, 6, 7, 8, 1, 1, (1, 1), (0, 0), (1, 1), 1),       # input channels span two tiles (backward data)
    (3, 8, 30, 31, 6, 3, 3, (1, 1), (1, 1), (1, 1), 2),       # long reduction: split-K in backward weight
    (2, 3, 35, 35, 16, 11, 11, (4, 4), (0, 0), (1, 1), 1),    # AlexNet conv1's geometry: 16 stride phases
    (2, 32, 21, 21, 10, 5, 5, (2, 2), (2, 2), (1, 1), 2),     # 16 input channels per group: the narrow
    (2, 34, 21, 21, 10, 5, 5, (2, 2), (2, 2), (1, 1), 2),     # backward-data tile (at the limit, one past)
    (2, 8, 13, 13, 12, 3, 3, (1, 1), (1, 1), (1, 1), 4),      # groups 4
    (1, 4, 12, 12, 4, 1, 1, (5, 3), (0, 0), (1, 1), 1),       # stride > kernel: most of dx is zero
    (2, 4, 5, 5, 3, 5, 5, (1, 1), (0, 0), (1, 1), 1),         # kernel as large as the input
    (1, 2, 16, 16, 3, 3, 3, (2, 3), (2, 1), (3, 2), 1),       # dilation with stride: gcd(s, d) phases
])
def test_conv2d_tiles_and_phases(shape, dt):
    n, c, h, w, oc, kh, kw, stride, pad, dil, groups = shape
    check_conv(n, c, h, w, oc, kh, kw, stride, pad, dil, groups, dt, seed=sum(shape[:7]))


def test_conv2d_alexnet_layer_batch2():
    # conv2 of the lecture's AlexNet (5x5, pad 2, groups 2) on a batch of 2, float32
    check_conv(2, 96, 27, 27, 256, 5, 5, (1, 1), (2, 2), (1, 1), 2, np.float32, seed=7)


def test_conv2d_gradients_through_cuda():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((6, 2, 3, 2))
    b = rng.standard_normal(6)
    args = ((2, 1), (1, 1), (1, 2), 2)

    def fwd(x, w, b):
        return F.conv2d(dev(x), dev(w), dev(b), *args)

    def bwd(dy, x, w, b):
        dyd = dev(dy)
        return (F.conv2d_backward_data(dyd, dev(w), x.shape, *args),
                F.conv2d_backward_weight(dev(x), dyd, w.shape, *args), F.conv2d_backward_bias(dyd))

    check_gradients(fwd, bwd, [x, w, b], names=["x", "weight", "bias"])


# ---- linear ------------------------------------------------------------------------------------------------

@given(n=st.integers(1, 140), i=st.integers(1, 140), o=st.integers(1, 140), dt=FLOATS, seed=st.integers(0, 2**31))
def test_linear_random_shapes(n, i, o, dt, seed):
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(s).astype(dt) for s in ((n, i), (o, i), (o,)))
    dy = rng.standard_normal((n, o)).astype(dt)
    poison((n, o), dt)
    assert_within(F.linear(dev(x), dev(w), dev(b)), F.linear(x, w, b), bound(i + 1, dt, F.linear(a64(x), a64(w), a64(b))),
                  "linear forward")
    poison((n, i), dt)
    assert_within(F.linear_backward_data(dev(dy), dev(w)), F.linear_backward_data(dy, w),
                  bound(o, dt, F.linear_backward_data(a64(dy), a64(w))), "linear backward data")
    poison((o, i), dt)
    assert_within(F.linear_backward_weight(dev(x), dev(dy)), F.linear_backward_weight(x, dy),
                  bound(n, dt, F.linear_backward_weight(a64(x), a64(dy))), "linear backward weight")
    poison((o,), dt)
    assert_within(F.linear_backward_bias(dev(dy)), F.linear_backward_bias(dy),
                  bound(n, dt, F.linear_backward_bias(a64(dy))), "linear backward bias")


@pytest.mark.parametrize("n,i,o", [(128, 9216, 40), (2000, 30, 20), (3, 4096, 1000)])
def test_linear_large(n, i, o):
    # a long reduction (split-K on the weight gradient) and AlexNet-like fan-in
    rng = np.random.default_rng(n)
    x, w = rng.standard_normal((n, i)).astype(np.float32), rng.standard_normal((o, i)).astype(np.float32)
    dy = rng.standard_normal((n, o)).astype(np.float32)
    assert_within(F.linear(dev(x), dev(w)), F.linear(x, w), bound(i, np.float32, F.linear(a64(x), a64(w))), "fwd")
    assert_within(F.linear_backward_weight(dev(x), dev(dy)), F.linear_backward_weight(x, dy),
                  bound(n, np.float32, F.linear_backward_weight(a64(x), a64(dy))), "bwd weight")


def test_linear_gradients_through_cuda():
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((5, 7)), rng.standard_normal((3, 7)), rng.standard_normal(3)
    check_gradients(lambda x, w, b: F.linear(dev(x), dev(w), dev(b)),
                    lambda dy, x, w, b: (F.linear_backward_data(dev(dy), dev(w)),
                                         F.linear_backward_weight(dev(x), dev(dy)), F.linear_backward_bias(dev(dy))),
                    [x, w, b], names=["x", "weight", "bias"])


# ---- max_pool2d: the same comparisons, so exact agreement ---------------------------------------------------

def pool_out(size, k, s, p, ceil_mode):
    return F.pool_out_size(size, k, s, p, ceil_mode)


@st.composite
def pool_problems(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    pad = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    h, w = draw(st.integers(kh, 14)), draw(st.integers(kw, 14))
    ceil_mode = draw(st.booleans())
    assume(pool_out(h, kh, stride[0], pad[0], ceil_mode) >= 1 and pool_out(w, kw, stride[1], pad[1], ceil_mode) >= 1)
    return dict(shape=(draw(st.integers(1, 3)), draw(st.integers(1, 4)), h, w), kernel=(kh, kw), stride=stride,
                pad=pad, ceil_mode=ceil_mode, dt=draw(FLOATS), ties=draw(st.booleans()))


@given(p=pool_problems(), seed=st.integers(0, 2**31))
def test_max_pool2d_random_shapes(p, seed):
    rng = np.random.default_rng(seed)
    dt = p["dt"]
    x = rng.standard_normal(p["shape"]).astype(dt)
    if p["ties"]:
        x = np.round(x).astype(dt)  # many equal values: the first maximum must win on both devices
    args = (p["kernel"], p["stride"], p["pad"], p["ceil_mode"])
    y, idx = F.max_pool2d(x, *args, return_indices=True)
    dy = rng.standard_normal(y.shape).astype(dt)
    dx = F.max_pool2d_backward(dy, idx, x.shape, *args)
    poison(y.shape, dt)
    poison(y.shape, np.int64)
    yd, idxd = F.max_pool2d(dev(x), *args, return_indices=True)
    assert_same(yd, y, "max_pool2d forward")
    assert_same(idxd, idx, "max_pool2d indices")
    poison(x.shape, dt)
    # backward from the device's own indices; same sum order as the CPU scatter, so exact
    assert_same(F.max_pool2d_backward(dev(dy), idxd, x.shape, *args), dx, "max_pool2d backward")


def test_max_pool2d_nan_and_alexnet_geometry():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 8, 55, 55)).astype(np.float32)
    x[0, 0, 3, 4] = np.nan
    x[1, 2, 10, 10] = -np.inf
    for args in (((3, 3), (2, 2), (0, 0), False), ((3, 3), (2, 2), (1, 1), True)):
        y, idx = F.max_pool2d(x, *args, return_indices=True)
        yd, idxd = F.max_pool2d(dev(x), *args, return_indices=True)
        assert_same(yd, y, "forward")
        assert_same(idxd, idx, "indices")


# ---- LRN ------------------------------------------------------------------------------------------------------

def window_sum(v, lo, hi):
    """s[c] = sum of v[c'] for c' in [c - lo, c + hi] within [0, C), along axis 1."""
    c = v.shape[1]
    cs = np.concatenate([np.zeros_like(v[:, :1]), np.cumsum(v, axis=1)], axis=1)
    idx = np.arange(c)
    a, b = np.clip(idx - lo, 0, c), np.clip(idx + hi + 1, 0, c)
    return cs[:, b] - cs[:, a]


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 6), st.integers(1, 6)),
       size=st.integers(1, 9), beta=st.sampled_from([0.75, 0.5, 1.0, 0.3]), dt=FLOATS, seed=st.integers(0, 2**31))
def test_lrn_random_shapes(shape, size, beta, dt, seed):
    rng = np.random.default_rng(seed)
    alpha, k = 1e-2 * size, 1.5
    x = (rng.standard_normal(shape) * 3).astype(dt)
    dy = rng.standard_normal(shape).astype(dt)
    y, s = F.local_response_norm(x, size, alpha, beta, k, return_scale=True)
    dx = F.local_response_norm_backward(x, y, s, dy, size, alpha, beta, k)
    poison(shape, dt, count=4)
    yd, sd = F.local_response_norm(dev(x), size, alpha, beta, k, return_scale=True)
    # forward: a positive sum of `size` squares (size roundings) and a power (a few ulp on the GPU's
    # powf) on each side: 4 (size + 8) u relative
    rel = 4 * (size + 8) * U[np.dtype(dt)]
    assert_within(sd, s, rel * np.abs(s), "lrn scale")
    assert_within(yd, y, rel * np.abs(y) * (1 + beta), "lrn forward")
    poison(shape, dt)
    dxd = F.local_response_norm_backward(dev(x), yd, sd, dev(dy), size, alpha, beta, k)
    # backward: dx = dy s^-beta - coef x t cancels; bound by the size of both terms
    s64, y64 = np.asarray(s, np.float64), np.asarray(y, np.float64)
    t_abs = window_sum(np.abs(dy * y64 / s64), (size - 1) // 2, size // 2)
    terms = np.abs(dy) * s64 ** -beta + 2 * alpha * beta / size * np.abs(x) * t_abs
    assert_within(dxd, dx, 4 * (2 * size + 8) * U[np.dtype(dt)] * terms, "lrn backward")


def test_lrn_chunked_channels():
    # few pixels and many channels: the kernel splits the channels into chunks (one thread each)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 256, 2, 3)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    y, s = F.local_response_norm(x, 5, 1e-4, 0.75, 2.0, return_scale=True)
    yd, sd = F.local_response_norm(dev(x), 5, 1e-4, 0.75, 2.0, return_scale=True)
    assert_within(yd, y, 1e-6 * np.abs(y), "forward")
    dx = F.local_response_norm_backward(x, y, s, dy, 5, 1e-4, 0.75, 2.0)
    dxd = F.local_response_norm_backward(dev(x), yd, sd, dev(dy), 5, 1e-4, 0.75, 2.0)
    assert_within(dxd, dx, 1e-6 * (np.abs(dx) + np.abs(dy)), "backward")


def test_lrn_float64_window_after_large_values():
    # float64 has no wider type to hold a sliding window's running sum: after a square of 1e8 leaves the
    # window, a running sum keeps an error near 1e8 * 2^-53 (about 1e-8), far above the rounding of the
    # small squares left in it. (The sliding kernel failed test_fuzz's bound on an H200 by 3 ulps.)
    rng = np.random.default_rng(9)
    C, size, alpha, beta, k = 12, 3, 1.0, 0.75, 0.5
    x = rng.standard_normal((1, C, 2, 3)) * 0.3
    x[:, :3] *= 3e4
    dy = rng.standard_normal(x.shape)
    dy[:, :3] *= 1e8
    lo, hi = size // 2, (size - 1) // 2
    win = [range(max(c - lo, 0), min(c + hi, C - 1) + 1) for c in range(C)]
    win_b = [range(max(c - hi, 0), min(c + lo, C - 1) + 1) for c in range(C)]
    s = np.empty_like(x)
    for c in range(C):
        for i in np.ndindex(2, 3):
            s[(0, c) + i] = k + alpha / size * math.fsum(x[(0, cc) + i] ** 2 for cc in win[c])
    y = x * s ** -beta
    yd, sd = F.local_response_norm(dev(x), size, alpha, beta, k, return_scale=True)
    assert_within(sd, s, 8 * U[np.dtype(np.float64)] * s, "scale")
    assert_within(yd, y, 16 * U[np.dtype(np.float64)] * np.abs(y), "forward")
    r = dy * y / s
    t = np.empty_like(x)
    tabs = np.empty_like(x)
    for c in range(C):
        for i in np.ndindex(2, 3):
            t[(0, c) + i] = math.fsum(r[(0, cc) + i] for cc in win_b[c])
            tabs[(0, c) + i] = math.fsum(abs(r[(0, cc) + i]) for cc in win_b[c])
    coef = 2 * alpha * beta / size
    dx = dy * s ** -beta - coef * x * t
    dxd = F.local_response_norm_backward(dev(x), dev(y), dev(s), dev(dy), size, alpha, beta, k)
    assert_within(dxd, dx, 16 * U[np.dtype(np.float64)] * (np.abs(dy) * s ** -beta + coef * np.abs(x) * tabs),
                  "backward")


def test_lrn_gradients_through_cuda():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 6, 3, 2))
    args = (4, 0.5, 0.75, 1.0)

    def bwd(dy, x):
        xd = dev(x)
        y, s = F.local_response_norm(xd, *args, return_scale=True)
        return F.local_response_norm_backward(xd, y, s, dev(dy), *args)

    check_gradients(lambda x: F.local_response_norm(dev(x), *args), bwd, [x])


# ---- softmax family ---------------------------------------------------------------------------------------------

@given(n=st.integers(1, 9), k=st.sampled_from([1, 2, 7, 31, 32, 33, 1000, 1024, 1025, 3000]),
       scale=st.sampled_from([1.0, 30.0, 1e4]), dt=FLOATS, seed=st.integers(0, 2**31))
@settings(max_examples=30)
def test_softmax_family_random_shapes(n, k, scale, dt, seed):
    rng = np.random.default_rng(seed)
    u = U[np.dtype(dt)]
    x = (rng.standard_normal((n, k)) * scale).astype(dt)
    dy = rng.standard_normal((n, k)).astype(dt)
    labels = rng.integers(0, k, n)
    dloss = rng.standard_normal(n).astype(dt)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    m = np.abs(x64).max(axis=1, keepdims=True)
    xm = x64.max(axis=1, keepdims=True) - x64  # the exp's argument, exact in float64

    y = F.softmax(x)
    poison(x.shape, dt)
    yd = F.softmax(dev(x))
    # exp(x - max) where x - max rounds by u |x - max| (a relative error of that size after exp), a sum
    # of k positive terms and a division: each side within ((k + 8) + 2 |x - max|) u, relative
    assert_within(yd, y, 2 * ((k + 8) * u + 2 * u * xm) * np.abs(y) + 1e-300, "softmax")
    t = np.abs(dy64 * y).sum(axis=1, keepdims=True)
    assert_within(F.softmax_backward(yd, dev(dy)), F.softmax_backward(y, dy),
                  4 * (k + 4) * u * np.abs(y) * (np.abs(dy64) + t) + 1e-300, "softmax backward")

    ly = F.log_softmax(x)
    lyd = F.log_softmax(dev(x))
    # x - max - log(sum): roundings of |x - max| and |y|, and log of a sum with relative error k u
    assert_within(lyd, ly, 8 * u * (xm + np.abs(ly) + np.log(k) + 1) + 4 * (k + 4) * u, "log_softmax")
    sdy = np.abs(dy64).sum(axis=1, keepdims=True)
    assert_within(F.log_softmax_backward(lyd, dev(dy)), F.log_softmax_backward(ly, dy),
                  4 * (k + 4) * u * (np.abs(dy64) + np.exp(ly.astype(np.float64)) * sdy) + 8 * u * np.abs(dy64),
                  "log_softmax backward")

    loss, probs = F.softmax_cross_entropy(x, labels)
    lossd, probsd = F.softmax_cross_entropy(dev(x), labels)
    assert_within(lossd, loss, 8 * u * (3 * m[:, 0] + np.log(k) + 1) + 4 * (k + 4) * u, "cross-entropy loss")
    assert_within(probsd, probs, 2 * ((k + 8) * u + 2 * u * xm) * np.abs(probs) + 1e-300, "cross-entropy probs")
    assert_within(F.softmax_cross_entropy_backward(probsd, labels, dev(dloss)),
                  F.softmax_cross_entropy_backward(probs, labels, dloss),
                  4 * u * np.abs(dloss.astype(np.float64))[:, None] * (np.abs(probs.astype(np.float64)) + 1) + 1e-300,
                  "cross-entropy backward")


def test_cross_entropy_labels_on_device_out_of_range():
    x = np.random.default_rng(9).standard_normal((4, 5)).astype(np.float32)
    labels = dev(np.array([0, 7, 2, -1], np.int64))
    loss, probs = convkit._core.softmax_cross_entropy_forward(dev(x), labels)
    # found on the device, reported when results are read; the bad rows are NaN, never read out of bounds
    with pytest.raises(ValueError, match=r"softmax_cross_entropy_forward: a label on the device lies outside"):
        loss.to_numpy()
    got = loss.to_numpy()  # the flag was cleared
    assert np.isnan(got[[1, 3]]).all() and np.isfinite(got[[0, 2]]).all()
    dx = convkit._core.softmax_cross_entropy_backward(probs, labels, dev(np.ones(4, np.float32)))
    with pytest.raises(ValueError, match=r"softmax_cross_entropy_backward: a label on the device lies outside"):
        convkit.synchronize()
    assert np.isnan(dx.to_numpy()[[1, 3]]).all()


# ---- relu, dropout ------------------------------------------------------------------------------------------------

@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4), p=st.sampled_from([0.0, 0.3, 0.5]),
       seed=st.integers(0, 2**63), dt=FLOATS)
def test_relu_dropout_match_cpu(shape, p, seed, dt):
    x = np.random.default_rng(seed % 2**32).standard_normal(shape).astype(dt)
    xd = dev(x)
    assert_same(F.relu(xd), F.relu(x), "relu")
    assert_same(F.relu_backward(xd, F.relu(xd)), F.relu_backward(x, F.relu(x)), "relu backward")
    y, mask = F.dropout(x, p, seed)
    yd, maskd = F.dropout(xd, p, seed)
    assert_same(maskd, mask, "dropout mask")  # the mask depends only on (seed, index): same on both devices
    assert_same(yd, y, "dropout")
    assert_same(F.dropout_backward(xd, maskd, p), F.dropout_backward(x, mask, p), "dropout backward")


# ---- device handling --------------------------------------------------------------------------------------------

def test_mixing_devices_is_a_clear_error():
    x = np.ones((1, 2, 5, 5), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"weight is on cpu but x is on cuda"):
        F.conv2d(dev(x), w)
    with pytest.raises(ValueError, match=r"on cuda .* on cpu|on cpu .* on cuda"):
        dev(x) + x
    with pytest.raises(ValueError, match=r"is on (cpu|cuda) but"):
        convkit._core.relu_backward(dev(x), x)


def test_results_stay_on_device_and_are_new_arrays():
    x = dev(np.arange(6, dtype=np.float32).reshape(2, 3) - 2)
    y = F.relu(x)
    assert isinstance(y, convkit.DeviceArray) and y.data_ptr != x.data_ptr
    assert x.to_numpy().tolist() == [[-2, -1, 0], [1, 2, 3]]


def test_caller_stream():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    s = torch.cuda.Stream()
    x = np.random.default_rng(1).standard_normal((64, 1000)).astype(np.float32)
    convkit._core.set_cuda_stream(s.cuda_stream)
    try:
        assert convkit._core.cuda_current_stream() == s.cuda_stream
        y = F.softmax(dev(x))
        convkit.synchronize()
        np.testing.assert_allclose(y.to_numpy(), F.softmax(x), rtol=1e-5, atol=1e-7)
    finally:
        convkit._core.set_cuda_stream(0)
    assert convkit._core.cuda_current_stream() != s.cuda_stream
