"""max_pool2d against the float64 reference, hand-worked cases, gradients, torch, threads and bad input.

Max pooling only selects elements, so every implementation must return the reference's values and
indices exactly (tolerance 0), in float32 and float64, whatever the instruction set or thread count.
"""
import ctypes
import mmap
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
from reference import max_pool2d as ref

HERE = os.path.dirname(os.path.abspath(__file__))
PROT_NONE = 0

# 0..15 in an order with no ties
X4 = np.array([[4, 9, 2, 14],
               [12, 0, 7, 3],
               [1, 15, 6, 10],
               [8, 5, 13, 11]], np.float64).reshape(1, 1, 4, 4)


def pair(v):
    return v if isinstance(v, tuple) else (v, v)


def pool(x, k, s, p=0, ceil_mode=False):
    y, idx = F.max_pool2d(x, k, s, p, ceil_mode, return_indices=True)
    return convkit.to_numpy(y), convkit.to_numpy(idx)


# ---- hand-worked ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_hand_worked_2x2_stride2(device, dt):
    # windows {4, 9, 12, 0} -> 12 at (1, 0) = 4;  {2, 14, 7, 3} -> 14 at (0, 3) = 3
    #         {1, 15, 8, 5} -> 15 at (2, 1) = 9;  {6, 10, 13, 11} -> 13 at (3, 2) = 14
    y, idx = pool(on(device, X4.astype(dt)), 2, 2)
    assert y.dtype == dt and idx.dtype == np.int64
    assert y[0, 0].tolist() == [[12, 14], [15, 13]]
    assert idx[0, 0].tolist() == [[4, 3], [9, 14]]


def test_hand_worked_3x3_stride2_ceil_mode(device):
    # floor: (4 - 3) // 2 + 1 = 1 window; ceil: ceil(1 / 2) + 1 = 2, and the last window starts at
    # row/col 2 < 4 so it stays. Windows (clipped to the input):
    #   rows 0-2, cols 0-2: max 15 at (2, 1) = 9     rows 0-2, cols 2-3: max 14 at (0, 3) = 3
    #   rows 2-3, cols 0-2: max 15 at (2, 1) = 9     rows 2-3, cols 2-3: max 13 at (3, 2) = 14
    x = on(device, X4)
    y, idx = pool(x, 3, 2, 0, ceil_mode=True)
    assert y[0, 0].tolist() == [[15, 14], [15, 13]]
    assert idx[0, 0].tolist() == [[9, 3], [9, 14]]
    y, idx = pool(x, 3, 2, 0, ceil_mode=False)
    assert y[0, 0].tolist() == [[15]] and idx[0, 0].tolist() == [[9]]


