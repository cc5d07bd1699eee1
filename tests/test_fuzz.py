"""Property-based fuzzing of every public op (convkit.functional) against the float64 references.

Each test draws a random problem (shapes, parameters, dtype, data seed and magnitude) with
hypothesis and holds the forward and every backward of the op to tests/reference/<op>.py. The
edges are drawn on purpose: batch 1, one channel, kernel equal to the (padded) input, stride larger
than the kernel, padding up to half the kernel, dilation, groups (depthwise included), ceil_mode,
ties in max pooling, single-class softmax rows, dropout p = 0.

Budget: the hypothesis profile chosen in tests/conftest.py, "ci" by default (25 examples per test,
derandomized, so CI time is bounded and failures reproduce); a longer run on demand:

    CONVKIT_HYPOTHESIS_PROFILE=long python -m pytest -q tests/test_fuzz.py    # 2000 per test

Tolerances are error bounds, not guesses. The references are computed in float64 on the very values
the kernel saw (inputs rounded to the kernel's dtype first), so the only difference is the kernel's
own rounding. For a sum of K products, recursive summation in precision u has error at most
K * u * sum|terms| (Higham, Accuracy and Stability, Thm 3.1); blocked and pairwise summation do
better. So every sum is checked against C * K * u * (the same sum over absolute values), computed
by the reference itself on |inputs|; C = 2 covers the final rounding of the stored result and of
the bias add. Selections (max pooling, ReLU, dropout masks) are exact.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convkit
import convkit.functional as F
from convkit.testing import assert_close
from conftest import DEVICES, on
from reference import activation as ref_act
from reference import conv2d as ref_conv
from reference import linear as ref_lin
from reference import lrn as ref_lrn
from reference import max_pool2d as ref_pool
from reference import softmax as ref_sm

DTYPES = [np.float32, np.float64]
pytestmark = pytest.mark.parametrize("device", DEVICES)


def unit_roundoff(dt) -> float:
    return float(np.finfo(dt).eps) / 2


def data(seed: int, shape, dt, scale: float) -> np.ndarray:
    """Random normal data at a drawn magnitude, never all zeros, rounded to dt."""
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dt)


def host(a) -> np.ndarray:
    return convkit.to_numpy(a)


def check_sum(got, ref, abs_ref, k: int, dt, name: str, c: float = 2.0) -> None:
    """|got - ref| <= c * k * u * abs_ref (+ the smallest normal, for results that underflow)."""
    bound = c * max(k, 1) * unit_roundoff(dt) * np.asarray(abs_ref, np.float64) + np.finfo(dt).tiny
    assert_close(host(got), ref, rtol=0.0, atol=bound, name=name)


seeds = st.integers(0, 2**32 - 1)
scales = st.sampled_from([1e-3, 1.0, 1e3])


# ---- conv2d --------------------------------------------------------------------------------------

@st.composite
def conv_problems(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.sampled_from([1, 1, 2, 3]))             # cg = 1 with groups > 1: depthwise
    ocg = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 6)), draw(st.integers(1, 6))   # stride may exceed the kernel
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))  # up to half the kernel
    ekh, ekw = dh * (kh - 1) + 1, dw * (kw - 1) + 1      # dilated kernel extent
    if draw(st.booleans()):                              # kernel exactly covers the padded input
        ph, pw = min(ph, (ekh - 1) // 2), min(pw, (ekw - 1) // 2)
        h, w = ekh - 2 * ph, ekw - 2 * pw                # output 1x1 whatever the stride
    else:
        h = draw(st.integers(max(1, ekh - 2 * ph), 14))
        w = draw(st.integers(max(1, ekw - 2 * pw), 14))
    n = draw(st.sampled_from([1, 1, 2, 3]))
    return dict(x_shape=(n, cg * groups, h, w), w_shape=(ocg * groups, cg, kh, kw), stride=(sh, sw),
                padding=(ph, pw), dilation=(dh, dw), groups=groups, bias=draw(st.booleans()),
                dt=draw(st.sampled_from(DTYPES)), seed=draw(seeds), scale=draw(scales))


@given(pr=conv_problems())
def test_conv2d(device, pr):
    dt, s = pr["dt"], pr["scale"]
    geo = dict(stride=pr["stride"], padding=pr["padding"], dilation=pr["dilation"], groups=pr["groups"])
    x = data(pr["seed"], pr["x_shape"], dt, s)
    w = data(pr["seed"] + 1, pr["w_shape"], dt, 1.0)
    b = data(pr["seed"] + 2, pr["w_shape"][0], dt, s) if pr["bias"] else None
    k = pr["w_shape"][1] * pr["w_shape"][2] * pr["w_shape"][3]   # terms per output

    y = F.conv2d(on(device, x), on(device, w), None if b is None else on(device, b), **geo)
    ab = None if b is None else np.abs(b)
    check_sum(y, ref_conv.conv2d(x, w, b, **geo), ref_conv.conv2d(np.abs(x), np.abs(w), ab, **geo), k + 1, dt,
              "conv2d forward")

    dy = data(pr["seed"] + 3, host(y).shape, dt, 1.0)
    dx = F.conv2d_backward_data(on(device, dy), on(device, w), pr["x_shape"], **geo)
    # each input pixel receives at most OC/groups * KH * KW terms
    kd = pr["w_shape"][0] // pr["groups"] * pr["w_shape"][2] * pr["w_shape"][3]
    check_sum(dx, ref_conv.conv2d_backward_data(dy, w, pr["x_shape"], **geo),
              ref_conv.conv2d_backward_data(np.abs(dy), np.abs(w), pr["x_shape"], **geo), kd, dt, "conv2d dx")

    dw = F.conv2d_backward_weight(on(device, x), on(device, dy), pr["w_shape"], **geo)
    kw_ = dy.shape[0] * dy.shape[2] * dy.shape[3]                # N * OH * OW terms per weight
    check_sum(dw, ref_conv.conv2d_backward_weight(x, dy, pr["w_shape"], **geo),
              ref_conv.conv2d_backward_weight(np.abs(x), np.abs(dy), pr["w_shape"], **geo), kw_, dt, "conv2d dw")

    db = F.conv2d_backward_bias(on(device, dy))
    check_sum(db, ref_conv.conv2d_backward_bias(dy), ref_conv.conv2d_backward_bias(np.abs(dy)), kw_, dt,
              "conv2d db")


# ---- max_pool2d ----------------------------------------------------------------------------------

@st.composite
def pool_problems(draw):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 7)), draw(st.integers(1, 7))   # stride may exceed the kernel
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 15))            # kernel as large as the padded input
    w = draw(st.integers(max(1, kw - 2 * pw), 15))
    return dict(x_shape=(draw(st.sampled_from([1, 1, 2, 3])), draw(st.sampled_from([1, 1, 2, 5])), h, w),
                kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw), ceil_mode=draw(st.booleans()),
                ties=draw(st.booleans()), dt=draw(st.sampled_from(DTYPES)), seed=draw(seeds))


@given(pr=pool_problems())
def test_max_pool2d(device, pr):
    rng = np.random.default_rng(pr["seed"])
    if pr["ties"]:   # few distinct values: the tie rule (first in row-major order wins) is exercised
        x = rng.integers(-3, 4, pr["x_shape"]).astype(pr["dt"])
    else:
        x = rng.standard_normal(pr["x_shape"]).astype(pr["dt"])
    args = (pr["kernel"], pr["stride"], pr["padding"], pr["ceil_mode"])
    y, idx = F.max_pool2d(on(device, x), *args, return_indices=True)
    ry, ridx = ref_pool.max_pool2d(x, *args)
    assert_close(host(y), ry, rtol=0, atol=0, name="max_pool2d forward")   # a selection: exact
    np.testing.assert_array_equal(host(idx), ridx)
    dy = data(pr["seed"] + 1, ry.shape, pr["dt"], 1.0)
    dx = F.max_pool2d_backward(on(device, dy), idx, pr["x_shape"], *args)
    # overlapping windows add up: at most ceil(k/s)^2 terms land on one input pixel
    terms = -(-pr["kernel"][0] // pr["stride"][0]) * -(-pr["kernel"][1] // pr["stride"][1])
    check_sum(dx, ref_pool.max_pool2d_backward(dy, ridx, pr["x_shape"]),
              ref_pool.max_pool2d_backward(np.abs(dy), ridx, pr["x_shape"]), terms, pr["dt"], "max_pool2d dx")


# ---- LRN -----------------------------------------------------------------------------------------

@st.composite
def lrn_problems(draw):
    return dict(x_shape=(draw(st.sampled_from([1, 1, 2])), draw(st.integers(1, 12)), draw(st.integers(1, 9)),
                         draw(st.integers(1, 9))),
                size=draw(st.integers(1, 9)), alpha=draw(st.sampled_from([1e-4, 1e-2, 0.5, 2.0])),
                beta=draw(st.sampled_from([0.0, 0.5, 0.75, 1.0, 1.3])), k=draw(st.sampled_from([0.5, 1.0, 2.0])),
                dt=draw(st.sampled_from(DTYPES)), seed=draw(seeds), scale=draw(st.sampled_from([1e-2, 1.0, 10.0])))


@given(pr=lrn_problems())
def test_lrn(device, pr):
    dt = pr["dt"]
    prm = (pr["size"], pr["alpha"], pr["beta"], pr["k"])
    x = data(pr["seed"], pr["x_shape"], dt, pr["scale"])
    y, scale = F.local_response_norm(on(device, x), *prm, return_scale=True)
    ry, rs = ref_lrn.lrn(x, *prm)
    u = unit_roundoff(dt)
    # scale: a sum of `size` squares plus k, all positive (the sum is its own absolute sum);
    # y = x * scale^-beta: the pow adds a few ulps on top of beta times scale's relative error.
    check_sum(scale, rs, rs, pr["size"] + 2, dt, "lrn scale")
    assert_close(host(y), ry, rtol=(pr["size"] + 2) * u * (4 + 2 * pr["beta"]), atol=np.finfo(dt).tiny,
                 name="lrn forward")

    dy = data(pr["seed"] + 1, x.shape, dt, 1.0)
    yh, sh = host(y), host(scale)
    dx = F.local_response_norm_backward(on(device, x), y, scale, on(device, dy), *prm)
    # the reference on the kernel's own y and scale; the bound sums the absolute values of both
    # terms (|dy| s^-b + 2ab/n |x| sum |dy y / s|) = 2 |dy| s^-b - ref(|x|, |y|, s, |dy|)
    r = ref_lrn.lrn_backward(x, yh, sh, dy, *prm)
    absterms = 2 * np.abs(dy) * sh.astype(np.float64) ** -pr["beta"] \
        - ref_lrn.lrn_backward(np.abs(x), np.abs(yh), sh, np.abs(dy), *prm)
    check_sum(dx, r, absterms, pr["size"] + 2, dt, "lrn dx", c=8.0)   # a pow and a division per term


# ---- linear --------------------------------------------------------------------------------------

@st.composite
def linear_problems(draw):
    return dict(n=draw(st.sampled_from([1, 1, 2, 5, 17])), i=draw(st.integers(1, 70)), o=draw(st.integers(1, 40)),
                bias=draw(st.booleans()), dt=draw(st.sampled_from(DTYPES)), seed=draw(seeds), scale=draw(scales))


@given(pr=linear_problems())
def test_linear(device, pr):
    dt, n, i, o = pr["dt"], pr["n"], pr["i"], pr["o"]
    x, w = data(pr["seed"], (n, i), dt, pr["scale"]), data(pr["seed"] + 1, (o, i), dt, 1.0)
    b = data(pr["seed"] + 2, (o,), dt, pr["scale"]) if pr["bias"] else None
    y = F.linear(on(device, x), on(device, w), None if b is None else on(device, b))
    check_sum(y, ref_lin.linear(x, w, b), ref_lin.linear(np.abs(x), np.abs(w), None if b is None else np.abs(b)),
              i + 1, dt, "linear forward")
    dy = data(pr["seed"] + 3, (n, o), dt, 1.0)
    check_sum(F.linear_backward_data(on(device, dy), on(device, w)), ref_lin.linear_backward_data(dy, w),
              ref_lin.linear_backward_data(np.abs(dy), np.abs(w)), o, dt, "linear dx")
    check_sum(F.linear_backward_weight(on(device, x), on(device, dy)), ref_lin.linear_backward_weight(x, dy),
              ref_lin.linear_backward_weight(np.abs(x), np.abs(dy)), n, dt, "linear dw")
    check_sum(F.linear_backward_bias(on(device, dy)), ref_lin.linear_backward_bias(dy),
              ref_lin.linear_backward_bias(np.abs(dy)), n, dt, "linear db")


# ---- relu, dropout -------------------------------------------------------------------------------

shapes = st.lists(st.integers(1, 9), min_size=1, max_size=5)


@given(shape=shapes, dt=st.sampled_from(DTYPES), seed=seeds, scale=scales)
def test_relu(device, shape, dt, seed, scale):
    x = data(seed, shape, dt, scale)
    y = F.relu(on(device, x))
    assert_close(host(y), ref_act.relu(x), rtol=0, atol=0, name="relu forward")
    dy = data(seed + 1, shape, dt, 1.0)
    assert_close(host(F.relu_backward(on(device, dy), y)), ref_act.relu_backward(dy, host(y)), rtol=0, atol=0,
                 name="relu dx")


@given(shape=shapes, dt=st.sampled_from(DTYPES), seed=seeds, p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 0.999]),
       mseed=st.integers(0, 2**64 - 1))
def test_dropout(device, shape, dt, seed, p, mseed):
    x = data(seed, shape, dt, 1.0)
    y, mask = F.dropout(on(device, x), p, mseed)
    ry, rmask = ref_act.dropout(x, p, mseed)
    np.testing.assert_array_equal(host(mask), rmask)      # the mask is a pure function of (seed, index)
    u = unit_roundoff(dt)
    assert_close(host(y), ry, rtol=2 * u, atol=0, name="dropout forward")   # one scaling, rounded once or twice
    dy = data(seed + 1, shape, dt, 1.0)
    dx = F.dropout_backward(on(device, dy), mask, p)
    assert_close(host(dx), np.where(rmask == 1, dy.astype(np.float64) / (1 - p), 0.0), rtol=2 * u, atol=0,
                 name="dropout dx")


# ---- softmax family ------------------------------------------------------------------------------

@st.composite
def rows(draw):
    return dict(n=draw(st.sampled_from([1, 1, 2, 7])), k=draw(st.sampled_from([1, 2, 3, 10, 33, 1000])),
                dt=draw(st.sampled_from(DTYPES)), seed=draw(seeds), scale=draw(st.sampled_from([1e-3, 1.0, 30.0, 1e4])))


@given(pr=rows())
def test_softmax_family(device, pr):
    dt, n, k = pr["dt"], pr["n"], pr["k"]
    u = unit_roundoff(dt)
    x = data(pr["seed"], (n, k), dt, pr["scale"])
    # softmax: exp of the shifted row (relative error ~2u each), a sum of k positives, one division
    y = F.softmax(on(device, x))
    ry = ref_sm.softmax(x)
    assert_close(host(y), ry, rtol=(k + 8) * u * 4, atol=np.finfo(dt).tiny, name="softmax forward")
    # log_softmax = z - log(sum exp z), z = x - max: absolute error ~ u * (|z| + k) (a rounded z, a
    # rounded logsumexp whose argument is in [1, k])
    ly = F.log_softmax(on(device, x))
    rly = ref_sm.log_softmax(x)
    z = np.abs(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    check_sum(ly, rly, z + np.log(k) + 1, k + 8, dt, "log_softmax forward")

    dy = data(pr["seed"] + 1, (n, k), dt, 1.0)
    yh, lyh = host(y), host(ly)
    # y * (dy - sum(dy * y)): a k-term sum of |dy y|, bounded by |y| (|dy| + sum |dy y|)
    absb = np.abs(yh) * (np.abs(dy) + (np.abs(dy) * np.abs(yh)).sum(axis=1, keepdims=True))
    check_sum(F.softmax_backward(y, on(device, dy)), ref_sm.softmax_backward(yh, dy), absb, k + 4, dt,
              "softmax dx")
    # dy - exp(y) * sum(dy)
    absb = np.abs(dy) + np.exp(lyh.astype(np.float64)) * np.abs(dy).sum(axis=1, keepdims=True)
    check_sum(F.log_softmax_backward(ly, on(device, dy)), ref_sm.log_softmax_backward(lyh, dy), absb, k + 8, dt,
              "log_softmax dx")

    labels = np.random.default_rng(pr["seed"] + 2).integers(0, k, n)
    loss, probs = F.softmax_cross_entropy(on(device, x), labels)
    rloss, rprobs = ref_sm.softmax_cross_entropy(x, labels)
    check_sum(loss, rloss, z.max(axis=1) + np.log(k) + 1, k + 8, dt, "cross-entropy loss")
    assert_close(host(probs), rprobs, rtol=(k + 8) * u * 4, atol=np.finfo(dt).tiny, name="cross-entropy probs")
    dloss = data(pr["seed"] + 3, (n,), dt, 1.0)
    ph = host(probs)
    dl = F.softmax_cross_entropy_backward(probs, labels, on(device, dloss))
    check_sum(dl, ref_sm.softmax_cross_entropy_backward(ph, labels, dloss),
              np.abs(dloss)[:, None].astype(np.float64) * (np.abs(ph) + 1), 4, dt, "cross-entropy dlogits")
