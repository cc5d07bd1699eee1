"""Local response normalization against the float64 reference, hand-worked cases, gradients, torch,
numerical care, threads and bad input.

Tolerances. float64: a handful of roundings, rtol 1e-12. float32 forward: the window sum of n
squares (n - 1 roundings, all terms positive), k + alpha/n * sum, the power (closed forms: 3-4
correctly rounded operations; other betas: exp/log evaluated in double, one rounding) and the
product: under 10 units in the last place for the sizes tested, so rtol 2e-6 (float32 eps 6e-8).
Backward: dx = dy * s^-beta - coef * x * sum(...) may cancel, so its absolute tolerance scales with
the size of the two terms (2e-6 relative to them in float32).
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convkit
import convkit.functional as F
from convkit.testing import assert_close, assert_raises, check_gradients
from conftest import DEVICES, on
from reference import lrn as ref
from test_max_pool2d import guarded_copy

HERE = os.path.dirname(os.path.abspath(__file__))


def channels(values, dt=np.float64):
    """[1, C, 1, 1] array from the per-channel values."""
    return np.array(values, dt).reshape(1, -1, 1, 1)


def fwd(device, x, size, alpha, beta, k):
    y, s = F.local_response_norm(on(device, x), size, alpha, beta, k, return_scale=True)
    return convkit.to_numpy(y), convkit.to_numpy(s)


def rtol_of(dt):
    return 2e-6 if dt == np.float32 else 1e-12


def backward_terms(x, scale, dy, size, alpha, beta):
    """|dy * s^-beta| + |2 alpha beta / n * x * sum|: the size of what dx cancels, for its tolerance."""
    x, scale, dy = (np.asarray(a, np.float64) for a in (x, scale, dy))
    y = x * scale ** (-beta)
    ratio = np.abs(dy * y / scale)
    total = np.zeros_like(x)
    for j in range(x.shape[1]):
        users = [c for c in range(x.shape[1]) if j in ref.window(c, size, x.shape[1])]
        total[:, j] = sum(ratio[:, c] for c in users)
    return np.abs(dy) * scale ** (-beta) + 2 * alpha * beta / size * np.abs(x) * total


# ---- hand-worked ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_hand_worked_forward(device, dt):
    # size 3, alpha 3 (alpha/n = 1), beta 1, k 1, x = [1, 2, 3]; windows [c-1, c+1]:
    #   scale = [1 + 1 + 4, 1 + 1 + 4 + 9, 1 + 4 + 9] = [6, 15, 14];  y = [1/6, 2/15, 3/14]
    y, s = fwd(device, channels([1, 2, 3], dt), 3, 3.0, 1.0, 1.0)
    assert_close(s.ravel(), np.array([6, 15, 14]), rtol=rtol_of(dt), atol=0)
    assert_close(y.ravel(), np.array([1 / 6, 2 / 15, 3 / 14]), rtol=rtol_of(dt), atol=0)
    # even size 2, alpha 2 (alpha/n = 1), beta 0.5, k 1: windows [c-1, c] (n/2 = 1 before, 0 after):
    #   scale = [1 + 1, 1 + 1 + 4, 1 + 4 + 9] = [2, 6, 14];  y = x / sqrt(scale)
    y, s = fwd(device, channels([1, 2, 3], dt), 2, 2.0, 0.5, 1.0)
    assert_close(s.ravel(), np.array([2, 6, 14]), rtol=rtol_of(dt), atol=0)
    assert_close(y.ravel(), np.array([1 / 2 ** 0.5, 2 / 6 ** 0.5, 3 / 14 ** 0.5]), rtol=rtol_of(dt), atol=0)
    # beta 0.75: size 1, alpha 1, k 7, x = [3, -3]: scale = 7 + 9 = 16, 16^-0.75 = 1/8, y = +-3/8
    y, s = fwd(device, channels([3, -3], dt), 1, 1.0, 0.75, 7.0)
    assert s.ravel().tolist() == [16, 16] and y.ravel().tolist() == [0.375, -0.375]
    # fewer channels than the window: size 5, alpha 5, beta 1, k 1, x = [1, 2]: both windows hold
    # both channels (the divisor stays 5): scale = [1 + 1 + 4] * 2 = [6, 6], y = [1/6, 2/6]
    y, s = fwd(device, channels([1, 2], dt), 5, 5.0, 1.0, 1.0)
    assert_close(s.ravel(), np.array([6, 6]), rtol=rtol_of(dt), atol=0)
    assert_close(y.ravel(), np.array([1 / 6, 1 / 3]), rtol=rtol_of(dt), atol=0)


def test_hand_worked_backward(device):
    # The first case above (size 3, alpha/n = 1, beta 1, coef 2 alpha beta / n = 2) with dy = [1, 0, 0]:
    # only c = 0 contributes, t0 = dy0 y0 / s0 = (1/6) / 6 = 1/36, and W(0) = {0, 1}:
    #   dx0 = dy0 / s0 - 2 x0 t0 = 1/6 - 2/36 = 1/9;  dx1 = -2 x1 t0 = -4/36 = -1/9;  dx2 = 0
    # (directly: y0 = x0 / (1 + x0^2 + x1^2): dy0/dx0 = (6 - 2) / 36, dy0/dx1 = -2 x0 x1 / 36.)
    x = channels([1, 2, 3])
    y, s = fwd(device, x, 3, 3.0, 1.0, 1.0)
    dx = F.local_response_norm_backward(on(device, x), on(device, y), on(device, s), on(device, channels([1, 0, 0])),
                                        3, 3.0, 1.0, 1.0)
    assert_close(convkit.to_numpy(dx).ravel(), np.array([1 / 9, -1 / 9, 0]), rtol=1e-15, atol=1e-16)


def test_beta_zero_is_identity(device):
    x = np.random.default_rng(0).standard_normal((2, 5, 3, 11)).astype(np.float32)
    y, _ = fwd(device, x, 5, 1e-4, 0.0, 2.0)
    np.testing.assert_array_equal(y, x)


# ---- random shapes against the reference -----------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@given(n=st.integers(1, 2), c=st.integers(1, 12), h=st.integers(1, 5), w=st.integers(1, 70),
       size=st.integers(1, 14), alpha=st.sampled_from([1e-4, 0.1, 1.0, 3.0]),
       beta=st.sampled_from([0.0, 0.5, 0.75, 1.0, 0.3, 1.7]), k=st.sampled_from([0.5, 1.0, 2.0]),
       dt=st.sampled_from([np.float32, np.float64]))
def test_matches_reference(device, n, c, h, w, size, alpha, beta, k, dt):
    rng = np.random.default_rng(n * 1000 + c * 100 + h * 10 + w)
    x = (rng.standard_normal((n, c, h, w)) * 2).astype(dt)
    y, s = fwd(device, x, size, alpha, beta, k)
    ry, rs = ref.lrn(x, size, alpha, beta, k)
    assert y.dtype == dt and s.dtype == dt
    assert_close(s, rs, rtol=rtol_of(dt), atol=0, name="scale")
    assert_close(y, ry, rtol=rtol_of(dt), atol=1e-30, name="y")
    dy = rng.standard_normal(x.shape).astype(dt)
    dx = F.local_response_norm_backward(on(device, x), on(device, y), on(device, s), on(device, dy), size, alpha,
                                        beta, k)
    rdx = ref.lrn_backward(x, y, s, dy, size, alpha, beta, k)
    assert_close(dx, rdx, rtol=rtol_of(dt), atol=rtol_of(dt) * backward_terms(x, s, dy, size, alpha, beta), name="dx")


def test_no_cancellation_after_a_large_value():
    """A running window sum (add the entering square, subtract the leaving one) would keep an error
    of about 1e8 * eps after the 1e4 channel leaves the window; the small channels' scales must stay
    exact to float rounding."""
    x = np.full((1, 40, 2, 9), 1e-2, np.float32)
    x[:, 3] = 1e4
    x[:, 20] = -3e3
    y, s = fwd("cpu", x, 5, 1.0, 0.75, 1e-6)
    ry, rs = ref.lrn(x, 5, 1.0, 0.75, 1e-6)
    assert_close(s, rs, rtol=2e-6, atol=0, name="scale")
    assert_close(y, ry, rtol=2e-6, atol=0, name="y")


@pytest.mark.parametrize("shape", [(2, 96, 13, 13), (1, 16, 17, 19), (3, 4, 1, 257)])
def test_multiple_chunks_and_tails(shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    for beta in (0.75, 0.6):
        y, s = fwd("cpu", x, 5, 1e-2, beta, 2.0)
        ry, rs = ref.lrn(x, 5, 1e-2, beta, 2.0)
        assert_close(y, ry, rtol=2e-6, atol=0)
        dy = rng.standard_normal(shape).astype(np.float32)
        dx = F.local_response_norm_backward(x, y, s, dy, 5, 1e-2, beta, 2.0)
        assert_close(dx, ref.lrn_backward(x, y, s, dy, 5, 1e-2, beta, 2.0), rtol=2e-6,
                     atol=2e-6 * backward_terms(x, s, dy, 5, 1e-2, beta))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses mmap/mprotect guard pages")
@pytest.mark.parametrize("where", ["start", "end"])
@pytest.mark.parametrize("shape", [(1, 3, 1, 13), (2, 5, 3, 7), (1, 2, 9, 9)])
@pytest.mark.parametrize("beta", [0.75, 0.6])
def test_no_reads_outside_the_inputs(where, shape, beta):
    """The masked tail loads must not touch memory past (or before) any input array."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    y, s = F.local_response_norm(guarded_copy(x, where), 5, 0.1, beta, 1.0, return_scale=True)
    ry, rs = ref.lrn(x, 5, 0.1, beta, 1.0)
    assert_close(y, ry, rtol=2e-6, atol=0)
    dy = rng.standard_normal(shape).astype(np.float32)
    dx = F.local_response_norm_backward(*(guarded_copy(a, where) for a in (x, y, s, dy)), 5, 0.1, beta, 1.0)
    assert_close(dx, ref.lrn_backward(x, y, s, dy, 5, 0.1, beta, 1.0), rtol=2e-6,
                 atol=2e-6 * backward_terms(x, s, dy, 5, 0.1, beta))