def test_hand_worked_padding_and_overlapping_backward(device):
    # 3x3 / 2, padding 1: (4 + 2 - 3) // 2 + 1 = 2 windows per axis, starting at -1 and 1
    #   rows -1..1, cols -1..1: {4, 9, 12, 0}                  -> 12 at 4
    #   rows -1..1, cols  1..3: {9, 2, 14, 0, 7, 3}            -> 14 at 3
    #   rows  1..3, cols -1..1: {12, 0, 1, 15, 8, 5}           -> 15 at 9
    #   rows  1..3, cols  1..3: {0, 7, 3, 15, 6, 10, 5, 13, 11} -> 15 at 9 (the windows overlap)
    x = on(device, X4)
    y, idx = pool(x, 3, 2, 1)
    assert y[0, 0].tolist() == [[12, 14], [15, 15]]
    assert idx[0, 0].tolist() == [[4, 3], [9, 9]]
    # backward: dy [[1, 2], [3, 4]] -> dx[4] = 1, dx[3] = 2, dx[9] = 3 + 4 = 7, zero elsewhere
    dy = on(device, np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    dx = convkit.to_numpy(F.max_pool2d_backward(dy, on(device, idx), (1, 1, 4, 4), 3, 2, 1))
    expected = np.zeros(16)
    expected[[4, 3, 9]] = [1, 2, 7]
    assert dx.reshape(-1).tolist() == expected.tolist()


def test_ties_take_the_first_in_row_major_order(device):
    # all equal: every window answers its top-left element
    y, idx = pool(on(device, np.ones((1, 1, 4, 4), np.float32)), 2, 2)
    assert idx[0, 0].tolist() == [[0, 2], [8, 10]]
    # [[0, 5], [5, 0]]: the two 5s tie; row-major order reaches (0, 1) = 1 before (1, 0) = 2
    y, idx = pool(on(device, np.array([[[[0, 5], [5, 0]]]], np.float32)), 2, 2)
    assert y.item() == 5 and idx.item() == 1
    # all -inf: the max is -inf at the window's first real element (padding is never chosen)
    y, idx = pool(on(device, np.full((1, 1, 3, 3), -np.inf, np.float32)), 3, 2, 1)
    assert np.all(y == -np.inf) and idx[0, 0].tolist() == [[0, 1], [3, 4]]


# ---- random shapes against the reference -----------------------------------------------------------

@st.composite
def pool_case(draw):
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 6)), draw(st.integers(1, 6))  # includes stride > kernel
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    ceil_mode = draw(st.booleans())
    h = draw(st.integers(max(1, kh - 2 * ph), 12))
    w = draw(st.integers(max(1, kw - 2 * pw), 45))  # wide rows reach the vectorized row pass
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    return (n, c, h, w), (kh, kw), (sh, sw), (ph, pw), ceil_mode


@pytest.mark.parametrize("device", DEVICES)
@given(case=pool_case(), dt=st.sampled_from([np.float32, np.float64]), ties=st.booleans())
def test_matches_reference(device, case, dt, ties):
    shape, k, s, p, ceil_mode = case
    rng = np.random.default_rng(sum(shape) + sum(k))
    # ties: small integers, so most windows hold several maxima; else distinct normals
    x = (rng.integers(-2, 3, shape) if ties else rng.standard_normal(shape)).astype(dt)
    y, idx = pool(on(device, x), k, s, p, ceil_mode)
    ry, ridx = ref.max_pool2d(x, k, s, p, ceil_mode)
    assert y.dtype == dt
    np.testing.assert_array_equal(idx, ridx)
    assert_close(y, ry, rtol=0, atol=0)  # pooling selects: exact
    dy = rng.standard_normal(y.shape).astype(dt)
    dx = F.max_pool2d_backward(on(device, dy), on(device, idx), shape, k, s, p, ceil_mode)
    # dx sums at most kh*kw values of dy per element: float rounding only
    assert_close(dx, ref.max_pool2d_backward(dy, ridx, shape), rtol=1e-6 if dt == np.float32 else 1e-15,
                 atol=1e-6 if dt == np.float32 else 1e-15)


@pytest.mark.parametrize("shape,k,s,p,ceil_mode", [
    ((2, 3, 55, 55), 3, 2, 0, False),   # AlexNet pool1 shape, the vectorized stride-2 path
    ((2, 4, 28, 28), 2, 2, 0, False),   # LeNet
    ((1, 2, 27, 41), 3, 2, 1, True),
    ((1, 2, 13, 50), (2, 4), (1, 3), (1, 2), True),
    ((1, 1, 9, 67), (3, 5), 1, (1, 2), False),
])
def test_matches_reference_larger(shape, k, s, p, ceil_mode):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    x.reshape(-1)[rng.choice(x.size, 20, replace=False)] = x.max()  # a few ties of the global max
    y, idx = pool(x, k, s, p, ceil_mode)
    ry, ridx = ref.max_pool2d(x, pair(k), pair(s), pair(p), ceil_mode)
    np.testing.assert_array_equal(idx, ridx)
    assert_close(y, ry, rtol=0, atol=0)


