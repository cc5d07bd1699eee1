"""softmax, log_softmax and softmax cross-entropy against the float64 reference, hand-worked cases,
stability at 1e4, gradients, torch, threads and bad input.

Tolerances. float64: rtol 1e-12. float32: exp(x - m) is exact to about (|x - m| + 2) float eps
relative (x - m rounds once, expf within an ulp, the sum is kept in double), so probabilities within
rtol 4e-6 where they exceed 1e-9 (values with |x - m| > 20) and atol 1e-12 below; log-probabilities,
losses and gradients are O(1) or carry their own scale: rtol 1e-6 plus atol 1e-6.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convkit
import convkit.functional as F
from convkit.testing import assert_close, assert_raises, check_gradients
from conftest import DEVICES, on
from reference import softmax as ref

def tol(dt, kind):
    if dt == np.float64:
        return dict(rtol=1e-12, atol=1e-14)
    return dict(rtol=4e-6, atol=1e-12) if kind == "prob" else dict(rtol=1e-6, atol=1e-6)


def npy(a):
    return convkit.to_numpy(a)


# ---- hand-worked ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_hand_worked(device, dt):
    # row 0: exp([0, 1]) = [1, e], sum 1 + e -> softmax [1/(1+e), e/(1+e)] = [0.26894142, 0.73105858],
    #        log_softmax [-ln(1+e), 1 - ln(1+e)] = [-1.31326169, -0.31326169]
    # row 1: the same shifted by 1000 (softmax ignores shifts; exp(1000) alone overflows even float64)
    x = np.array([[0.0, 1.0], [1000.0, 1001.0]], dt)
    t = tol(dt, "log")
    e = np.e
    assert_close(npy(F.softmax(on(device, x))), np.array([[1 / (1 + e), e / (1 + e)]] * 2), **t)
    assert_close(npy(F.log_softmax(on(device, x))), np.array([[-np.log1p(e), 1 - np.log1p(e)]] * 2), **t)
    # cross-entropy: label 1 -> ln(1+e) - 1 = 0.31326169; label 0 -> ln(1+e) = 1.31326169
    loss, probs = F.softmax_cross_entropy(on(device, x), np.array([1, 0]))
    assert_close(npy(loss), np.array([np.log1p(e) - 1, np.log1p(e)]), **t)
    assert_close(npy(probs), np.array([[1 / (1 + e), e / (1 + e)]] * 2), **t)
    y = on(device, np.array([[0.25, 0.75]], dt))
    dy = on(device, np.array([[1.0, 0.0]], dt))
    # softmax backward: y * (dy - sum(dy * y)) = [0.25 * (1 - 0.25), 0.75 * (0 - 0.25)] = [0.1875, -0.1875]
    assert_close(npy(F.softmax_backward(y, dy)), np.array([[0.1875, -0.1875]]), **t)
    # log_softmax backward with y = log([1/4, 3/4]): dy - exp(y) * sum(dy) = [1 - 0.25, 0 - 0.75]
    assert_close(npy(F.log_softmax_backward(on(device, np.log(np.array([[0.25, 0.75]], dt))), dy)),
                 np.array([[0.75, -0.75]]), **t)
    # cross-entropy backward: dloss * (probs - onehot): 2 * ([0.25, 0.75] - [0, 1]) = [0.5, -0.5]
    g = F.softmax_cross_entropy_backward(y, np.array([1]), on(device, np.array([2.0], dt)))
    assert_close(npy(g), np.array([[0.5, -0.5]]), **t)


# ---- random shapes against the reference -----------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@given(n=st.integers(1, 9), k=st.integers(1, 300), mag=st.sampled_from([1.0, 30.0, 1e4]),
       dt=st.sampled_from([np.float32, np.float64]))
def test_matches_reference(device, n, k, mag, dt):
    rng = np.random.default_rng(n * 1000 + k)
    x = (rng.standard_normal((n, k)) * mag).astype(dt)
    dy = rng.standard_normal((n, k)).astype(dt)
    labels = rng.integers(0, k, n)
    dloss = rng.standard_normal(n).astype(dt)
    y = npy(F.softmax(on(device, x)))
    assert y.dtype == dt
    assert_close(y, ref.softmax(x), **tol(dt, "prob"), name="softmax")
    assert_close(npy(F.softmax_backward(on(device, y), on(device, dy))), ref.softmax_backward(y, dy),
                 **tol(dt, "log"), name="softmax_backward")
    ly = npy(F.log_softmax(on(device, x)))
    assert_close(ly, ref.log_softmax(x), **tol(dt, "log"), name="log_softmax")
    assert_close(npy(F.log_softmax_backward(on(device, ly), on(device, dy))), ref.log_softmax_backward(ly, dy),
                 **tol(dt, "log"), name="log_softmax_backward")
    loss, probs = F.softmax_cross_entropy(on(device, x), labels)
    rloss, rprobs = ref.softmax_cross_entropy(x, labels)
    assert_close(npy(loss), rloss, **tol(dt, "log"), name="loss")
    assert_close(npy(probs), rprobs, **tol(dt, "prob"), name="probs")
    g = F.softmax_cross_entropy_backward(probs, labels, on(device, dloss))
    assert_close(npy(g), ref.softmax_cross_entropy_backward(npy(probs), labels, dloss), **tol(dt, "log"),
                 name="dlogits")


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_stable_for_logits_of_magnitude_1e4(device, dt):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((16, 10)) * 1e4).astype(dt)
    x[0] = 1e4             # all equal: uniform
    x[1] = -1e4
    x[2, :5], x[2, 5:] = 1e4, -1e4
    x[3, 3] = 1e4 + 1      # one wins by e^1
    labels = rng.integers(0, 10, 16)
    labels[2] = 7          # the true class at -1e4 while others sit at +1e4: loss 2e4
    y, ly = npy(F.softmax(on(device, x))), npy(F.log_softmax(on(device, x)))
    loss, probs = (npy(a) for a in F.softmax_cross_entropy(on(device, x), labels))
    g = npy(F.softmax_cross_entropy_backward(on(device, probs), labels, on(device, np.ones(16, dt))))
    for name, a in (("softmax", y), ("log_softmax", ly), ("loss", loss), ("probs", probs), ("dlogits", g)):
        assert np.all(np.isfinite(a)), name
    # against float64 computed from the same (rounded) inputs
    assert_close(y, ref.softmax(x), **tol(dt, "prob"))
    assert_close(ly, ref.log_softmax(x), **tol(dt, "log"))
    assert_close(loss, ref.softmax_cross_entropy(x, labels)[0], **tol(dt, "log"))
    assert_close(y[0], np.full(10, 0.1), **tol(dt, "prob"))
    assert_close(loss[2:3], np.array([2e4 + np.log(5)]), **tol(dt, "log"))


def test_nonfinite_input_is_not_hidden():
    y = F.softmax(np.array([[1.0, np.nan, 2.0], [1.0, 2.0, 3.0]], np.float32))
    assert np.all(np.isnan(y[0])) and np.all(np.isfinite(y[1]))
    x = np.array([[0.0, -np.inf, 1.0]], np.float32)  # -inf logits are fine: probability 0
    assert_close(F.softmax(x), ref.softmax(x), rtol=4e-7, atol=0)
    assert F.softmax(x)[0, 1] == 0 and F.log_softmax(x)[0, 1] == -np.inf


# ---- gradients ------------------------------------------------------------------------------------

def test_gradients():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 7)) * 3
    labels = rng.integers(0, 7, 5)
    check_gradients(F.softmax, lambda dy, x: F.softmax_backward(F.softmax(x), dy), [x])
    check_gradients(F.log_softmax, lambda dy, x: F.log_softmax_backward(F.log_softmax(x), dy), [x])
    check_gradients(lambda x: F.softmax_cross_entropy(x, labels)[0],
                    lambda dl, x: F.softmax_cross_entropy_backward(F.softmax_cross_entropy(x, labels)[1], labels, dl),
                    [x])


# ---- torch ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("n,k,mag", [(1, 1, 1.0), (4, 10, 1.0), (32, 1000, 5.0), (7, 3, 1e4)])
def test_against_torch(device, dt, n, k, mag):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(k)
    x = (rng.standard_normal((n, k)) * mag).astype(dt)
    dy = rng.standard_normal((n, k)).astype(dt)
    labels = rng.integers(0, k, n)
    dloss = rng.standard_normal(n).astype(dt)
    # torch works in the same precision; each side is within tol of the exact result
    two = {key: 2 * v for key, v in tol(dt, "prob").items()}
    twol = {key: 2 * v for key, v in tol(dt, "log").items()}
    # the backward passes reduce a row of dy; torch sums in the working precision, whose error grows to
    # about eps * sum|dy| (we sum in double): allow that per row
    eps = np.finfo(dt).eps
    twob = dict(rtol=twol["rtol"], atol=twol["atol"] + 2 * eps * np.abs(dy).sum(axis=1, keepdims=True))
    for ours, ours_bwd, theirs in ((F.softmax, F.softmax_backward, torch.softmax),
                                   (F.log_softmax, F.log_softmax_backward, torch.log_softmax)):
        t = torch.tensor(x, requires_grad=True)
        ty = theirs(t, 1)
        ty.backward(torch.tensor(dy))
        y = npy(ours(on(device, x)))
        assert_close(y, ty.detach().numpy(), **(two if ours is F.softmax else twol))
        assert_close(npy(ours_bwd(on(device, y), on(device, dy))), t.grad.numpy(), **twob)
    t = torch.tensor(x, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(t, torch.tensor(labels), reduction="none")
    tl.backward(torch.tensor(dloss))
    loss, probs = F.softmax_cross_entropy(on(device, x), labels)
    assert_close(npy(loss), tl.detach().numpy(), **twol)
    assert_close(npy(F.softmax_cross_entropy_backward(probs, labels, on(device, dloss))), t.grad.numpy(), **twol)


# ---- threads --------------------------------------------------------------------------------------

def test_thread_count_independent():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((512, 100)).astype(np.float32)
    labels = rng.integers(0, 100, 512)
    old = convkit.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            convkit.set_num_threads(n)
            loss, probs = F.softmax_cross_entropy(x, labels)
            results.append((F.softmax(x), F.log_softmax(x), loss, probs,
                            F.softmax_cross_entropy_backward(probs, labels, np.ones(512, np.float32)),
                            F.softmax_backward(probs, x), F.log_softmax_backward(x, x)))
    finally:
        convkit.set_num_threads(old)
    for r in results[1:]:
        for a, b in zip(r, results[0]):
            np.testing.assert_array_equal(a, b)


# ---- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_bad_input_forward(name):
    fn = getattr(F, name)
    assert_raises(TypeError, rf"{name}: x must be a numpy array", fn, [[1.0]])
    assert_raises(TypeError, rf"{name}: x must have dtype float32 or float64, got int64", fn, np.ones((2, 3), np.int64))
    assert_raises(ValueError, rf"{name}: x must have shape \[N, K\], got \[3\]", fn, np.ones(3))
    assert_raises(ValueError, rf"{name}: x is empty", fn, np.ones((2, 0)))
    assert_raises(ValueError, rf"{name}: x must be C-contiguous", fn, np.ones((3, 4))[:, ::2])


@pytest.mark.parametrize("name", ["softmax_backward", "log_softmax_backward"])
def test_bad_input_backward(name):
    fn = getattr(F, name)
    y = np.full((2, 3), 1 / 3)
    assert_raises(ValueError, rf"{name}: dy must have shape \[2, 3\], got \[3, 2\]", fn, y, np.ones((3, 2)))
    assert_raises(TypeError, rf"{name}: dy has dtype float32 but y has float64", fn, y, np.ones((2, 3), np.float32))
    assert_raises(ValueError, rf"{name}: y must have shape \[N, K\], got \[2, 3, 1\]", fn, y[..., None], y)


def test_bad_input_cross_entropy():
    logits = np.zeros((2, 5), np.float32) + 0.5
    fn = F.softmax_cross_entropy
    assert_raises(ValueError, r"softmax_cross_entropy: labels must lie in \[0, 5\), got values in \[0, 5\]", fn,
                  logits, np.array([0, 5]))
    assert_raises(ValueError, r"labels must lie in \[0, 5\), got values in \[-1, 2\]", fn, logits, np.array([-1, 2]))
    assert_raises(ValueError, r"softmax_cross_entropy: labels must have shape \[2\] \(one per row of logits\), got \[3\]",
                  fn, logits, np.array([0, 1, 2]))
    assert_raises(TypeError, r"softmax_cross_entropy: labels must have dtype int64, got float64", fn, logits,
                  np.array([0.0, 1.0]))
    assert_raises(ValueError, r"softmax_cross_entropy: logits must have shape \[N, K\], got \[5\]", fn, logits[0],
                  np.array([0]))
    probs = np.full((2, 5), 0.2, np.float32)
    fb = F.softmax_cross_entropy_backward
    assert_raises(ValueError, r"softmax_cross_entropy_backward: labels must lie in \[0, 5\), got values in \[0, 9\]",
                  fb, probs, np.array([0, 9]), np.ones(2, np.float32))
    assert_raises(ValueError, r"softmax_cross_entropy_backward: dloss must have shape \[2\], got \[3\]", fb, probs,
                  np.array([0, 1]), np.ones(3, np.float32))
    assert_raises(TypeError, r"softmax_cross_entropy_backward: dloss has dtype float64 but probs has float32", fb,
                  probs, np.array([0, 1]), np.ones(2))


def test_bad_input_core():
    """The C++ entry points check on their own, labels included (the binding skips the Python checks)."""
    core = convkit._core
    logits = np.zeros((2, 5), np.float32) + 0.5
    assert_raises(ValueError, r"softmax_cross_entropy_forward: labels must lie in \[0, 5\), got labels\[1\] = 7",
                  core.softmax_cross_entropy_forward, logits, np.array([0, 7]))
    assert_raises(ValueError, r"softmax_cross_entropy_forward: labels must lie in \[0, 5\), got labels\[0\] = -3",
                  core.softmax_cross_entropy_forward, logits, np.array([-3, 0]))
    assert_raises(ValueError, r"softmax_cross_entropy_forward: labels must be int64, got float32",
                  core.softmax_cross_entropy_forward, logits, np.array([0, 1], np.float32))
    assert_raises(ValueError, r"softmax_cross_entropy_forward: labels must have shape \[2\], got \[3\]",
                  core.softmax_cross_entropy_forward, logits, np.array([0, 1, 2]))
    assert_raises(ValueError, r"softmax_cross_entropy_forward: labels must have shape \[N\], got \[2, 1\]",
                  core.softmax_cross_entropy_forward, logits, np.array([[0], [1]]))
    assert_raises(ValueError, r"softmax_cross_entropy_backward: labels must lie in \[0, 5\), got labels\[1\] = 5",
                  core.softmax_cross_entropy_backward, logits, np.array([0, 5]), np.ones(2, np.float32))
    assert_raises(ValueError, r"softmax_cross_entropy_backward: dloss must be float32, got float64",
                  core.softmax_cross_entropy_backward, logits, np.array([0, 1]), np.ones(2))
    assert_raises(ValueError, r"softmax_forward: x must have shape \[N, K\], got \[5\]", core.softmax_forward,
                  logits[0])
    assert_raises(ValueError, r"log_softmax_forward: x must be float32 or float64, got int64", core.log_softmax_forward,
                  np.ones((2, 2), np.int64))
    assert_raises(ValueError, r"softmax_backward: dy must be float32, got float64", core.softmax_backward, logits,
                  np.ones((2, 5)))
    assert_raises(ValueError, r"log_softmax_backward: dy must have shape \[2, 5\], got \[5, 2\]",
                  core.log_softmax_backward, logits, np.ones((5, 2), np.float32))