# ---- gradients ------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 9])
@pytest.mark.parametrize("beta", [0.75, 0.6])
def test_gradient(size, beta):
    rng = np.random.default_rng(size)
    x = rng.standard_normal((2, 7, 3, 4))
    alpha, k = 0.8, 1.5  # large alpha: the cross-channel term matters as much as the direct one

    def forward(x):
        return F.local_response_norm(x, size, alpha, beta, k)

    def backward(dy, x):
        y, s = F.local_response_norm(x, size, alpha, beta, k, return_scale=True)
        return F.local_response_norm_backward(x, y, s, dy, size, alpha, beta, k)
    check_gradients(forward, backward, [x], max_points=84)


def test_gradient_fewer_channels_than_size():
    x = np.random.default_rng(4).standard_normal((1, 3, 2, 5))
    for size in (4, 5, 8):
        check_gradients(lambda x: F.local_response_norm(x, size, 1.0, 0.75, 1.0),
                        lambda dy, x: F.local_response_norm_backward(
                            x, *F.local_response_norm(x, size, 1.0, 0.75, 1.0, return_scale=True), dy, size, 1.0,
                            0.75, 1.0), [x])


# ---- torch ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("size,c", [(1, 4), (2, 5), (3, 7), (4, 7), (5, 96), (6, 9), (5, 3), (8, 5)])
def test_against_torch(device, dt, size, c):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(size * 10 + c)
    x = (rng.standard_normal((2, c, 6, 7)) * 3).astype(dt)
    alpha, beta, k = 1e-2, 0.75, 2.0
    t = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.local_response_norm(t, size, alpha, beta, k)
    y, s = fwd(device, x, size, alpha, beta, k)
    assert_close(y, ty.detach().numpy(), rtol=2 * rtol_of(dt), atol=0)  # both within rtol of the exact value
    dy = rng.standard_normal(x.shape).astype(dt)
    ty.backward(torch.tensor(dy))
    dx = F.local_response_norm_backward(on(device, x), on(device, y), on(device, s), on(device, dy), size, alpha,
                                        beta, k)
    assert_close(dx, t.grad.numpy(), rtol=2 * rtol_of(dt),
                 atol=2 * rtol_of(dt) * backward_terms(x, s, dy, size, alpha, beta))