def test_out_size_matches_python_and_reference():
    for size in range(1, 12):
        for k in range(1, 6):
            for s in range(1, 5):
                for p in range(0, k // 2 + 1):
                    for c in (False, True):
                        want = ref.out_size(size, k, s, p, c)
                        assert F.pool_out_size(size, k, s, p, c) == want
                        if want >= 1:
                            assert convkit._core.pool2d_out_size(size, k, s, p, c) == want
                        else:
                            assert_raises(ValueError, r"pool2d_out_size: output size", convkit._core.pool2d_out_size,
                                          size, k, s, p, c)


def test_nan_propagates(device):
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 1, 0] = np.nan
    y, idx = pool(on(device, x), 2, 2)
    # the window {0, nan, nan, 5}: NaN, at its last NaN in row-major order (PyTorch's rule)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 4
    assert y[0, 0].reshape(-1)[1:].tolist() == [7, 13, 15]


# ---- gradients ------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,k,s,p,ceil_mode", [
    ((2, 3, 7, 9), 3, 2, 1, False),    # overlapping windows
    ((1, 2, 8, 7), 3, 2, 0, True),     # ceil mode
    ((2, 1, 6, 6), 2, 2, 0, False),
    ((1, 2, 9, 10), (3, 2), (1, 3), (1, 1), True),
])
def test_gradient(shape, k, s, p, ceil_mode):
    rng = np.random.default_rng(7)
    # a permutation of distinct values 0.1 apart: no ties, so +-1e-6 never changes an argmax
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.1
    def fwd(x):
        return F.max_pool2d(x, k, s, p, ceil_mode)

    def bwd(dy, x):
        return F.max_pool2d_backward(dy, F.max_pool2d(x, k, s, p, ceil_mode, return_indices=True)[1], x.shape,
                                     k, s, p, ceil_mode)
    # the max is piecewise linear: central differences are exact up to rounding
    check_gradients(fwd, bwd, [x], rtol=1e-7, atol=1e-9)


# ---- torch ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("shape,k,s,p,ceil_mode", [
    ((2, 3, 55, 55), 3, 2, 0, False),
    ((2, 3, 13, 13), 3, 2, 1, True),
    ((1, 4, 10, 11), 2, 2, 0, True),
    ((3, 2, 9, 14), (3, 2), (2, 3), (1, 1), True),
    ((1, 1, 5, 5), 4, 3, 2, True),
    ((2, 2, 6, 6), 2, 3, 0, False),     # stride > kernel
    ((1, 2, 2, 2), 3, 2, 0, True),      # kernel larger than the input (ceil mode)
])
def test_against_torch(dt, shape, k, s, p, ceil_mode, device):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(dt)
    t = torch.tensor(x, requires_grad=True)
    ty, tidx = torch.nn.functional.max_pool2d(t, k, s, p, ceil_mode=ceil_mode, return_indices=True)
    y, idx = pool(on(device, x), k, s, p, ceil_mode)
    assert_close(y, ty.detach().numpy(), rtol=0, atol=0)
    np.testing.assert_array_equal(idx, tidx.numpy())
    dy = rng.standard_normal(y.shape).astype(dt)
    ty.backward(torch.tensor(dy))
    dx = F.max_pool2d_backward(on(device, dy), on(device, idx), shape, k, s, p, ceil_mode)
    # both add the same dy values at each index, possibly in another order
    assert_close(dx, t.grad.numpy(), rtol=1e-6 if dt == np.float32 else 1e-15, atol=1e-6 if dt == np.float32 else 1e-15)


