"""The device-agnostic array layer: elementwise ops, reductions, fills, casts and the fused optimizer
updates (csrc/ops/elementwise.*) held to numpy and torch.optim on every device; DeviceArray's numpy
subset, conversions, DLPack and __cuda_array_interface__ on CUDA.

Tolerances: +, -, *, /, neg, abs, sign, sqrt, square, clip, maximum, minimum are correctly rounded (or
exact) on both devices and numpy, so they must agree exactly. exp, log and power are library calls
accurate to a few units in the last place (CUDA's documented maxima are 1-2 ulp for exp and log,
2 for pow), so they get 8 u relative. Reductions accumulate in double and round once: within
u |sum| + n u64 sum|x| of the exact sum. Optimizer steps are a handful of roundings per element.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convkit
from convkit import _core
from convkit import device as D
from conftest import DEVICES, on

U = {np.dtype(np.float32): 2.0 ** -24, np.dtype(np.float64): 2.0 ** -53}
DTS = [np.float32, np.float64]

SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 1e-30, -1e30, np.inf, -np.inf, np.nan]


def sample(dt, n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.array(SPECIAL), rng.standard_normal(n) * 4]).astype(dt)
    return x.reshape(-1, 2)


def same(got, expected, name=""):
    g, e = convkit.to_numpy(got), np.asarray(expected)
    assert g.dtype == e.dtype and g.shape == e.shape, f"{name}: {g.dtype}{g.shape} vs {e.dtype}{e.shape}"
    ok = (g == e) | (np.isnan(g) & np.isnan(e))
    assert ok.all(), f"{name}: first difference at {tuple(np.argwhere(~ok)[0])}: {g[~ok][0]!r} vs {e[~ok][0]!r}"
    # signed zeros too (numpy's abs(-0.) is 0., sign(-0.) is -0.)
    z = (e == 0) & ~np.isnan(e)
    assert (np.signbit(g[z]) == np.signbit(e[z])).all(), f"{name}: sign of zero differs"


def close_rel(got, expected, rel, name=""):
    g = convkit.to_numpy(got).astype(np.float64)
    e = np.asarray(expected).astype(np.float64)
    assert (np.isnan(g) == np.isnan(e)).all(), f"{name}: NaN positions differ"
    fin = np.isfinite(e)
    assert (g[~fin & ~np.isnan(e)] == e[~fin & ~np.isnan(e)]).all(), f"{name}: infinities differ"
    err = np.abs(g[fin] - e[fin])
    tol = rel * np.abs(e[fin]) + 1e-300
    assert (err <= tol).all(), f"{name}: max rel err {np.max(err / (np.abs(e[fin]) + 1e-300)):.3e} > {rel:.1e}"


def close_norm(got, expected, rel, name=""):
    """max |got - expected| <= rel * max |expected|: for results that are sums of terms of either sign
    (a momentum buffer near zero has no meaningful elementwise relative error)."""
    g = convkit.to_numpy(got).astype(np.float64)
    e = np.asarray(expected).astype(np.float64)
    err = float(np.max(np.abs(g - e)))
    assert err <= rel * float(np.max(np.abs(e))), f"{name}: max |diff| {err:.3e} > {rel:.1e} * max|ref|"


# ---- elementwise kernels on every device -----------------------------------------------------------------------

EXACT_UNARY = [("neg", np.negative), ("abs", np.abs), ("sign", np.sign), ("sqrt", np.sqrt), ("square", np.square)]


@pytest.mark.parametrize("dt", DTS)
@pytest.mark.parametrize("name,fn", EXACT_UNARY)
def test_exact_unary_matches_numpy(device, name, fn, dt):
    x = sample(dt)
    with np.errstate(invalid="ignore", over="ignore"):
        expected = fn(x)
    same(_core.unary_op(_core.UNARY_OPS[name], on(device, x)), expected, name)


@pytest.mark.parametrize("dt", DTS)
@pytest.mark.parametrize("name,fn", [("exp", np.exp), ("log", np.log)])
def test_transcendental_unary_matches_numpy(device, name, fn, dt):
    x = sample(dt)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        expected = fn(x)
    close_rel(_core.unary_op(_core.UNARY_OPS[name], on(device, x)), expected, 8 * U[np.dtype(dt)], name)


@pytest.mark.parametrize("dt", DTS)
@pytest.mark.parametrize("name,fn,a", [
    ("add", np.add, 1.25), ("subtract", np.subtract, -3.5), ("rsubtract", lambda x, a: a - x, 2.0),
    ("multiply", np.multiply, 0.1), ("divide", np.divide, 3.0), ("rdivide", lambda x, a: a / x, -7.0),
    ("maximum", np.maximum, 0.5), ("minimum", np.minimum, -0.25),
])
def test_scalar_ops_match_numpy(device, name, fn, a, dt):
    x = sample(dt)
    with np.errstate(all="ignore"):
        expected = fn(x, dt(a))  # numpy rounds the Python scalar to the array's dtype first (NEP 50)
    same(_core.unary_op(_core.UNARY_OPS[name], on(device, x), a), expected, name)


@pytest.mark.parametrize("dt", DTS)
def test_clip_and_power(device, dt):
    x = sample(dt)
    same(_core.unary_op(_core.UNARY_OPS["clip"], on(device, x), -1.5, 2.0), np.clip(x, dt(-1.5), dt(2.0)), "clip")
    with np.errstate(all="ignore"):
        close_rel(_core.unary_op(_core.UNARY_OPS["power"], on(device, np.abs(x)), 1.7), np.power(np.abs(x), dt(1.7)),
                  8 * U[np.dtype(dt)], "power")
    with pytest.raises(ValueError, match=r"clip: lower bound 2(\.0)? must be <= upper bound 1(\.0)?"):
        _core.unary_op(_core.UNARY_OPS["clip"], on(device, x), 2.0, 1.0)


@pytest.mark.parametrize("dt", DTS)
@pytest.mark.parametrize("name,fn", [("add", np.add), ("subtract", np.subtract), ("multiply", np.multiply),
                                     ("divide", np.divide), ("maximum", np.maximum), ("minimum", np.minimum)])
def test_binary_ops_match_numpy(device, name, fn, dt):
    x, y = sample(dt, seed=1), sample(dt, seed=2)[::-1].copy()
    with np.errstate(all="ignore"):
        expected = fn(x, y)
    same(_core.binary_op(_core.BINARY_OPS[name], on(device, x), on(device, y)), expected, name)
    # in place: out is the first input
    xd = on(device, x.copy())
    _core.binary_op(_core.BINARY_OPS[name], xd, on(device, y), out=xd)
    same(xd, expected, name + " in place")


@pytest.mark.parametrize("device", DEVICES)  # explicit: hypothesis does not mix with function-scoped fixtures
@pytest.mark.parametrize("dt", DTS)
@given(n=st.integers(1, 20000), seed=st.integers(0, 2**31))
def test_reductions(device, dt, n, seed):
    x = (np.random.default_rng(seed).standard_normal(n) * 10 + 3).astype(dt)
    xd = on(device, x)
    exact = math.fsum(x.astype(np.float64))
    u = U[np.dtype(dt)]
    for name, want in (("sum", exact), ("mean", exact / n)):
        r = _core.reduce_all(_core.REDUCE_OPS[name], xd)
        assert r.shape == () and r.dtype == dt
        got = float(convkit.to_numpy(r))
        scale = 1.0 if name == "sum" else 1.0 / n
        assert abs(got - want) <= u * abs(want) + n * 2.0 ** -52 * float(np.abs(x).sum()) * scale + 1e-300, name
    assert float(convkit.to_numpy(_core.reduce_all(_core.REDUCE_OPS["max"], xd))) == float(x.max())
    assert float(convkit.to_numpy(_core.reduce_all(_core.REDUCE_OPS["min"], xd))) == float(x.min())


def test_reduction_nan_empty_and_threads(device):
    x = np.arange(10, dtype=np.float32)
    x[7] = np.nan
    assert np.isnan(convkit.to_numpy(_core.reduce_all(_core.REDUCE_OPS["max"], on(device, x))))
    assert np.isnan(convkit.to_numpy(_core.reduce_all(_core.REDUCE_OPS["min"], on(device, x))))
    e = on(device, np.zeros(0, np.float64))
    assert float(convkit.to_numpy(_core.reduce_all(_core.REDUCE_OPS["sum"], e))) == 0.0
    with pytest.raises(ValueError, match=r"max: x is empty \(shape \[0\]\); max of no elements is undefined"):
        _core.reduce_all(_core.REDUCE_OPS["max"], e)
    # the CPU result does not depend on the thread count (fixed blocks, fixed order)
    y = np.random.default_rng(0).standard_normal(300_001).astype(np.float32)
    a = convkit.to_numpy(_core.reduce_all(0, on(device, y)))
    old = convkit.get_num_threads()
    try:
        convkit.set_num_threads(1)
        b = convkit.to_numpy(_core.reduce_all(0, on(device, y)))
    finally:
        convkit.set_num_threads(old)
    assert a == b


def test_fill_and_astype(device):
    x = on(device, np.zeros((3, 4), np.float32))
    _core.fill_(x, 2.5)
    assert (convkit.to_numpy(x) == 2.5).all()
    v = np.array([-3.7, -0.5, 0.0, 0.9, 254.6, 255.5, 300.0, np.nan, np.inf, -np.inf, 1e20, -1e20])
    # float -> int truncates toward zero and saturates, NaN -> 0 (documented in elementwise.h)
    same(_core.astype(on(device, v), np.int64),
         np.array([-3, 0, 0, 0, 254, 255, 300, 0, 2**63 - 1, -2**63, 2**63 - 1, -2**63], np.int64), "to int64")
    same(_core.astype(on(device, v), np.uint8), np.array([0, 0, 0, 0, 254, 255, 255, 0, 255, 0, 255, 0], np.uint8),
         "to uint8")
    i = np.array([-1, 0, 255, 256, 2**40 + 3], np.int64)
    same(_core.astype(on(device, i), np.uint8), i.astype(np.uint8), "int64 to uint8 wraps")
    same(_core.astype(on(device, i), np.float32), i.astype(np.float32), "int64 to float32")
    f = sample(np.float64)
    same(_core.astype(on(device, f), np.float32), f.astype(np.float32), "float64 to float32")
    with pytest.raises(ValueError, match=r"fill: value 1.5 is not an integer, but x has dtype int64"):
        _core.fill_(on(device, np.zeros(2, np.int64)), 1.5)
    with pytest.raises(TypeError, match=r"astype: unsupported dtype int16"):
        _core.astype(on(device, f), np.int16)


def test_elementwise_bad_input(device):
    a = on(device, np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"add: y must have the shape of x \[2, 3\], got \[3, 2\]"):
        _core.binary_op(0, a, on(device, np.ones((3, 2), np.float32)))
    with pytest.raises(ValueError, match=r"add: y has dtype float64 but x has float32; they must match"):
        _core.binary_op(0, a, on(device, np.ones((2, 3))))
    with pytest.raises(ValueError, match=r"neg: x must be float32 or float64, got int64"):
        _core.unary_op(0, on(device, np.ones(3, np.int64)))
    with pytest.raises(ValueError, match=r"unknown op code 99"):
        _core.unary_op(99, a)
    if device == "cpu":
        with pytest.raises(ValueError, match=r"out is read-only"):
            ro = np.ones((2, 3), np.float32)
            ro.flags.writeable = False
            _core.unary_op(0, a, out=ro)


# ---- fused optimizer updates against torch.optim ----------------------------------------------------------------

def torch_or_skip():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("dt", DTS)
@pytest.mark.parametrize("cfg", [
    dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
    dict(momentum=0.9, dampening=0.0, weight_decay=1e-3, nesterov=False),
    dict(momentum=0.9, dampening=0.0, weight_decay=5e-4, nesterov=True),
    dict(momentum=0.5, dampening=0.3, weight_decay=0.0, nesterov=False),
])
def test_sgd_update_matches_torch(device, cfg, dt):
    torch = torch_or_skip()
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal(257).astype(dt)
    grads = [rng.standard_normal(257).astype(dt) for _ in range(4)]
    tp = torch.tensor(p0.copy(), requires_grad=True)
    opt = torch.optim.SGD([tp], lr=0.05, **cfg)
    p = on(device, p0.copy())
    buf = on(device, np.zeros_like(p0)) if cfg["momentum"] else None
    for step, g in enumerate(grads):
        tp.grad = torch.tensor(g)
        opt.step()
        D.sgd_update(p, on(device, g), buf, lr=0.05, first_step=step == 0, **cfg)
    # four steps of a few roundings each, on values of order one
    close_norm(p, tp.detach().numpy(), 32 * U[np.dtype(dt)], "sgd param")
    if buf is not None:
        close_norm(buf, opt.state[tp]["momentum_buffer"].numpy(), 32 * U[np.dtype(dt)], "sgd momentum buffer")


@pytest.mark.parametrize("dt", DTS)
@pytest.mark.parametrize("decoupled,wd", [(False, 0.0), (False, 1e-2), (True, 1e-2)])
def test_adam_update_matches_torch(device, decoupled, wd, dt):
    torch = torch_or_skip()
    rng = np.random.default_rng(2)
    p0 = rng.standard_normal(301).astype(dt)
    grads = [rng.standard_normal(301).astype(dt) for _ in range(5)]
    tp = torch.tensor(p0.copy(), requires_grad=True)
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = cls([tp], lr=1e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=wd)
    p, m, v = on(device, p0.copy()), on(device, np.zeros_like(p0)), on(device, np.zeros_like(p0))
    for step, g in enumerate(grads, start=1):
        tp.grad = torch.tensor(g)
        opt.step()
        D.adam_update(p, on(device, g), m, v, lr=1e-2, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=wd, step=step,
                      decoupled=decoupled)
    # torch's lerp and our beta1 * m + (1 - beta1) * g round differently (a few u of max(|m|, |g|)
    # per step); the parameter sees that through m / sqrt(v) times lr
    close_norm(p, tp.detach().numpy(), 32 * U[np.dtype(dt)], "adam param")
    close_norm(m, opt.state[tp]["exp_avg"].numpy(), 32 * U[np.dtype(dt)], "adam exp_avg")
    close_norm(v, opt.state[tp]["exp_avg_sq"].numpy(), 32 * U[np.dtype(dt)], "adam exp_avg_sq")


def test_optimizer_bad_input(device):
    p = on(device, np.ones(4, np.float32))
    g = on(device, np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"sgd_update: momentum != 0 needs a momentum buffer"):
        D.sgd_update(p, g, None, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"sgd_update: nesterov needs momentum > 0 and dampening == 0"):
        D.sgd_update(p, g, on(device, np.zeros(4, np.float32)), lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"sgd_update: lr must be in \[0, 1e\+300\], got -0.1"):
        D.sgd_update(p, g, None, lr=-0.1)
    with pytest.raises(ValueError, match=r"sgd_update: grad must have the shape of param \[4\], got \[5\]"):
        D.sgd_update(p, on(device, np.ones(5, np.float32)), None, lr=0.1)
    z = on(device, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"adam_update: beta1 must be in \[0, 1\), got 1"):
        D.adam_update(p, g, z, z, lr=0.1, beta1=1.0, step=1)
    with pytest.raises(ValueError, match=r"adam_update: step must be >= 1"):
        D.adam_update(p, g, z, z, lr=0.1, step=0)
    with pytest.raises(TypeError, match=r"adam_update: step must be an int"):
        D.adam_update(p, g, z, z, lr=0.1, step=1.5)


# ---- device-agnostic helpers -----------------------------------------------------------------------------------------

def test_device_agnostic_functions(device):
    x = sample(np.float32)
    xd = on(device, x)
    for fn, ref in ((D.sign, np.sign), (D.sqrt, np.sqrt), (D.absolute, np.abs)):
        with np.errstate(invalid="ignore"):
            same(fn(xd), ref(x))
    same(D.clip(xd, -1.0, 1.0), np.clip(x, np.float32(-1), np.float32(1)))
    same(D.maximum(xd, 0.5), np.maximum(x, np.float32(0.5)))
    z = D.zeros_like(xd)
    assert D.device_of(z) == device and (convkit.to_numpy(z) == 0).all()
    assert float(D.amax(on(device, np.array([1.0, 5.0, 2.0])))) == 5.0
    assert float(D.sum(on(device, np.array([1.0, 5.0, 2.0])))) == 8.0
    f = D.full_like(on(device, np.zeros(3, np.float32)), 7)
    assert convkit.to_numpy(f).tolist() == [7.0, 7.0, 7.0]


def test_asarray_is_numpy_compatible_on_cpu():
    a = np.arange(6.0).reshape(2, 3)
    assert convkit.asarray(a) is a
    b = convkit.asarray(a, np.float32)
    assert b.dtype == np.float32 and b.flags.c_contiguous
    assert convkit.asarray(a, copy=True) is not a
    assert convkit.asarray([[1, 2]]).tolist() == [[1, 2]]
    assert convkit.asarray(a.T).flags.c_contiguous


# ---- DeviceArray itself (CUDA only) ----------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not D.cuda_available(), reason=f"no usable CUDA device: {D.cuda_unavailable_reason()}")


@needs_cuda
def test_device_array_round_trip_and_views():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    d = convkit.asarray(x, device="cuda")
    assert isinstance(d, convkit.DeviceArray) and d.device == "cuda" and d.shape == (2, 3, 4) and d.dtype == np.float32
    assert d.ndim == 3 and d.size == 24 and d.nbytes == 96 and len(d) == 2
    assert np.array_equal(d.to_numpy(), x) and np.array_equal(d.to("cpu"), x) and d.to("cuda") is d
    assert np.array_equal(convkit.asarray(d, device="cpu"), x)
    assert convkit.asarray(d) is d
    r = d.reshape(4, 6)
    assert r.shape == (4, 6) and r.data_ptr == d.data_ptr  # a view
    assert d.reshape((-1,)).shape == (24,) and d.ravel().shape == (24,)
    c = d.copy()
    assert c.data_ptr != d.data_ptr and np.array_equal(c.to_numpy(), x)
    assert d.astype(np.float64).dtype == np.float64 and d.astype(np.float32, copy=False) is d
    assert "shape=(2, 3, 4)" in repr(d) and "float32" in repr(d)
    assert convkit.asarray(x, np.float64, device="cuda").dtype == np.float64
    with pytest.raises(ValueError, match=r"reshape: cannot reshape 24 elements"):
        d.reshape(5, 5)
    with pytest.raises(ValueError, match="copy=False"):
        convkit.asarray(x, device="cuda", copy=False)


@needs_cuda
def test_device_array_arithmetic():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((5, 7)).astype(np.float32), rng.standard_normal((5, 7)).astype(np.float32) + 3
    da, db = convkit.asarray(a, device="cuda"), convkit.asarray(b, device="cuda")
    same(da + db, a + b)
    same(da - db, a - b)
    same(da * db, a * b)
    same(da / db, a / b)
    same(da + 2.5, a + np.float32(2.5))
    same(2.5 - da, np.float32(2.5) - a)
    same(3 * da, np.float32(3) * a)
    same(1 / db, np.float32(1) / b)
    same(-da, -a)
    same(abs(da), np.abs(a))
    same(da ** 2, a * a)
    same(da.clip(-0.5, 0.5), np.clip(a, np.float32(-0.5), np.float32(0.5)))
    same(da.maximum(db), np.maximum(a, b))
    same(da.minimum(0.0), np.minimum(a, np.float32(0)))
    same(da.sign(), np.sign(a))
    same(db.sqrt(), np.sqrt(b))
    c = da.copy()
    ptr = c.data_ptr
    c += db
    c -= 1.0
    c *= 2.0
    c /= db
    assert c.data_ptr == ptr  # in place
    same(c, ((a + b - np.float32(1)) * np.float32(2)) / b)
    s = da.sum()
    assert isinstance(s, convkit.DeviceArray) and s.shape == ()  # stays on the device
    assert abs(float(s) - float(a.astype(np.float64).sum())) < 1e-5
    assert abs(da.mean().item() - float(a.astype(np.float64).mean())) < 1e-6
    assert da.max().item() == float(a.max()) and da.min().item() == float(a.min())
    assert f"{da.max():.4f}" == f"{a.max():.4f}"
    assert convkit.zeros_like(da).to_numpy().sum() == 0
    assert da.fill_(1.5) is da and (da.to_numpy() == 1.5).all()


@needs_cuda
def test_device_array_errors():
    d = convkit.asarray(np.ones((2, 3), np.float32), device="cuda")
    with pytest.raises(ValueError, match=r"one operand is on cuda \(DeviceArray\) and the other on cpu"):
        d + np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"one operand is on cuda"):
        np.ones((2, 3), np.float32) + d  # numpy defers (__array_ufunc__ = None)
    with pytest.raises(TypeError, match=r"dtypes float32 and float64 differ"):
        d + convkit.asarray(np.ones((2, 3)), device="cuda")
    with pytest.raises(ValueError, match=r"shapes \[2, 3\] and \[3, 2\] differ \(DeviceArray does not broadcast\)"):
        d * convkit.asarray(np.ones((3, 2), np.float32), device="cuda")
    with pytest.raises(TypeError, match=r"needs float32 or float64, got int64"):
        convkit.asarray(np.ones(3, np.int64), device="cuda") + 1
    with pytest.raises(TypeError):
        d + "a"
    with pytest.raises(ValueError, match=r"item: can only convert an array of size 1"):
        d.item()
    with pytest.raises(ValueError, match="truth value"):
        bool(d)
    with pytest.raises(ValueError, match=r"device must be 'cpu' or 'cuda', got 'tpu'"):
        d.to("tpu")


@needs_cuda
def test_dlpack_with_torch():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    d = convkit.asarray(x, device="cuda")
    assert d.__dlpack_device__() == (2, 0)
    t = torch.from_dlpack(d)  # no copy: the same memory
    assert t.is_cuda and t.shape == (3, 4) and t.dtype == torch.float32 and t.data_ptr() == d.data_ptr
    t.mul_(2)
    torch.cuda.synchronize()
    assert np.array_equal(d.to_numpy(), 2 * x)
    ptr = d.data_ptr
    del d  # the capsule keeps the storage alive while torch holds it
    assert t.data_ptr() == ptr and t.sum().item() == 2 * x.sum()
    # and back: torch -> convkit without a copy, kept alive by torch's deleter
    u = torch.arange(6, dtype=torch.float64, device="cuda").reshape(2, 3)
    e = convkit.from_dlpack(u)
    assert e.data_ptr == u.data_ptr() and e.shape == (2, 3) and e.dtype == np.float64
    del u
    assert e.to_numpy().tolist() == [[0, 1, 2], [3, 4, 5]]
    # __cuda_array_interface__
    f = convkit.asarray(np.ones(5, np.float32), device="cuda")
    tf = torch.as_tensor(f, device="cuda")
    assert tf.data_ptr() == f.data_ptr
    with pytest.raises(ValueError, match="not C-contiguous"):
        convkit.from_dlpack(torch.ones(4, 4, device="cuda").t())


@needs_cuda
def test_dlpack_capsules():
    d = convkit.asarray(np.arange(6, dtype=np.float64), device="cuda")
    for kwargs in ({}, {"max_version": (1, 0)}, {"stream": -1}, {"copy": True}):
        cap = d.__dlpack__(**kwargs)
        e = convkit.DeviceArray._from_dlpack(cap)
        assert np.array_equal(e.to_numpy(), np.arange(6.0))
        assert (e.data_ptr == d.data_ptr) == (not kwargs.get("copy"))
        with pytest.raises(ValueError, match="not an unused DLPack capsule"):
            convkit.DeviceArray._from_dlpack(cap)  # consumed once only
    cap = d.__dlpack__()
    del cap  # never consumed: the capsule's destructor releases it
    with pytest.raises(BufferError, match="needs a copy"):
        d.__dlpack__(dl_device=(1, 0))
