"""linear (fully connected) against the float64 reference, gradients, torch, and bad input.

Tolerance: each output is a sum of k products (k = IN for y, OUT for dx, N for dw and db) plus at
most one more rounding (the bias add, or alpha's scaling inside gemm). The worst-case bound
|computed - exact| <= gamma_{k+2} * (sum of |terms|), gamma_n = n*u / (1 - n*u), u = eps/2, holds
for any summation order, so it is exact enough to catch any index error and cannot flake. For
float64 results the float64 reference has an error of the same order, so the bound is doubled.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convkit
import convkit.functional as F
from convkit.testing import assert_raises, check_gradients
from conftest import on
from reference import linear as ref


def assert_within(got, expected, magnitude, k, dtype, name):
    """|got - expected| <= gamma_{k+2} * magnitude elementwise (magnitude = sum of |terms|)."""
    got = np.asarray(convkit.to_numpy(got), np.float64)
    assert got.shape == expected.shape, f"{name}: shape {got.shape} != {expected.shape}"
    u = np.finfo(dtype).eps / 2
    gamma = (k + 2) * u / (1 - (k + 2) * u)
    bound = gamma * magnitude * (2.0 if dtype == np.float64 else 1.0) + np.finfo(dtype).tiny
    err = np.abs(got - expected)
    bad = ~(err <= bound)
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        raise AssertionError(f"{name}: {int(bad.sum())} of {bad.size} off; at {i} got {got[i]!r}, expected "
                             f"{expected[i]!r}, bound {bound[i]:.3e}")


def check_all(x, w, b, dy, device="cpu"):
    """Forward and the three backward functions against the reference, within the rounding bound."""
    dt = x.dtype.type
    X, W, DY = on(device, x), on(device, w), on(device, dy)
    B = None if b is None else on(device, b)
    n, i = x.shape
    o = w.shape[0]
    y = F.linear(X, W, B)
    assert convkit.to_numpy(y).dtype == dt
    mag_y = np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
    if b is not None:
        mag_y = mag_y + np.abs(b.astype(np.float64))
    assert_within(y, ref.linear(x, w, b), mag_y, i, dt, "y")
    ad, aw, ax = np.abs(dy.astype(np.float64)), np.abs(w.astype(np.float64)), np.abs(x.astype(np.float64))
    assert_within(F.linear_backward_data(DY, W), ref.linear_backward_data(dy, w), ad @ aw, o, dt, "dx")
    assert_within(F.linear_backward_weight(X, DY), ref.linear_backward_weight(x, dy), ad.T @ ax, n, dt, "dw")
    assert_within(F.linear_backward_bias(DY), ref.linear_backward_bias(dy), ad.sum(0), n, dt, "db")


def test_hand_worked():
    # x = [[1, 2]], w = [[1, 0], [0, 1], [1, 1]], b = [0.5, -1, 2]
    # y = [1*1 + 2*0 + 0.5, 1*0 + 2*1 - 1, 1*1 + 2*1 + 2] = [1.5, 1, 5]
    # dy = [[1, 2, 3]]: dx = dy @ w = [1*1 + 2*0 + 3*1, 1*0 + 2*1 + 3*1] = [4, 5]
    #                   dw = dy^T @ x = [[1, 2], [2, 4], [3, 6]],  db = [1, 2, 3]
    for dt in (np.float32, np.float64):
        x = np.array([[1, 2]], dt)
        w = np.array([[1, 0], [0, 1], [1, 1]], dt)
        b = np.array([0.5, -1, 2], dt)
        dy = np.array([[1, 2, 3]], dt)
        assert F.linear(x, w, b).tolist() == [[1.5, 1.0, 5.0]]
        assert F.linear(x, w).tolist() == [[1.0, 2.0, 3.0]]
        assert F.linear_backward_data(dy, w).tolist() == [[4.0, 5.0]]
        assert F.linear_backward_weight(x, dy).tolist() == [[1, 2], [2, 4], [3, 6]]
        assert F.linear_backward_bias(dy).tolist() == [1.0, 2.0, 3.0]
        # two rows: the second row of x is twice the first, so y's second row is 2 * (y - b) + b
        x2 = np.array([[1, 2], [2, 4]], dt)
        assert F.linear(x2, w, b).tolist() == [[1.5, 1.0, 5.0], [2.5, 3.0, 8.0]]


@given(n=st.integers(1, 9), i=st.integers(1, 70), o=st.integers(1, 70), bias=st.booleans(),
       dt=st.sampled_from([np.float32, np.float64]))
def test_matches_reference(n, i, o, bias, dt):
    rng = np.random.default_rng(n * 5000 + i * 70 + o)
    x = rng.standard_normal((n, i)).astype(dt)
    w = rng.standard_normal((o, i)).astype(dt)
    b = rng.standard_normal(o).astype(dt) if bias else None
    dy = rng.standard_normal((n, o)).astype(dt)
    check_all(x, w, b, dy)


@pytest.mark.parametrize("n,i,o", [(1, 9216, 300), (1, 4096, 1000), (2, 1500, 700), (64, 800, 500), (3, 1, 1),
                                   (1, 1, 5), (7, 3, 1)])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_layer_shapes(device, n, i, o, dt):
    # batch 1 takes gemm's matrix-vector and rank-1 paths; larger batches the blocked one
    rng = np.random.default_rng(n + i + o)
    x = rng.standard_normal((n, i)).astype(dt)
    w = (rng.standard_normal((o, i)) / np.sqrt(i)).astype(dt)
    b = rng.standard_normal(o).astype(dt)
    dy = rng.standard_normal((n, o)).astype(dt)
    check_all(x, w, b, dy, device)


def test_gradients(rng):
    x = rng.standard_normal((3, 7))
    w = rng.standard_normal((5, 7))
    b = rng.standard_normal(5)
    check_gradients(F.linear,
                    lambda dy, x, w, b: (F.linear_backward_data(dy, w), F.linear_backward_weight(x, dy),
                                         F.linear_backward_bias(dy)),
                    [x, w, b], names=["x", "weight", "bias"])


def test_gradients_batch1(rng):
    x = rng.standard_normal((1, 40))
    w = rng.standard_normal((9, 40))
    b = rng.standard_normal(9)
    check_gradients(F.linear,
                    lambda dy, x, w, b: (F.linear_backward_data(dy, w), F.linear_backward_weight(x, dy),
                                         F.linear_backward_bias(dy)),
                    [x, w, b], names=["x", "weight", "bias"])


def test_thread_count_does_not_change_bits(rng):
    x = rng.standard_normal((1, 3000)).astype(np.float32)
    xb = rng.standard_normal((40, 300)).astype(np.float32)
    w = rng.standard_normal((2000, 3000)).astype(np.float32)
    wb = rng.standard_normal((200, 300)).astype(np.float32)
    dy = rng.standard_normal((1, 2000)).astype(np.float32)
    dyb = rng.standard_normal((40, 200)).astype(np.float32)
    old = convkit.get_num_threads()

    def run():
        return [F.linear(x, w), F.linear_backward_data(dy, w), F.linear_backward_weight(x, dy),
                F.linear(xb, wb), F.linear_backward_data(dyb, wb), F.linear_backward_weight(xb, dyb),
                F.linear_backward_bias(np.tile(dyb, (30, 7)))]
    try:
        convkit.set_num_threads(1)
        one = run()
        convkit.set_num_threads(3)
        three = run()
    finally:
        convkit.set_num_threads(old)
    for a, b in zip(one, three):
        np.testing.assert_array_equal(a, b)


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    for n in (1, 5):
        x = rng.standard_normal((n, 13))
        w = rng.standard_normal((6, 13))
        b = rng.standard_normal(6)
        dy = rng.standard_normal((n, 6))
        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        ty = torch.nn.functional.linear(tx, tw, tb)
        ty.backward(torch.tensor(dy))
        # float64 sums of 13 (or 5) terms of size ~1: any order agrees to a few ulps of 1e-16
        np.testing.assert_allclose(F.linear(x, w, b), ty.detach().numpy(), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(F.linear_backward_data(dy, w), tx.grad.numpy(), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(F.linear_backward_weight(x, dy), tw.grad.numpy(), rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(F.linear_backward_bias(dy), tb.grad.numpy(), rtol=1e-13, atol=1e-13)


def test_bad_input():
    x = np.ones((2, 3), np.float32)
    w = np.ones((4, 3), np.float32)
    b = np.ones(4, np.float32)
    dy = np.ones((2, 4), np.float32)
    # wrong kind of object
    assert_raises(TypeError, r"linear: x must be a numpy array", F.linear, [[1.0, 2.0, 3.0]], w)
    assert_raises(TypeError, r"linear: weight must be a numpy array", F.linear, x, "w")
    # wrong dtype
    assert_raises(TypeError, r"linear: x must have dtype float32 or float64, got int64", F.linear,
                  np.ones((2, 3), np.int64), w)
    assert_raises(TypeError, r"linear: weight has dtype float64 but x has float32", F.linear, x, w.astype(np.float64))
    assert_raises(TypeError, r"linear: bias has dtype float64 but x has float32", F.linear, x, w, b.astype(np.float64))
    # wrong rank or shape
    assert_raises(ValueError, r"linear: x must have shape \[N, IN\], got \[2, 3, 1\]", F.linear,
                  np.ones((2, 3, 1), np.float32), w)
    assert_raises(ValueError, r"linear: weight must have shape \[OUT, 3\] for x of shape \[2, 3\], got \[4, 5\]",
                  F.linear, x, np.ones((4, 5), np.float32))
    assert_raises(ValueError, r"linear: bias must have shape \[4\], got \[3\]", F.linear, x, w, np.ones(3, np.float32))
    assert_raises(ValueError, r"linear: bias must have shape \[OUT\], got \[1, 4\]", F.linear, x, w,
                  np.ones((1, 4), np.float32))
    # empty, non-contiguous
    assert_raises(ValueError, r"linear: x is empty", F.linear, np.ones((0, 3), np.float32), w)
    assert_raises(ValueError, r"linear: weight must be C-contiguous", F.linear, x, np.ones((3, 4), np.float32).T)
    # backward functions
    assert_raises(ValueError, r"linear_backward_data: dy must have shape \[N, 4\], got \[2, 5\]",
                  F.linear_backward_data, np.ones((2, 5), np.float32), w)
    assert_raises(TypeError, r"linear_backward_data: weight has dtype float64 but dy has float32",
                  F.linear_backward_data, dy, w.astype(np.float64))
    assert_raises(ValueError, r"linear_backward_data: weight must have shape \[OUT, IN\], got \[4\]",
                  F.linear_backward_data, dy, b)
    assert_raises(ValueError, r"linear_backward_weight: dy must have shape \[2, OUT\], got \[3, 4\]",
                  F.linear_backward_weight, x, np.ones((3, 4), np.float32))
    assert_raises(TypeError, r"linear_backward_weight: dy has dtype float64 but x has float32",
                  F.linear_backward_weight, x, dy.astype(np.float64))
    assert_raises(ValueError, r"linear_backward_weight: x is empty", F.linear_backward_weight,
                  np.ones((2, 0), np.float32), dy)
    assert_raises(ValueError, r"linear_backward_bias: dy must have shape \[N, OUT\], got \[4\]",
                  F.linear_backward_bias, b)
    assert_raises(TypeError, r"linear_backward_bias: dy must have dtype float32 or float64, got int64",
                  F.linear_backward_bias, np.ones((2, 4), np.int64))


def test_bad_input_reaches_cpp_checks():
    # the C++ entry points check on their own (calling the core directly, past the Python checks)
    core = convkit._core
    x = np.ones((2, 3), np.float32)
    w = np.ones((4, 3), np.float32)
    dy = np.ones((2, 4), np.float32)
    assert_raises(ValueError, r"linear_forward: weight must have shape \[\*, 3\], got \[4, 5\]", core.linear_forward,
                  x, np.ones((4, 5), np.float32), None)
    assert_raises(ValueError, r"linear_forward: bias must have shape \[4\], got \[3\]", core.linear_forward, x, w,
                  np.ones(3, np.float32))
    assert_raises(ValueError, r"linear_forward: weight has dtype float64 but x has float32", core.linear_forward, x,
                  w.astype(np.float64), None)
    assert_raises(ValueError, r"linear_forward: x must be float32 or float64, got int64", core.linear_forward,
                  np.ones((2, 3), np.int64), w, None)
    assert_raises(ValueError, r"linear_forward: x is empty", core.linear_forward, np.ones((0, 3), np.float32),
                  np.ones((4, 3), np.float32), None)
    assert_raises(ValueError, r"linear_backward_data: weight must have shape \[4, \*\], got \[5, 3\]",
                  core.linear_backward_data, dy, np.ones((5, 3), np.float32))
    assert_raises(ValueError, r"linear_backward_weight: dy must have shape \[2, \*\], got \[3, 4\]",
                  core.linear_backward_weight, x, np.ones((3, 4), np.float32))
    assert_raises(ValueError, r"linear_backward_weight: dy has dtype float64 but x has float32",
                  core.linear_backward_weight, x, dy.astype(np.float64))
    assert_raises(ValueError, r"linear_backward_bias: dy must be float32 or float64, got uint8",
                  core.linear_backward_bias, np.ones((2, 4), np.uint8))

