"""out= on the big functional ops: the result is written into a caller's array (no allocation on the
hot path), bit-identical to the allocating call, and bad `out` arrays are refused with a clear message.

Every `out` starts filled with NaN, so a kernel that skipped an element would show it; each case is
run twice into the same buffers with different inputs (the reuse the keyword is for)."""
import numpy as np
import pytest

import convkit.functional as F
from convkit.testing import assert_raises


def nan_like(shape, dtype=np.float32):
    return np.full(shape, np.nan, dtype)


def cases(rng):
    x = rng.standard_normal((3, 8, 11, 11)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    fx = rng.standard_normal((5, 40)).astype(np.float32)
    fw = rng.standard_normal((7, 40)).astype(np.float32)
    fb = rng.standard_normal(7).astype(np.float32)
    fdy = rng.standard_normal((5, 7)).astype(np.float32)
    y, scale = F.local_response_norm(x, 5, 1e-2, 0.75, 2.0, return_scale=True)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    return {
        "conv2d": (lambda out=None: F.conv2d(x, w, b, 2, 1, 1, 2, out=out), lambda: nan_like((3, 6, 6, 6))),
        "lrn": (lambda out=None: F.local_response_norm(x, 5, 1e-2, 0.75, 2.0, return_scale=True, out=out),
                lambda: (nan_like(x.shape), nan_like(x.shape))),
        "lrn_backward": (lambda out=None: F.local_response_norm_backward(x, y, scale, dy, 5, 1e-2, 0.75, 2.0, out=out),
                         lambda: nan_like(x.shape)),
        "max_pool2d": (lambda out=None: F.max_pool2d(x, 3, 2, return_indices=True, out=out),
                       lambda: (nan_like((3, 8, 5, 5)), np.full((3, 8, 5, 5), -7, np.int64))),
        "linear": (lambda out=None: F.linear(fx, fw, fb, out=out), lambda: nan_like((5, 7))),
        "linear_backward_data": (lambda out=None: F.linear_backward_data(fdy, fw, out=out), lambda: nan_like((5, 40))),
        "linear_backward_weight": (lambda out=None: F.linear_backward_weight(fx, fdy, out=out),
                                   lambda: nan_like((7, 40))),
    }


@pytest.mark.parametrize("name", ["conv2d", "lrn", "lrn_backward", "max_pool2d", "linear", "linear_backward_data",
                                  "linear_backward_weight"])
def test_out_matches_allocating_call(name):
    out = cases(np.random.default_rng(1))[name][1]()
    for seed in (1, 2):  # the same buffers reused with other inputs
        fn, _ = cases(np.random.default_rng(seed))[name]
        want = fn()
        got = fn(out=out)
        if isinstance(out, tuple):
            assert got[0] is out[0] and got[1] is out[1]
            for g, w_ in zip(got, want):
                np.testing.assert_array_equal(g, w_)  # same kernel, same order: bit-identical
        else:
            assert got is out
            np.testing.assert_array_equal(got, want)


def test_bad_out():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 7, 7)).astype(np.float32)
    w = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    assert_raises(ValueError, r"conv2d_forward: out must have shape \[2, 3, 5, 5\], got \[2, 3, 5, 4\]", F.conv2d, x,
                  w, out=np.empty((2, 3, 5, 4), np.float32))
    assert_raises(ValueError, r"conv2d_forward: out must be float32, got float64", F.conv2d, x, w,
                  out=np.empty((2, 3, 5, 5)))
    ro = np.empty((2, 3, 5, 5), np.float32)
    ro.flags.writeable = False
    assert_raises(ValueError, r"conv2d_forward: out is read-only", F.conv2d, x, w, out=ro)
    # out overlapping an input would be overwritten while the kernel still reads it
    assert_raises(ValueError, r"lrn_forward: out\[0\] must not share memory with the inputs",
                  F.local_response_norm, x, 3, out=(x, np.empty_like(x)))
    big = np.empty(2 * x.size, np.float32)
    assert_raises(ValueError, r"lrn_backward: out must not share memory with the inputs",
                  F.local_response_norm_backward, x, x, x, x, 3, out=x.reshape(-1)[:x.size].reshape(x.shape))
    y = big[:x.size].reshape(x.shape)
    assert_raises(ValueError, r"lrn_forward: out\[1\] must not share memory with the inputs",
                  F.local_response_norm, x, 3, out=(y, y))
    assert_raises(TypeError, r"max_pool2d: out must be a tuple of two arrays, got ndarray", F.max_pool2d, x, 2,
                  out=np.empty((2, 4, 3, 3), np.float32))
    assert_raises(ValueError, r"max_pool2d_forward: out\[1\] must be int64, got float32", F.max_pool2d, x, 2,
                  out=(np.empty((2, 4, 3, 3), np.float32), np.empty((2, 4, 3, 3), np.float32)))
    fx, fw = np.ones((2, 5), np.float32), np.ones((3, 5), np.float32)
    assert_raises(ValueError, r"linear_forward: out must have shape \[2, 3\], got \[3, 2\]", F.linear, fx, fw,
                  out=np.empty((3, 2), np.float32))