@pytest.mark.parametrize("beta", [0.5, 1.0, 0.3, 2.5])
def test_other_betas_against_torch(beta):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(9).standard_normal((2, 6, 5, 11)).astype(np.float32) * 4
    ty = torch.nn.functional.local_response_norm(torch.tensor(x), 4, 0.5, beta, 1.0).numpy()
    assert_close(F.local_response_norm(x, 4, 0.5, beta, 1.0), ty, rtol=4e-6, atol=0)


# ---- threads and instruction sets -------------------------------------------------------------------

def test_thread_count_independent():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 10, 17, 19)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    old = convkit.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            convkit.set_num_threads(n)
            y, s = F.local_response_norm(x, 5, 1e-2, 0.75, 1.0, return_scale=True)
            results.append((y, s, F.local_response_norm_backward(x, y, s, dy, 5, 1e-2, 0.75, 1.0)))
    finally:
        convkit.set_num_threads(old)
    for r in results[1:]:
        for a, b in zip(r, results[0]):
            np.testing.assert_array_equal(a, b)


GENERIC_SCRIPT = """
import numpy as np, convkit, convkit.functional as F
from reference import lrn as ref
from test_max_pool2d import guarded_copy
assert convkit._core.cpu_isa() == "generic", convkit._core.cpu_isa()
rng = np.random.default_rng(0)
for dt, tol in ((np.float32, 2e-6), (np.float64, 1e-12)):
    for size, beta in ((5, 0.75), (4, 0.6), (2, 0.5), (3, 1.0), (1, 0.0)):
        x = rng.standard_normal((2, 7, 5, 61)).astype(dt)
        y, s = F.local_response_norm(x, size, 0.1, beta, 2.0, return_scale=True)
        ry, rs = ref.lrn(x, size, 0.1, beta, 2.0)
        assert np.allclose(y, ry, rtol=tol, atol=0), (dt, size, beta)
        dy = rng.standard_normal(x.shape).astype(dt)
        dx = F.local_response_norm_backward(x, y, s, dy, size, 0.1, beta, 2.0)
        rdx = ref.lrn_backward(x, y, s, dy, size, 0.1, beta, 2.0)
        assert np.allclose(dx, rdx, rtol=tol, atol=tol * np.abs(rdx).max()), (dt, size, beta)
print("ok")
"""


