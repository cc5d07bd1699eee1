"""relu and dropout against the float64 reference, gradients, torch, and bad input."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convkit
import convkit.functional as F
from convkit.testing import assert_close, assert_raises, check_gradients
from conftest import on
from reference import activation as ref


def test_relu_hand_worked():
    x = np.array([[-2.0, -0.0, 0.5, 3.0]], np.float32)
    # max(x, 0): -2 -> 0, -0 -> 0, 0.5 and 3 unchanged
    assert F.relu(x).tolist() == [[0.0, 0.0, 0.5, 3.0]]
    # dx = dy where y > 0: only the last two pass
    dy = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    assert F.relu_backward(dy, F.relu(x)).tolist() == [[0.0, 0.0, 3.0, 4.0]]


@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=4), dt=st.sampled_from([np.float32, np.float64]))
def test_relu_matches_reference(shape, dt):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape).astype(dt)
    dy = rng.standard_normal(shape).astype(dt)
    y = F.relu(x)
    assert y.dtype == dt
    assert_close(y, ref.relu(x), rtol=0, atol=0)
    assert_close(F.relu_backward(dy, y), ref.relu_backward(dy, y), rtol=0, atol=0)


def test_relu_backward_special_values(rng):
    # long enough for the vectorized loop and its tail: dy's NaN and inf pass only where y > 0, and a
    # NaN in y blocks the gradient (y > 0 is false); the values where y <= 0 are never looked at
    n = 1000 + 7
    y = np.abs(rng.standard_normal(n)).astype(np.float32)
    y[::3] = 0.0
    y[5::50] = np.nan
    dy = rng.standard_normal(n).astype(np.float32)
    dy[::7] = np.nan
    dy[1::11] = np.inf
    want = np.where(y > 0, dy, np.float32(0))
    got = F.relu_backward(dy, y)
    np.testing.assert_array_equal(got, want)
    mask = rng.random(n) < 0.5
    got_d = F.dropout_backward(dy, mask.astype(np.uint8), 0.5)
    np.testing.assert_array_equal(got_d, np.where(mask, dy * np.float32(2.0), np.float32(0)))


def test_relu_gradient(rng):
    x = rng.standard_normal((2, 3, 5, 7))
    x[np.abs(x) < 0.05] = 0.5  # stay away from the kink at 0 (eps is 1e-6)
    check_gradients(F.relu, lambda dy, x: F.relu_backward(dy, F.relu(x)), [x])


def test_relu_on_device(device, rng):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    assert_close(F.relu(on(device, x)), ref.relu(x), rtol=0, atol=0)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9])
def test_dropout_matches_reference(p, rng):
    x = rng.standard_normal((4, 3, 17, 9))
    y, mask = F.dropout(x, p, seed=42)
    ry, rmask = ref.dropout(x, p, 42)
    np.testing.assert_array_equal(mask, rmask)
    assert_close(y, ry, rtol=1e-15, atol=0)
    dy = rng.standard_normal(x.shape)
    assert_close(F.dropout_backward(dy, mask, p), np.where(rmask, dy / (1 - p), 0.0), rtol=1e-15, atol=0)
    if p > 0:
        assert abs(1 - mask.mean() - p) < 0.03  # the keep rate is 1 - p


def test_dropout_reproducible_and_thread_independent(rng):
    x = rng.standard_normal(200_000).astype(np.float32)
    a = F.dropout(x, 0.5, 7)[1]
    old = convkit.get_num_threads()
    try:
        convkit.set_num_threads(1)
        b = F.dropout(x, 0.5, 7)[1]
    finally:
        convkit.set_num_threads(old)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, F.dropout(x, 0.5, 8)[1])


def test_dropout_gradient(rng):
    x = rng.standard_normal((3, 11))
    check_gradients(lambda x: F.dropout(x, 0.3, 5)[0],
                    lambda dy, x: F.dropout_backward(dy, F.dropout(x, 0.3, 5)[1], 0.3), [x])


def test_against_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 4, 5))
    t = torch.tensor(x, requires_grad=True)
    torch.relu(t).backward(torch.ones_like(t))
    assert_close(F.relu(x), torch.relu(t).detach().numpy(), rtol=0, atol=0)
    assert_close(F.relu_backward(np.ones_like(x), F.relu(x)), t.grad.numpy(), rtol=0, atol=0)


def test_bad_input():
    x = np.ones((2, 3), np.float32)
    assert_raises(TypeError, r"relu: x must be a numpy array", F.relu, [1.0, 2.0])
    assert_raises(TypeError, r"relu: x must have dtype float32 or float64, got int64", F.relu, np.ones(3, np.int64))
    assert_raises(ValueError, r"relu: x is empty", F.relu, np.ones((0, 3), np.float32))
    assert_raises(ValueError, r"C-contiguous", F.relu, np.ones((4, 4), np.float32)[:, ::2])
    assert_raises(ValueError, r"C-contiguous", F.relu, np.ones((4,), np.float32)[::-1])
    assert_raises(ValueError, r"relu_backward: dy must have shape \[2, 3\], got \[3, 2\]",
                  F.relu_backward, np.ones((3, 2), np.float32), x)
    assert_raises(TypeError, r"dy has dtype float64 but y has float32", F.relu_backward, np.ones((2, 3)), x)
    assert_raises(ValueError, r"dropout: p must be < 1.0, got 1.0", F.dropout, x, 1.0)
    assert_raises(ValueError, r"dropout: p must be >= 0.0, got -0.1", F.dropout, x, -0.1)
    assert_raises(ValueError, r"dropout: p must be finite", F.dropout, x, float("nan"))
    assert_raises(TypeError, r"dropout: seed must be an int", F.dropout, x, 0.5, 1.5)
    assert_raises(ValueError, r"mask must have shape \[2, 3\]", F.dropout_backward, x, np.ones((3, 2), np.uint8))
    # the C++ side checks too: calling the core directly with mismatched shapes
    assert_raises(ValueError, r"relu_backward: dy must have the shape of y", convkit._core.relu_backward,
                  np.ones((3, 2), np.float32), x)


def test_cuda_without_device_is_clear():
    if convkit.cuda_available():
        pytest.skip("a CUDA device is usable here")
    assert_raises(RuntimeError, r"device='cuda' requested but CUDA is not usable",
                  convkit.asarray, np.ones(3, np.float32), device="cuda")