@pytest.mark.parametrize("shape,k,s,p,ceil_mode", [
    ((4, 16, 10, 10), 2, 2, 0, False),  # LeNet pool2: 5 output columns, flat row pass, narrow column pass
    ((2, 3, 7, 6), 2, 2, 0, False),     # flat row pass over the 6 rows used of 7, 3 columns (spill stores)
    ((3, 2, 5, 4), 2, 2, 0, True),      # ceil mode: a last window of one row
    ((2, 2, 6, 6), 2, 2, (1, 0), False),  # row padding: the flat row pass still applies
    ((1, 2, 2, 4), 2, 2, 0, False),     # 4 row results: too few for the flat pass
    ((2, 1, 3, 14), 2, 2, 0, False),    # 7 columns, a single output row: the local-copy store
    ((2, 3, 9, 13), 3, 2, 1, True),     # edge windows on both sides of a narrow row
    ((2, 3, 11, 7), (2, 3), (1, 2), (1, 1), False),
])
def test_narrow_planes_ties_and_nan_against_reference(shape, k, s, p, ceil_mode):
    # planes with fewer than 8 output columns take the scalar (select, not branch) or the flat and
    # masked passes: ties of small integers and scattered NaNs must still give the reference's values
    # and indices
    rng = np.random.default_rng(17)
    x = rng.integers(-2, 3, shape).astype(np.float32)
    x.reshape(-1)[rng.choice(x.size, x.size // 20, replace=False)] = np.nan
    y, idx = pool(x, k, s, p, ceil_mode)
    ry, ridx = ref.max_pool2d(x, pair(k), pair(s), pair(p), ceil_mode)
    np.testing.assert_array_equal(idx, ridx)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ry))
    np.testing.assert_array_equal(y[~np.isnan(y)], ry[~np.isnan(ry)])


def test_nan_against_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 19, 37)).astype(np.float32)
    x.reshape(-1)[rng.choice(x.size, 60, replace=False)] = np.nan
    y, idx = pool(x, 3, 2, 1, True)
    ty, tidx = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, 1, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ty.numpy()))
    np.testing.assert_array_equal(idx, tidx.numpy())


# ---- threads and instruction sets -------------------------------------------------------------------

def test_thread_count_independent():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 8, 33, 35)).astype(np.float32)
    old = convkit.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            convkit.set_num_threads(n)
            y, idx = pool(x, 3, 2, 1, True)
            dx = F.max_pool2d_backward(y, idx, x.shape, 3, 2, 1, True)
            results.append((y, idx, dx))
    finally:
        convkit.set_num_threads(old)
    for y, idx, dx in results[1:]:
        np.testing.assert_array_equal(y, results[0][0])
        np.testing.assert_array_equal(idx, results[0][1])
        np.testing.assert_array_equal(dx, results[0][2])


GENERIC_SCRIPT = """
import numpy as np, convkit, convkit.functional as F
from reference import max_pool2d as ref
assert convkit._core.cpu_isa() == "generic", convkit._core.cpu_isa()
rng = np.random.default_rng(0)
for dt in (np.float32, np.float64):
    for shape, k, s, p, c in [((2, 3, 23, 41), (3, 3), (2, 2), (1, 1), True), ((1, 2, 28, 28), (2, 2), (2, 2), (0, 0), False),
                              ((1, 2, 9, 30), (2, 3), (1, 1), (1, 1), False)]:
        x = rng.integers(-3, 4, shape).astype(dt)
        y, idx = F.max_pool2d(x, k, s, p, c, return_indices=True)
        ry, ridx = ref.max_pool2d(x, k, s, p, c)
        assert np.array_equal(idx, ridx) and np.array_equal(y, ry)
        dx = F.max_pool2d_backward(y, idx, shape, k, s, p, c)
        assert np.allclose(dx, ref.max_pool2d_backward(y, ridx, shape), rtol=0, atol=1e-6)
print("ok")
"""