def test_generic_isa_path():
    """The plain C++ path (CONVKIT_ISA=generic, chosen once per process) in a child process."""
    env = dict(os.environ, CONVKIT_ISA="generic")
    r = subprocess.run([sys.executable, "-c", GENERIC_SCRIPT], cwd=HERE, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


# ---- bad input ------------------------------------------------------------------------------------

def test_bad_input_forward():
    x = np.ones((1, 3, 4, 4), np.float32)
    fn = F.local_response_norm
    assert_raises(TypeError, r"local_response_norm: x must be a numpy array", fn, [1.0], 5)
    assert_raises(TypeError, r"local_response_norm: x must have dtype float32 or float64, got int64", fn,
                  np.ones((1, 3, 4, 4), np.int64), 5)
    assert_raises(ValueError, r"local_response_norm: x must have shape \[N, C, H, W\], got \[3, 4, 4\]", fn,
                  np.ones((3, 4, 4), np.float32), 5)
    assert_raises(ValueError, r"local_response_norm: x is empty", fn, np.ones((1, 0, 4, 4), np.float32), 5)
    assert_raises(ValueError, r"C-contiguous", fn, np.ones((1, 3, 4, 8), np.float32)[..., ::2], 5)
    assert_raises(ValueError, r"local_response_norm: size must be >= 1, got 0", fn, x, 0)
    assert_raises(TypeError, r"local_response_norm: size must be an int, got float", fn, x, 5.0)
    assert_raises(ValueError, r"local_response_norm: alpha must be >= 0.0, got -1.0", fn, x, 5, -1.0)
    assert_raises(ValueError, r"local_response_norm: beta must be >= 0.0, got -0.5", fn, x, 5, 1e-4, -0.5)
    assert_raises(ValueError, r"local_response_norm: k must be > 0.0, got 0.0", fn, x, 5, 1e-4, 0.75, 0.0)
    assert_raises(ValueError, r"local_response_norm: alpha must be finite, got nan", fn, x, 5, float("nan"))
    assert_raises(TypeError, r"local_response_norm: k must be a number, got str", fn, x, 5, 1e-4, 0.75, "1")


def test_bad_input_backward():
    x = np.ones((1, 3, 4, 4), np.float32)
    y, s = F.local_response_norm(x, 5, return_scale=True)
    fn = F.local_response_norm_backward
    assert_raises(ValueError, r"local_response_norm_backward: dy must have shape \[1, 3, 4, 4\], got \[1, 3, 4, 5\]",
                  fn, x, y, s, np.ones((1, 3, 4, 5), np.float32), 5)
    assert_raises(ValueError, r"local_response_norm_backward: scale must have shape \[N, C, H, W\], got \[3, 4, 4\]",
                  fn, x, y, s[0], y, 5)
    assert_raises(TypeError, r"local_response_norm_backward: dy has dtype float64 but x has float32", fn, x, y, s,
                  np.ones(x.shape), 5)
    assert_raises(ValueError, r"local_response_norm_backward: size must be >= 1, got -2", fn, x, y, s, y, -2)


def test_bad_input_core():
    """The C++ entry points check on their own (the binding calls them without the Python checks)."""
    core = convkit._core
    x = np.ones((1, 3, 4, 4), np.float32)
    assert_raises(ValueError, r"lrn_forward: x must have shape \[N, C, H, W\], got \[3, 4, 4\]", core.lrn_forward,
                  x[0], 5, 1e-4, 0.75, 1.0)
    assert_raises(ValueError, r"lrn_forward: x must be float32 or float64, got int64", core.lrn_forward,
                  np.ones((1, 3, 4, 4), np.int64), 5, 1e-4, 0.75, 1.0)
    assert_raises(ValueError, r"lrn_forward: size must be >= 1, got 0", core.lrn_forward, x, 0, 1e-4, 0.75, 1.0)
    assert_raises(ValueError, r"lrn_forward: alpha must be finite and >= 0, got -1", core.lrn_forward, x, 5, -1.0,
                  0.75, 1.0)
    assert_raises(ValueError, r"lrn_forward: beta must be finite and >= 0, got inf", core.lrn_forward, x, 5, 1e-4,
                  float("inf"), 1.0)
    assert_raises(ValueError, r"lrn_forward: k must be finite and > 0, got 0", core.lrn_forward, x, 5, 1e-4, 0.75, 0.0)
    assert_raises(ValueError, r"lrn_forward: k must be finite and > 0, got nan", core.lrn_forward, x, 5, 1e-4, 0.75,
                  float("nan"))
    y, s = core.lrn_forward(x, 5, 1e-4, 0.75, 1.0)
    assert_raises(ValueError, r"lrn_backward: dy must have shape \[1, 3, 4, 4\], got \[1, 3, 4, 5\]", core.lrn_backward,
                  x, y, s, np.ones((1, 3, 4, 5), np.float32), 5, 1e-4, 0.75, 1.0)
    assert_raises(ValueError, r"lrn_backward: scale must be float32, got float64", core.lrn_backward, x, y,
                  s.astype(np.float64), y, 5, 1e-4, 0.75, 1.0)
    assert_raises(ValueError, r"lrn_backward: y must have shape \[1, 3, 4, 4\], got \[3, 4, 4\]", core.lrn_backward,
                  x, y[0], s, y, 5, 1e-4, 0.75, 1.0)