def test_generic_isa_path():
    """The plain C++ path (CONVKIT_ISA=generic, chosen once per process) in a child process."""
    env = dict(os.environ, CONVKIT_ISA="generic")
    r = subprocess.run([sys.executable, "-c", GENERIC_SCRIPT], cwd=HERE, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr


# ---- memory safety of the vector loads ------------------------------------------------------------

def guarded_copy(a, where):
    """A copy of a whose first byte ("start") or last byte ("end") touches an inaccessible page, so
    a vector load outside the array faults instead of reading a neighbour. Linux only; the mapping
    is left in place (a few pages per test)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page, nbytes = mmap.PAGESIZE, a.nbytes
    pages = -(-nbytes // page)
    base = libc.mmap(None, (pages + 2) * page, mmap.PROT_READ | mmap.PROT_WRITE,
                     mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    assert base not in (None, ctypes.c_void_p(-1).value), "mmap failed"
    assert libc.mprotect(base, page, PROT_NONE) == 0
    assert libc.mprotect(base + (pages + 1) * page, page, PROT_NONE) == 0
    start = base + page + (pages * page - nbytes if where == "end" else 0)
    out = np.frombuffer((ctypes.c_char * nbytes).from_address(start), dtype=a.dtype).reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses mmap/mprotect guard pages")
@pytest.mark.parametrize("where", ["start", "end"])
@pytest.mark.parametrize("shape,k,s,p,ceil_mode", [
    ((1, 1, 5, 37), 3, 2, 0, False), ((1, 1, 5, 37), 3, 2, 1, True), ((1, 1, 4, 33), 2, 2, 0, True),
    ((1, 2, 3, 29), 3, 1, 1, False), ((1, 1, 6, 16), 2, 1, 0, False), ((2, 1, 7, 41), 5, 2, 2, True),
    ((1, 1, 4, 8), 2, 2, 0, False), ((2, 3, 10, 10), 2, 2, 0, False),  # the flat row pass up to the last value
])
def test_no_reads_outside_the_input(where, shape, k, s, p, ceil_mode):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y, idx = pool(guarded_copy(x, where), k, s, p, ceil_mode)
    ry, ridx = ref.max_pool2d(x, pair(k), pair(s), pair(p), ceil_mode)
    np.testing.assert_array_equal(idx, ridx)
    dx = F.max_pool2d_backward(guarded_copy(y, where), guarded_copy(idx, where), shape, k, s, p, ceil_mode)
    assert_close(dx, ref.max_pool2d_backward(y, ridx, shape), rtol=1e-6, atol=1e-6)


# ---- bad input ------------------------------------------------------------------------------------

def test_bad_input_forward():
    x = np.ones((1, 2, 5, 5), np.float32)
    fn = F.max_pool2d
    assert_raises(TypeError, r"max_pool2d: x must be a numpy array", fn, [[1.0]], 2)
    assert_raises(TypeError, r"max_pool2d: x must have dtype float32 or float64, got int64", fn,
                  np.ones((1, 1, 4, 4), np.int64), 2)
    assert_raises(ValueError, r"max_pool2d: x must have shape \[N, C, H, W\], got \[5, 5\]", fn, np.ones((5, 5)), 2)
    assert_raises(ValueError, r"max_pool2d: x is empty", fn, np.ones((0, 2, 5, 5), np.float32), 2)
    assert_raises(ValueError, r"C-contiguous", fn, np.ones((1, 2, 5, 10), np.float32)[..., ::2], 2)
    assert_raises(ValueError, r"max_pool2d: kernel_size must be >= 1, got 0", fn, x, 0)
    assert_raises(TypeError, r"max_pool2d: kernel_size must be an int, got float", fn, x, 2.0)
    assert_raises(ValueError, r"max_pool2d: kernel_size must be an int or a pair of ints", fn, x, (2, 2, 2))
    assert_raises(ValueError, r"max_pool2d: stride must be >= 1, got 0", fn, x, 2, 0)
    assert_raises(ValueError, r"max_pool2d: padding must be >= 0, got -1", fn, x, 2, 2, -1)
    assert_raises(ValueError, r"padding must be <= kernel_size / 2 on the width axis, got padding 2 for kernel 3",
                  fn, x, 3, 1, (1, 2))
    assert_raises(ValueError, r"max_pool2d: output size 0x0 <= 0 for input 5x5, kernel \(7, 7\)", fn, x, 7)
    assert_raises(TypeError, r"max_pool2d: ceil_mode must be a bool", fn, x, 2, 2, 0, 1)


def test_bad_input_backward():
    x_shape = (1, 2, 5, 5)
    dy = np.ones((1, 2, 2, 2), np.float32)
    idx = np.zeros((1, 2, 2, 2), np.int64)
    fn = F.max_pool2d_backward
    assert_raises(ValueError, r"max_pool2d_backward: x_shape must be a 4-tuple", fn, dy, idx, (5, 5), 2)
    assert_raises(ValueError, r"max_pool2d_backward: x_shape must be >= 1, got 0", fn, dy, idx, (1, 2, 0, 5), 2)
    assert_raises(ValueError, r"max_pool2d_backward: dy must have shape \[1, 2, 2, 2\], got \[1, 2, 3, 3\]", fn,
                  np.ones((1, 2, 3, 3), np.float32), idx, x_shape, 2)
    assert_raises(TypeError, r"max_pool2d_backward: indices must have dtype int64, got int32", fn, dy,
                  idx.astype(np.int32), x_shape, 2)
    assert_raises(ValueError, r"max_pool2d_backward: indices must have shape \[1, 2, 2, 2\], got \[1, 2, 2, 1\]",
                  fn, dy, idx[..., :1].copy(), x_shape, 2)
    assert_raises(TypeError, r"max_pool2d_backward: dy must have dtype float32 or float64", fn, idx, idx, x_shape, 2)
    # an index outside the plane is refused, not written out of bounds
    bad = idx.copy()
    bad[0, 1, 1, 1] = 25
    assert_raises(ValueError, r"max_pool2d_backward: indices must lie in \[0, H\*W\) = \[0, 25\), got 25", fn, dy,
                  bad, x_shape, 2)
    bad[0, 1, 1, 1] = -1
    assert_raises(ValueError, r"indices must lie in \[0, H\*W\) = \[0, 25\), got -1", fn, dy, bad, x_shape, 2)


def test_bad_input_core():
    """The C++ entry points check on their own (the binding calls them without the Python checks)."""
    core = convkit._core
    x = np.ones((1, 2, 5, 5), np.float32)
    assert_raises(ValueError, r"max_pool2d_forward: x must have shape \[N, C, H, W\], got \[5, 5\]",
                  core.max_pool2d_forward, np.ones((5, 5), np.float32), (2, 2), (2, 2), (0, 0), False)
    assert_raises(ValueError, r"pool2d_out_size: kernel must be >= 1, got 0", core.max_pool2d_forward, x, (0, 2),
                  (2, 2), (0, 0), False)
    assert_raises(ValueError, r"pool2d_out_size: stride must be >= 1, got -1", core.max_pool2d_forward, x, (2, 2),
                  (-1, 2), (0, 0), False)
    assert_raises(ValueError, r"pool2d_out_size: pad must be >= 0, got -1", core.max_pool2d_forward, x, (2, 2),
                  (2, 2), (-1, 0), False)
    assert_raises(ValueError, r"pool2d_out_size: pad must be <= kernel / 2 = 1, got 2", core.max_pool2d_forward, x,
                  (3, 3), (1, 1), (0, 2), False)
    assert_raises(ValueError, r"pool2d_out_size: output size 0 <= 0 for size 5, kernel 6", core.max_pool2d_forward,
                  x, (6, 6), (1, 1), (0, 0), False)
    assert_raises(ValueError, r"exceeds 2\^40", core.pool2d_out_size, 5, 2**50, 1, 0, False)
    assert_raises(ValueError, r"max_pool2d_forward: x must be float32 or float64, got int64", core.max_pool2d_forward,
                  np.ones((1, 1, 4, 4), np.int64), (2, 2), (2, 2), (0, 0), False)
    dy = np.ones((1, 2, 2, 2), np.float32)
    idx = np.zeros((1, 2, 2, 2), np.int64)
    assert_raises(ValueError, r"max_pool2d_backward: dy must have shape \[1, 2, 2, 2\], got \[1, 2, 3, 3\]",
                  core.max_pool2d_backward, np.ones((1, 2, 3, 3), np.float32), idx, [1, 2, 5, 5], (2, 2), (2, 2),
                  (0, 0), False)
    assert_raises(ValueError, r"max_pool2d_backward: indices must be int64, got float32", core.max_pool2d_backward,
                  dy, dy, [1, 2, 5, 5], (2, 2), (2, 2), (0, 0), False)
    assert_raises(ValueError, r"max_pool2d_backward: pad_h must be <= kernel / 2 = 1, got 2",
                  core.max_pool2d_backward, dy, idx, [1, 2, 5, 5], (2, 2), (2, 2), (2, 0), False)
