"""conv2d: every CPU implementation against the float64 reference, gradients, torch, and bad input.

The CPU implementations are chosen with the test hook convkit._core._conv2d_set_cpu_impl:
"ref" (the plain loops), "gemm" (im2col + GEMM) and "direct" (the AVX2 direct kernels for float32
stride-1 convs); a forced forward path raises instead of declining a shape, so a pass means that
path really ran (a forced "direct" runs the backward shapes its kernels do not take as "auto" does).
"auto", the default, takes the fastest path that accepts the shape.
"""
import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convkit
import convkit.functional as F
from convkit import _core
from convkit.testing import assert_close, assert_raises, check_gradients
from conftest import on
from reference import conv2d as ref
from reference import winograd as wref

IMPLS = ["ref", "gemm", "auto"]


@contextlib.contextmanager
def cpu_impl(name):
    old = _core._conv2d_set_cpu_impl(name)
    try:
        yield
    finally:
        _core._conv2d_set_cpu_impl(old)


def direct_available():
    """The direct kernel needs AVX2 (CONVKIT_ISA=generic or an older CPU: the GEMM path runs instead)."""
    x, w = np.ones((1, 1, 3, 8), np.float32), np.ones((1, 1, 1, 1), np.float32)
    with cpu_impl("direct"):
        try:
            F.conv2d(x, w)
        except RuntimeError as e:
            assert "declined" in str(e)
            return False
    return True


needs_direct = pytest.mark.skipif(not direct_available(), reason="no AVX2 (or CONVKIT_ISA caps it): no direct kernel")


@contextlib.contextmanager
def threads(n):
    old = convkit.get_num_threads()
    convkit.set_num_threads(n)
    try:
        yield
    finally:
        convkit.set_num_threads(old)


def bound(n_terms, magnitude, dtype):
    """Tolerance for a kernel output that is a sum of n_terms products, elementwise.

    For any summation order, with or without FMA, |fl(s) - s| <= gamma_n * sum |terms| with
    gamma_n = n u / (1 - n u) ~ n u, u = eps / 2 (Higham, Accuracy and Stability, section 3.1).
    `magnitude` is that sum of |terms| (the same op applied to |inputs|). Allowing (n + 1) * eps,
    twice gamma_n plus the final rounding, covers the kernel and the float64 reference together.
    """
    return (n_terms + 1) * np.finfo(dtype).eps * magnitude


def random_problem(rng, x_shape, w_shape, dtype, bias=True):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    return x, w, b


def check_all(x, w, b, stride=1, padding=0, dilation=1, groups=1, seed=0):
    """Forward and the three backward passes against the reference, with the bounds of `bound`."""
    dt = x.dtype
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = F.conv2d(x, w, b, **kw)
    assert y.dtype == dt
    absb = None if b is None else np.abs(b)
    mag = ref.conv2d(np.abs(x), np.abs(w), absb, **kw)
    k_terms = w.shape[1] * w.shape[2] * w.shape[3]
    assert_close(y, ref.conv2d(x, w, b, **kw), rtol=0, atol=bound(k_terms + 1, mag, dt), name="y")

    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(dt)
    n, _, oh, ow = y.shape
    dx = F.conv2d_backward_data(dy, w, x.shape, **kw)
    mag = ref.conv2d_backward_data(np.abs(dy), np.abs(w), x.shape, **kw)
    ocg_terms = w.shape[0] // groups * w.shape[2] * w.shape[3]
    assert_close(dx, ref.conv2d_backward_data(dy, w, x.shape, **kw), rtol=0, atol=bound(ocg_terms, mag, dt),
                 name="dx")

    dw = F.conv2d_backward_weight(x, dy, w.shape, **kw)
    mag = ref.conv2d_backward_weight(np.abs(x), np.abs(dy), w.shape, **kw)
    assert_close(dw, ref.conv2d_backward_weight(x, dy, w.shape, **kw), rtol=0, atol=bound(n * oh * ow, mag, dt),
                 name="dw")

    db = F.conv2d_backward_bias(dy)
    assert_close(db, ref.conv2d_backward_bias(dy), rtol=0,
                 atol=bound(n * oh * ow, ref.conv2d_backward_bias(np.abs(dy)), dt), name="db")
    for a in (y, dx, dw, db):
        assert a.dtype == dt and np.isfinite(a).all()


# ---- output size ---------------------------------------------------------------------------------

def test_out_size():
    # floor((in + 2*pad - dil*(k-1) - 1) / stride) + 1
    assert _core.conv2d_out_size(227, 11, 4, 0, 1) == 55  # AlexNet conv1: (227 - 11) / 4 + 1
    assert _core.conv2d_out_size(27, 5, 1, 2, 1) == 27    # conv2: 27 + 4 - 4 - 1 + 1
    assert _core.conv2d_out_size(28, 5, 1, 2, 1) == 28    # LeNet conv1, padded
    assert _core.conv2d_out_size(7, 3, 2, 1, 2) == 3      # (7 + 2 - 4 - 1) // 2 + 1
    assert _core.conv2d_out_size(4, 2, 3, 0, 1) == 1      # (4 - 2) // 3 + 1: floor, not ceil
    assert _core.conv2d_out_size(1, 3, 1, 1, 1) == 1      # kernel larger than the input, padded
    for args in [(5, 3, 2, 1, 1), (9, 2, 3, 2, 3), (1, 1, 5, 0, 1), (30, 4, 1, 0, 9)]:
        assert _core.conv2d_out_size(*args) == F.conv_out_size(*args) == ref.out_size(*args)
    assert_raises(ValueError, r"conv2d_out_size: output size -1 <= 0", _core.conv2d_out_size, 3, 5, 1, 0, 1)
    assert_raises(ValueError, r"stride must be >= 1, got 0", _core.conv2d_out_size, 5, 3, 0, 0, 1)
    assert_raises(ValueError, r"dilation must be >= 1, got -1", _core.conv2d_out_size, 5, 3, 1, 0, -1)
    assert_raises(ValueError, r"padding must be >= 0, got -2", _core.conv2d_out_size, 5, 3, 1, -2, 1)
    assert_raises(OverflowError, r"overflows 64-bit", _core.conv2d_out_size, 5, 3, 1, 2**62, 1)
    assert_raises(OverflowError, r"overflows 64-bit", _core.conv2d_out_size, 5, 2**40, 1, 0, 2**40)


# ---- hand-worked cases (small integers: every result is exact, so rtol = atol = 0) -------------------

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_hand_worked_2x2_kernel(impl, dt):
    x = np.arange(1, 10, dtype=dt).reshape(1, 1, 3, 3)  # [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    w = np.array([[[[1, 2], [3, 4]]]], dt)
    b = np.array([0.5], dt)
    with cpu_impl(impl):
        # y[i, j] = 1*x[i, j] + 2*x[i, j+1] + 3*x[i+1, j] + 4*x[i+1, j+1] + 0.5
        #   y[0, 0] = 1 + 4 + 12 + 20 = 37,  y[0, 1] = 2 + 6 + 15 + 24 = 47
        #   y[1, 0] = 4 + 10 + 21 + 32 = 67, y[1, 1] = 5 + 12 + 24 + 36 = 77
        y = F.conv2d(x, w, b)
        assert y.tolist() == [[[[37.5, 47.5], [67.5, 77.5]]]]
        dy = np.ones((1, 1, 2, 2), dt)
        # dx[h, v] = sum of the weights that touched (h, v): corners one tap each, the middle all four
        #   [[1, 1+2, 2], [1+3, 1+2+3+4, 2+4], [3, 3+4, 4]]
        assert F.conv2d_backward_data(dy, w, x.shape).tolist() == [[[[1, 3, 2], [4, 10, 6], [3, 7, 4]]]]
        # dw[p, q] = sum of the 2x2 window of x shifted by (p, q):
        #   [[1+2+4+5, 2+3+5+6], [4+5+7+8, 5+6+8+9]] = [[12, 16], [24, 28]]
        assert F.conv2d_backward_weight(x, dy, w.shape).tolist() == [[[[12, 16], [24, 28]]]]
        assert F.conv2d_backward_bias(dy).tolist() == [4.0]  # four output pixels


@pytest.mark.parametrize("impl", IMPLS)
def test_hand_worked_stride_padding(impl):
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    w = np.ones((1, 1, 3, 3), np.float32)
    with cpu_impl(impl):
        # pad 1 -> 5x5 with a zero border; stride 2 puts the 3x3 window's centre on x[0, 0], x[0, 2],
        # x[2, 0], x[2, 2]; each sums the (in-image part of the) 2x2 corner block:
        #   1+2+4+5 = 12, 2+3+5+6 = 16, 4+5+7+8 = 24, 5+6+8+9 = 28
        y = F.conv2d(x, w, stride=2, padding=1)
        assert y.tolist() == [[[[12, 16], [24, 28]]]]
        # backward: each x pixel gets the dy of every window covering it; dy = [[1, 10], [100, 1000]]
        #   x[0,0] only window (0,0): 1; x[0,1] windows (0,0),(0,1): 11; x[1,1] all four: 1111 ...
        dy = np.array([[[[1, 10], [100, 1000]]]], np.float32)
        assert F.conv2d_backward_data(dy, w, x.shape, stride=2, padding=1).tolist() == \
            [[[[1, 11, 10], [101, 1111, 1010], [100, 1100, 1000]]]]
        # dw[p, q] = sum_ij dy[i, j] * xpad[2i + p, 2j + q]; the centre tap (1, 1) reads x[0,0], x[0,2],
        # x[2,0], x[2,2] = 1, 3, 7, 9:  1*1 + 10*3 + 100*7 + 1000*9 = 9731
        dw = F.conv2d_backward_weight(x, dy, w.shape, stride=2, padding=1)
        assert dw[0, 0, 1, 1] == 9731
        # the top-left tap (0, 0) reads the padding for every window but (1, 1), where it sees x[1, 1] = 5
        assert dw[0, 0, 0, 0] == 5000


@pytest.mark.parametrize("impl", IMPLS)
def test_hand_worked_groups_and_dilation(impl):
    with cpu_impl(impl):
        # groups=2: output channel 0 sees only input channel 0, channel 1 only channel 1
        x = np.array([2.0, 3.0]).reshape(1, 2, 1, 1)
        w = np.array([10.0, 100.0]).reshape(2, 1, 1, 1)
        assert F.conv2d(x, w, groups=2).ravel().tolist() == [20.0, 300.0]
        # dilation 3 on a row [1, 2, 3, 4, 5] with taps [1, 10]: y[j] = x[j] + 10*x[j+3]
        #   OW = (5 - 3*1 - 1) // 1 + 1 = 2;  y = [1 + 40, 2 + 50]
        x = np.arange(1.0, 6.0).reshape(1, 1, 1, 5)
        w = np.array([1.0, 10.0]).reshape(1, 1, 1, 2)
        assert F.conv2d(x, w, dilation=(1, 3)).ravel().tolist() == [41.0, 52.0]
        # its input gradient for dy = [1, 1]: x[0], x[1] get tap 0 (1), x[3], x[4] tap 1 (10), x[2] none
        assert F.conv2d_backward_data(np.ones((1, 1, 1, 2)), w, x.shape, dilation=(1, 3)).ravel().tolist() == \
            [1.0, 1.0, 0.0, 10.0, 10.0]


# ---- random shapes -------------------------------------------------------------------------------

@st.composite
def problems(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = 1 if draw(st.booleans()) else draw(st.integers(1, 3))  # cg = 1 with groups > 1: depthwise
    ocg = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))  # stride may exceed the kernel
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    # the smallest input with an output is the (dilated) kernel minus the padding: kernel as large as it
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 11))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 11))
    n = draw(st.integers(1, 3))
    dt = draw(st.sampled_from([np.float32, np.float64]))
    bias = draw(st.booleans())
    return dict(x_shape=(n, cg * groups, h, w), w_shape=(ocg * groups, cg, kh, kw), stride=(sh, sw),
                padding=(ph, pw), dilation=(dh, dw), groups=groups, dtype=dt, bias=bias)


@pytest.mark.parametrize("impl", IMPLS)
@given(pr=problems())
def test_matches_reference(impl, pr):
    rng = np.random.default_rng(sum(pr["x_shape"]) + sum(pr["w_shape"]))
    x, w, b = random_problem(rng, pr["x_shape"], pr["w_shape"], pr["dtype"], pr["bias"])
    with cpu_impl(impl):
        check_all(x, w, b, pr["stride"], pr["padding"], pr["dilation"], pr["groups"])


@contextlib.contextmanager
def env(name, value):
    """Sets an environment variable the kernels read on every call, restores it afterwards."""
    import os
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def fused_forward(mode):
    """CONVKIT_CONV_FUSED: '1' forces the GEMM path's fused im2col packing (pack_cols), '0' the im2col
    into scratch."""
    return env("CONVKIT_CONV_FUSED", mode)


@pytest.mark.parametrize("mode", ["0", "1"])
@given(pr=problems())
def test_gemm_forward_fused_and_im2col_match_reference(mode, pr):
    # both forward variants of the GEMM path, on every shape (strides, padding, dilation, groups)
    rng = np.random.default_rng(sum(pr["x_shape"]) + sum(pr["w_shape"]) + 7)
    x, w, b = random_problem(rng, pr["x_shape"], pr["w_shape"], pr["dtype"], pr["bias"])
    with cpu_impl("gemm"), fused_forward(mode):
        check_all(x, w, b, pr["stride"], pr["padding"], pr["dilation"], pr["groups"])


@pytest.mark.parametrize("mode", ["0", "1"])
@pytest.mark.parametrize("shape", [  # AlexNet-like: wide and narrow outputs, groups, stride 4, batch > threads
    ((3, 3, 35, 35), (8, 3, 11, 11), 4, 0, 1), ((3, 8, 27, 27), (34, 4, 5, 5), 1, 2, 2),
    ((3, 16, 13, 13), (20, 8, 3, 3), 1, 1, 2)])
def test_gemm_forward_fused_layer_shapes(mode, shape, rng):
    xs, ws, s, p, g = shape
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    with cpu_impl("gemm"), fused_forward(mode):
        check_all(x, w, b, s, p, 1, g)


@st.composite
def same_problems(draw):
    """Stride 1, output the size of the input ("same" padding: AlexNet conv2-5), which the GEMM
    path's forward packs with pack_cols_strips as one run per strip: strips of 16 pixels that cross output rows, planes
    narrower than a strip, partial last strips, dilation, groups, both dtypes."""
    groups = draw(st.sampled_from([1, 2, 3]))
    cg, ocg = draw(st.integers(1, 5)), draw(st.integers(1, 9))
    kh, dh = draw(st.sampled_from([(1, 1), (3, 1), (5, 1), (7, 1), (2, 2), (3, 2), (4, 2), (3, 3)]))
    kw, dw = draw(st.sampled_from([(1, 1), (3, 1), (5, 1), (7, 1), (2, 2), (3, 2), (4, 2), (3, 3)]))
    return dict(x_shape=(draw(st.integers(1, 3)), cg * groups, draw(st.integers(1, 20)), draw(st.integers(1, 40))),
                w_shape=(ocg * groups, cg, kh, kw), padding=(dh * (kh - 1) // 2, dw * (kw - 1) // 2),
                dilation=(dh, dw), groups=groups, dtype=draw(st.sampled_from([np.float32, np.float64])),
                bias=draw(st.booleans()))


@pytest.mark.parametrize("mode", ["auto", "1"])
@given(pr=same_problems())
def test_gemm_forward_same_convolutions(mode, pr):
    rng = np.random.default_rng(sum(pr["x_shape"]) + sum(pr["w_shape"]) + 11)
    x, w, b = random_problem(rng, pr["x_shape"], pr["w_shape"], pr["dtype"], pr["bias"])
    env = fused_forward(mode) if mode != "auto" else contextlib.nullcontext()
    with cpu_impl("gemm"), env:
        y = F.conv2d(x, w, b, padding=pr["padding"], dilation=pr["dilation"], groups=pr["groups"])
        assert y.shape[2:] == x.shape[2:]
        check_all(x, w, b, 1, pr["padding"], pr["dilation"], pr["groups"])


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("geom", [  # x shape, w shape, stride, padding
    ((2, 4, 9, 13), (6, 4, 3, 5), 1, (1, 2)),      # "same": one run per strip across rows
    ((2, 3, 23, 23), (5, 3, 5, 5), 2, 1),           # strided: phase-split source, strips across rows
    ((2, 3, 35, 37), (4, 3, 11, 11), 4, 2),         # AlexNet conv1-like with padding
    ((2, 3, 39, 37), (4, 3, 11, 11), 4, 0),         # AlexNet conv1-like, no padding
    ((2, 2, 3, 4), (3, 2, 2, 1), 1, (2, 3))])       # padding wider than the kernel: OW > W
def test_gemm_forward_border_values_stay_out(dt, geom, rng):
    # pack_cols_strips reads whole strips of x (or its phase-split copy) and clears the lanes that
    # belong to the padding; an inf at a row's first or last column must reach exactly the outputs
    # whose windows cover it (as +-inf), never others through a cleared lane (as NaN or inf)
    xs, ws, stride, padding = geom
    x = rng.standard_normal(xs).astype(dt)
    x[0, 1, xs[2] // 2, 0] = np.inf
    x[1, xs[1] - 1, xs[2] - 1, xs[3] - 1] = -np.inf
    # a plane's first value: the spare lanes of a partial last strip read it too (they carry on
    # past the previous plane's last pixel)
    x[1, 1, 0, 0] = np.inf
    w = rng.standard_normal(ws).astype(dt)
    for mode in ("auto", "1"):
        env = fused_forward(mode) if mode != "auto" else contextlib.nullcontext()
        with cpu_impl("gemm"), env:
            y = F.conv2d(x, w, None, stride=stride, padding=padding)
        want = ref.conv2d(x, w, None, stride=stride, padding=padding)
        assert np.array_equal(np.isfinite(y), np.isfinite(want)), mode
        assert not np.isnan(y).any() and not np.isnan(want).any()
        assert (~np.isfinite(want)).any()
        assert np.array_equal(y[~np.isfinite(y)], want[~np.isfinite(want)])
        fin = np.isfinite(want)
        mag = ref.conv2d(np.abs(np.where(np.isfinite(x), x, 0)), np.abs(w), None, stride=stride, padding=padding)
        n_terms = ws[1] * ws[2] * ws[3] + 1
        assert_close(y[fin], want[fin], rtol=0, atol=bound(n_terms, mag[fin], dt), name="y")


@pytest.mark.parametrize("geom", [  # x shape, w shape, stride, padding, groups
    ((2, 3, 99, 99), (5, 3, 11, 11), 4, 0, 1),    # conv1-like: 23 x 23 outputs, strips in one run or two
    ((2, 3, 61, 64), (4, 3, 11, 11), 4, 2, 1),    # conv1-like with padding: interior and border strips
    ((1, 6, 40, 37), (8, 3, 3, 3), 1, 1, 2),      # "same", groups: 37-wide rows, strips across them
    ((2, 4, 45, 45), (6, 4, 5, 5), 2, 0, 1)])     # stride 2: phase-split source
def test_gemm_forward_interior_strips(geom, rng):
    # a strip whose windows lie inside the image for every kernel tap is packed in one call (AVX2:
    # conv2d_copy_taps16_avx2), contiguous or in two runs across the end of an output row; images
    # large enough for many such strips of each kind, against the reference
    xs, ws, stride, padding, groups = geom
    x, w, b = random_problem(rng, xs, ws, np.float32)
    with cpu_impl("gemm"):
        for mode in ("auto", "1"):
            env = fused_forward(mode) if mode != "auto" else contextlib.nullcontext()
            with env:
                y = F.conv2d(x, w, b, stride=stride, padding=padding, groups=groups)
            want = ref.conv2d(x, w, b, stride=stride, padding=padding, groups=groups)
            mag = ref.conv2d(np.abs(x), np.abs(w), np.abs(b), stride=stride, padding=padding, groups=groups)
            k_terms = ws[1] * ws[2] * ws[3] + 1
            assert_close(y, want, rtol=0, atol=bound(k_terms, mag, np.float32), name=f"y ({mode})")


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", [  # x shape, w shape: K = 576 runs as two K blocks of the GEMM
    ((2, 64, 9, 11), (7, 64, 3, 3)),     # 7 rows: one edge row; 99 pixels: an edge column block
    ((1, 64, 5, 7), (100, 64, 3, 3))])   # 100 rows: 4 edge rows
def test_gemm_forward_bias_inside_the_gemm(dt, shapes, rng):
    # the fused path starts each output tile at the bias inside the GEMM (row_init); the im2col
    # path fills y with the bias and accumulates onto it: the same operations, so the same bits
    xs, ws = shapes
    x, w, b = random_problem(rng, xs, ws, dt, True)
    with cpu_impl("gemm"):
        with fused_forward("1"):
            y_fused = F.conv2d(x, w, b, padding=1)
        with fused_forward("0"):
            y_cols = F.conv2d(x, w, b, padding=1)
    assert np.array_equal(y_fused, y_cols)
    mag = ref.conv2d(np.abs(x), np.abs(w), np.abs(b), padding=1)
    assert_close(y_fused, ref.conv2d(x, w, b, padding=1), rtol=0, atol=bound(ws[1] * 9 + 1, mag, dt), name="y")


@pytest.mark.parametrize("shape", [  # x, w, stride, padding, groups
    ((3, 20, 13, 13), (26, 10, 3, 3), 1, 1, 2),    # 169 pixels = 10 x 16 + 9; 13 rows per group: a pair + 1
    ((2, 6, 27, 27), (20, 6, 5, 5), 1, 2, 1),      # 729 = 45 x 16 + 9; 20 = a pair, an odd panel, 2 rows
    ((1, 3, 75, 75), (8, 3, 11, 11), 4, 0, 1)])    # conv1-like: 17 x 17 = 18 x 16 + 1 (the column kernel)
def test_gemm_narrow_strips_bias(shape, rng):
    # gemm.cpp's narrow kernels (last strips of 8-9 or 1-2 columns, short last panels over two
    # strips) with the bias as each tile's start, in the forward and both gradients: bit for bit the
    # edge tiles they replace (CONVKIT_GEMM_NARROW=0) at 1 and at 2 threads (the weight gradient's
    # per-thread partial sums differ between the two), and against the reference
    xs, ws, stride, padding, groups = shape
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    kw = dict(stride=stride, padding=padding, groups=groups)
    y = F.conv2d(x, w, b, **kw)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    got = []
    for narrow, n in [("1", 1), ("1", 2), ("0", 1), ("0", 2)]:
        with cpu_impl("gemm"), env("CONVKIT_GEMM_NARROW", narrow), threads(n):
            got.append((F.conv2d(x, w, b, **kw), F.conv2d_backward_data(dy, w, xs, **kw),
                        F.conv2d_backward_weight(x, dy, ws, **kw)))
    for i, j in [(0, 2), (1, 3)]:  # narrow on / off at the same thread count
        for a, c in zip(got[i], got[j]):
            assert np.array_equal(a, c)
    for a, c in zip(got[0][:2], got[1][:2]):  # forward and data gradient: 1 == 2 threads
        assert np.array_equal(a, c)
    with cpu_impl("gemm"):
        check_all(x, w, b, **kw)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [  # x, w, groups: 3 x 3 "same"; the weight gradient's dy [OCg, 169 or 81]
    ((3, 24, 13, 13), (300, 24, 3, 3), 1),   # 300 rows: three row blocks; 216 columns: two B column blocks
    ((2, 80, 9, 9), (2 * 290, 40, 3, 3), 2),  # per group 290 rows, 360 columns of 81 pixels
    ((2, 24, 13, 13), (200, 24, 3, 3), 1)])   # two row blocks: the B block whole (one column block)
def test_weight_gradient_packed_dy(shape, dt, rng):
    # the "same" weight gradient packs dy once per image and group, and where three or more row blocks
    # read each B block the GEMM takes B in column blocks that stay in L2 (gemm.cpp's kBBlockBytes):
    # against the reference at 1 and 2 threads, and on 1 thread bit for bit the plain im2col route
    xs, ws, groups = shape
    x = rng.standard_normal(xs).astype(dt)
    w = rng.standard_normal(ws).astype(dt)
    dy = rng.standard_normal((xs[0], ws[0], xs[2], xs[3])).astype(dt)
    mag = ref.conv2d_backward_weight(np.abs(x), np.abs(dy), ws, padding=1, groups=groups)
    want = ref.conv2d_backward_weight(x, dy, ws, padding=1, groups=groups)
    got = {}
    for n in (1, 2):
        with cpu_impl("gemm"), threads(n):
            got[n] = F.conv2d_backward_weight(x, dy, ws, padding=1, groups=groups)
        assert_close(got[n], want, rtol=0, atol=bound(xs[0] * xs[2] * xs[3], mag, dt), name=f"dw {n} threads")
    with cpu_impl("gemm"), env("CONVKIT_CONV_FUSED", "0"), threads(1):
        assert np.array_equal(F.conv2d_backward_weight(x, dy, ws, padding=1, groups=groups), got[1])


@pytest.mark.parametrize("mode", ["auto", "0"])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("geom", [  # x shape, w shape, padding, dilation, groups: "same" convolutions
    ((2, 6, 13, 13), (8, 3, 3, 3), 1, 1, 2),        # AlexNet conv3-5-like
    ((3, 4, 9, 13), (5, 4, 3, 5), (1, 2), 1, 1),     # strips of 16 kernel rows across channels
    ((2, 3, 7, 6), (4, 3, 3, 3), 2, 2, 1)])          # dilation 2
def test_gemm_backward_weight_border_values_stay_out(mode, dt, geom, rng):
    # pack_cols_t_same reads each kernel row's shifted plane whole and clears the pixels whose
    # window hangs over the border: an inf at the first / last value of a row or of the image-group
    # (where a shifted read would leave x) must reach exactly the weight gradients whose windows
    # cover it, never others through a cleared lane (as NaN or inf)
    xs, ws, padding, dilation, groups = geom
    x = rng.standard_normal(xs).astype(dt)
    x[0, 0, 0, 0] = np.inf
    x[0, 1, xs[2] // 2, -1] = -np.inf
    x[1, -1, -1, -1] = np.inf
    kw = dict(padding=padding, dilation=dilation, groups=groups)
    dy = rng.standard_normal((xs[0], ws[0], xs[2], xs[3])).astype(dt)
    env = fused_forward(mode) if mode != "auto" else contextlib.nullcontext()
    with cpu_impl("gemm"), env:
        dw = F.conv2d_backward_weight(x, dy, ws, **kw)
    want = ref.conv2d_backward_weight(x, dy, ws, **kw)
    assert not np.isnan(want).any() and (~np.isfinite(want)).any()
    assert np.array_equal(np.isfinite(dw), np.isfinite(want)) and not np.isnan(dw).any()
    assert np.array_equal(dw[~np.isfinite(dw)], want[~np.isfinite(want)])
    fin = np.isfinite(want)
    mag = ref.conv2d_backward_weight(np.abs(np.where(np.isfinite(x), x, 0)), np.abs(dy), ws, **kw)
    assert_close(dw[fin], want[fin], rtol=0, atol=bound(xs[0] * xs[2] * xs[3], mag[fin], dt), name="dw")


@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("shape", [  # x, w, padding: GEMMs with M > N (split over M between threads),
    ((2, 300, 3, 3), (520, 300, 1, 1), 0),  # several K blocks of the packed weights, M not a multiple
    ((3, 70, 4, 5), (263, 70, 3, 3), 1)])    # of the microkernel's rows
def test_gemm_prepacked_weights_tall_products(nthreads, shape, rng):
    # forward reads W [OC, K] and backward data W^T [K, OC] as panels packed once per call (gemm_pack_a)
    xs, ws, p = shape
    x, w, b = random_problem(rng, xs, ws, np.float32)
    with cpu_impl("gemm"), threads(nthreads):
        check_all(x, w, b, 1, p)
        check_all(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 1, p)


@pytest.mark.parametrize("shape", [  # x, w, groups: several K blocks of the packed weights and more
    ((2, 64, 17, 19), (100, 64, 3, 3), 1),   # than 128 KiB of packed B per block: forward in column blocks
    ((1, 12, 15, 21), (300, 12, 3, 3), 1),   # (K 576, 323 pixels: 112 + 112 + 99), the data gradient
    ((2, 60, 20, 21), (208, 30, 3, 3), 2)])  # (K 300 over 108 rows), groups (K 270, 420 pixels)
def test_gemm_prepacked_weights_narrow_b_blocks(shape, rng):
    # gemm.cpp: products of packed weights that run K in several blocks pack B in blocks of at most
    # 128 KiB; the blocks split only the columns, so every value is the same sum in the same order:
    # fused == im2col and 1 thread == 2 threads, bit for bit, and all of it within the reference bound
    xs, ws, groups = shape
    x, w, b = random_problem(rng, xs, ws, np.float32)
    got = []
    for mode, n in [("1", 1), ("1", 2), ("0", 1), ("0", 2)]:
        with cpu_impl("gemm"), fused_forward(mode), threads(n):
            got.append(F.conv2d(x, w, b, padding=1, groups=groups))
    for y in got[1:]:
        assert np.array_equal(y, got[0])
    with cpu_impl("gemm"):
        for n in (1, 2):
            with threads(n):
                check_all(x, w, b, 1, 1, groups=groups)
                check_all(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 1, 1, groups=groups)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("geom", [  # x shape, w shape, padding, dilation, groups: "same" convolutions
    ((2, 6, 13, 13), (4, 3, 3, 3), 1, 1, 2),             # groups, odd kernel
    ((1, 5, 9, 14), (7, 5, 3, 5), (1, 2), 1, 1),         # rectangular kernel, batch 1
    ((3, 4, 11, 8), (4, 4, 3, 3), 2, 2, 1),              # dilation 2: padding 2 (K - 1 = 2)
    ((2, 3, 10, 9), (6, 1, 2, 2), 1, 2, 3),              # even kernel, dilation 2, depthwise-like groups
    ((4, 128, 13, 13), (96, 64, 3, 3), 1, 1, 2),         # Cg 64 >= OCg 48, 4 images: the automatic choice
    ((3, 128, 13, 13), (96, 64, 3, 3), 1, 1, 2),         # the same with 3 images: the usual route
    ((4, 64, 9, 9), (48, 64, 5, 5), 2, 1, 1),            # 5 x 5: as a forward through the indirect route
    ((2, 32, 11, 11), (64, 32, 5, 5), 2, 1, 1)])         # the same although Cg < OCg (AlexNet conv2-like)
@pytest.mark.parametrize("nthreads", [1, 2])
def test_gemm_backward_data_as_forward(dt, geom, nthreads, rng):
    # conv2d_gemm.cpp's data_grad_as_forward: stride-1 "same" data gradients as a forward convolution
    # of dy with the flipped, transposed filters; forced on and off, each against the reference
    xs, ws, padding, dilation, groups = geom
    kw = dict(padding=padding, dilation=dilation, groups=groups)
    w = rng.standard_normal(ws).astype(dt)
    dy = rng.standard_normal((xs[0], ws[0], xs[2], xs[3])).astype(dt)
    want = ref.conv2d_backward_data(dy, w, xs, **kw)
    mag = ref.conv2d_backward_data(np.abs(dy), np.abs(w), xs, **kw)
    got = {}
    for mode in ["1", "0", "auto"]:
        ctx = env("CONVKIT_CONV_BWD_AS_FWD", mode) if mode != "auto" else contextlib.nullcontext()
        with cpu_impl("gemm"), threads(nthreads), ctx:
            got[mode] = F.conv2d_backward_data(dy, w, xs, **kw)
        assert_close(got[mode], want, rtol=0, atol=bound(ws[0] // groups * ws[2] * ws[3], mag, dt), name=mode)
    assert not np.array_equal(got["1"], got["0"])  # two summation orders: both routes really ran
    cg, ocg, taps = xs[1] // groups, ws[0] // groups, ws[2] * ws[3]
    # the forward of dy (ocg channels per group in, cg out) would run as an indirect GEMM: it then pays
    indirect_fwd = (indirect_runs and dt == np.float32 and taps >= 25 and cg % 16 == 0 and ocg >= 16
                    and ocg * taps <= 4096 and xs[2] * xs[3] >= 12)
    auto_is_forward = indirect_fwd or (cg >= 64 and ocg <= cg and xs[0] >= 4)
    assert np.array_equal(got["auto"], got["1" if auto_is_forward else "0"])


# ---- the indirect forward (conv2d_indirect.cpp) -----------------------------------------------------

def indirect(mode):
    """CONVKIT_CONV_INDIRECT: '1' forces the indirect forward wherever it can run (float32 on AVX2, output
    channels per group a multiple of 16), '0' keeps it off; unset, it takes 5 x 5 and larger kernels."""
    return env("CONVKIT_CONV_INDIRECT", mode)


# the route runs on AVX2 only (not on AVX-512, nor with CONVKIT_ISA=generic or avx512-emulated: the GEMM
# path runs there)
indirect_runs = convkit.info()["route_isa"] == "avx2"


@st.composite
def indirect_problems(draw):
    """What the indirect forward takes when forced: float32, 16 or 32 output channels per group; any
    stride, padding, dilation and group count; pixel counts across its 6-pixel tiles (fewer than 6
    too), channel counts across its 8-channel copies."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, ocg = draw(st.integers(1, 20)), draw(st.sampled_from([16, 32]))
    kh, kw = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 15))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 21))
    return dict(x_shape=(draw(st.integers(1, 3)), cg * groups, h, w), w_shape=(ocg * groups, cg, kh, kw),
                stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), groups=groups, bias=draw(st.booleans()))


@given(pr=indirect_problems())
def test_indirect_forward_matches_reference(pr):
    rng = np.random.default_rng(sum(pr["x_shape"]) + sum(pr["w_shape"]) + 5)
    x, w, b = random_problem(rng, pr["x_shape"], pr["w_shape"], np.float32, pr["bias"])
    kw = dict(stride=pr["stride"], padding=pr["padding"], dilation=pr["dilation"], groups=pr["groups"])
    k_terms = w.shape[1] * w.shape[2] * w.shape[3]
    want = ref.conv2d(x, w, b, **kw)
    mag = ref.conv2d(np.abs(x), np.abs(w), None if b is None else np.abs(b), **kw)
    with cpu_impl("gemm"), indirect("1"):
        y = F.conv2d(x, w, b, **kw)
    assert_close(y, want, rtol=0, atol=bound(k_terms + 1, mag, np.float32), name="y")


@pytest.mark.parametrize("geom", [  # x shape, w shape, stride, padding, dilation, groups
    ((3, 96, 27, 27), (256, 48, 5, 5), 1, 2, 1, 2),   # AlexNet conv2 (3 images: 2 threads leave one over)
    ((2, 20, 17, 15), (32, 20, 7, 7), 1, 3, 1, 1),    # 7 x 7, 255 pixels (42 tiles + 3)
    ((3, 32, 19, 23), (64, 16, 5, 5), 2, 1, 1, 2),    # strided, groups, a 3-pixel last tile (99 pixels)
    ((1, 16, 12, 12), (16, 16, 5, 5), 1, 4, 2, 1),    # dilation 2, padding wider than the kernel's reach
    ((2, 256, 13, 13), (384, 256, 3, 3), 1, 1, 1, 1)])  # AlexNet conv3: auto keeps the GEMM path
def test_indirect_forward_layer_shapes(geom, rng):
    # forced on and off, 1 and 2 threads: each against the reference; the two routes sum in
    # different orders (their results differ: both really ran); the thread count changes nothing
    xs, ws, s, p, d, g = geom
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    kw = dict(stride=s, padding=p, dilation=d, groups=g)
    want = ref.conv2d(x, w, b, **kw)
    atol = bound(ws[1] * ws[2] * ws[3] + 1, ref.conv2d(np.abs(x), np.abs(w), np.abs(b), **kw), np.float32)
    got = {}
    for mode in ("1", "0", "auto"):
        for n in (1, 2):
            ctx = indirect(mode) if mode != "auto" else contextlib.nullcontext()
            with cpu_impl("gemm"), ctx, threads(n):  # (auto would give 32 channels to the direct path)
                got[mode, n] = F.conv2d(x, w, b, **kw)
            assert_close(got[mode, n], want, rtol=0, atol=atol, name=f"{mode}, {n} threads")
        assert np.array_equal(got[mode, 1], got[mode, 2])
    assert np.array_equal(got["1", 1], got["0", 1]) != indirect_runs
    auto_takes_it = ws[2] * ws[3] >= 25
    assert np.array_equal(got["auto", 1], got["1" if auto_takes_it else "0", 1])


def test_indirect_forward_declines_what_it_cannot_do(rng):
    # forced on, shapes it cannot take run on the GEMM path: the same bits as with it off
    cases = [(np.float32, (2, 16, 9, 9), (24, 16, 5, 5)),   # 24 output channels: not whole 16-channel tiles
             (np.float64, (2, 16, 9, 9), (32, 16, 5, 5))]   # float64
    for dt, xs, ws in cases:
        x, w, b = random_problem(rng, xs, ws, dt)
        with cpu_impl("gemm"), indirect("1"):
            y1 = F.conv2d(x, w, b, padding=2)
        with cpu_impl("gemm"), indirect("0"):
            y0 = F.conv2d(x, w, b, padding=2)
        assert np.array_equal(y1, y0)


def test_indirect_forward_inf_reaches_only_its_outputs():
    # the zero border of the channel-last copy and the repeated pixels of a last tile never carry a
    # value into an output that does not read it: one inf in the input makes inf exactly where the
    # reference does (a 5 x 5 window around it) and nowhere else
    x = np.ones((1, 16, 11, 13), np.float32)
    x[0, 3, 10, 12] = np.inf  # the last pixel: in the last tile, whose spare lanes repeat it
    w = np.ones((16, 16, 5, 5), np.float32)
    with cpu_impl("gemm"), indirect("1"):
        y = F.conv2d(x, w, padding=2)
    want = ref.conv2d(x.astype(np.float64), w.astype(np.float64), padding=2)
    assert np.array_equal(np.isinf(y), np.isinf(want)) and np.isinf(y).sum() == 16 * 3 * 3


# ---- the weight gradient with tap-major columns (conv2d_gemm.cpp, pack_taps_cl) ---------------------

@given(pr=indirect_problems())
def test_weight_gradient_tap_major_matches_reference(pr):
    # forced on: copies from the channel-last image in runs of one tap's consecutive channels (any
    # channel count: runs that end inside a strip), strides, padding, dilation, groups; each dW value
    # is the same sum as with the usual packers, so the two agree bit for bit
    rng = np.random.default_rng(sum(pr["x_shape"]) + sum(pr["w_shape"]) + 9)
    x, w, _ = random_problem(rng, pr["x_shape"], pr["w_shape"], np.float32, False)
    kw = dict(stride=pr["stride"], padding=pr["padding"], dilation=pr["dilation"], groups=pr["groups"])
    y = ref.conv2d(x, w, None, **kw)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    want = ref.conv2d_backward_weight(x, dy, w.shape, **kw)
    mag = ref.conv2d_backward_weight(np.abs(x), np.abs(dy), w.shape, **kw)
    got = {}
    for mode in ("1", "0"):
        with cpu_impl("gemm"), env("CONVKIT_CONV_WGRAD_TAPS", mode):
            got[mode] = F.conv2d_backward_weight(x, dy, w.shape, **kw)
        assert_close(got[mode], want, rtol=0, atol=bound(y.shape[0] * y.shape[2] * y.shape[3], mag, np.float32),
                     name=mode)
    assert np.array_equal(got["1"], got["0"])


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("nthreads", [1, 2])
def test_weight_gradient_tap_major_layer_shapes(dt, nthreads, rng):
    # AlexNet conv2 (auto takes the tap-major route there) with 3 images: at 2 threads two run on one
    # thread each and the third on both inside the GEMM; and a 7 x 7 layer with 32 channels
    for xs, ws, pad, groups in [((3, 96, 27, 27), (256, 48, 5, 5), 2, 2), ((2, 32, 15, 15), (64, 32, 7, 7), 3, 1)]:
        x = rng.standard_normal(xs).astype(dt)
        dy = rng.standard_normal((xs[0], ws[0], xs[2], xs[3])).astype(dt)
        kw = dict(padding=pad, groups=groups)
        want = ref.conv2d_backward_weight(x, dy, ws, **kw)
        mag = ref.conv2d_backward_weight(np.abs(x), np.abs(dy), ws, **kw)
        got = {}
        for mode in ("1", "0", "auto"):
            ctx = env("CONVKIT_CONV_WGRAD_TAPS", mode) if mode != "auto" else contextlib.nullcontext()
            with cpu_impl("gemm"), threads(nthreads), ctx:
                got[mode] = F.conv2d_backward_weight(x, dy, ws, **kw)
            assert_close(got[mode], want, rtol=0, atol=bound(xs[0] * xs[2] * xs[3], mag, dt), name=mode)
        assert np.array_equal(got["1"], got["0"]) and np.array_equal(got["auto"], got["0"])


@st.composite
def direct_problems(draw):
    """What the direct kernel takes: float32, stride 1. Output widths across the 8- and 16-pixel
    tiles, output channels across the 6-channel blocks, dilation, groups, padding."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, ocg = draw(st.integers(1, 3)), draw(st.integers(1, 14))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 13))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 40))
    return dict(x_shape=(draw(st.integers(1, 3)), cg * groups, h, w), w_shape=(ocg * groups, cg, kh, kw),
                padding=(ph, pw), dilation=(dh, dw), groups=groups, bias=draw(st.booleans()))


@needs_direct
@given(pr=direct_problems())
def test_direct_matches_reference(pr):
    rng = np.random.default_rng(sum(pr["x_shape"]) + sum(pr["w_shape"]))
    x, w, b = random_problem(rng, pr["x_shape"], pr["w_shape"], np.float32, pr["bias"])
    with cpu_impl("direct"):
        check_all(x, w, b, 1, pr["padding"], pr["dilation"], pr["groups"])


@needs_direct
def test_direct_declines_what_it_cannot_do():
    x, w = np.ones((1, 2, 6, 9), np.float32), np.ones((3, 2, 3, 3), np.float32)
    with cpu_impl("direct"):
        F.conv2d(x, w)
        assert_raises(RuntimeError, r"conv2d_forward: the direct path declined this shape", F.conv2d, x, w, stride=2)
        assert_raises(RuntimeError, r"the direct path declined", F.conv2d, x.astype(np.float64), w.astype(np.float64))


def check_direct_and_auto(seed, x_shape, w_shape, padding, dilation, groups):
    """Forward and every backward, forced direct and auto, against the reference (stride 1, float32)."""
    x, w, b = random_problem(np.random.default_rng(seed), x_shape, w_shape, np.float32)
    for impl in ("direct", "auto"):
        with cpu_impl(impl):
            check_all(x, w, b, 1, padding, dilation, groups)


@needs_direct
@pytest.mark.parametrize("x_shape,w_shape,padding,dilation,groups", [
    ((3, 1, 28, 28), (6, 1, 5, 5), 2, 1, 1),     # LeNet conv1: auto takes the direct backward weight
    ((2, 3, 9, 20), (6, 3, 1, 1), 0, 1, 1),      # kernel width 1: blocks of 4 channels, a tail of 2
    ((2, 2, 8, 17), (7, 2, 3, 3), 1, 1, 1),      # width 3: blocks of 3, a tail of 1; 17 = 2 vectors + 1
    ((2, 4, 11, 23), (10, 2, 2, 6), (1, 3), (1, 1), 2),  # width 6, groups
    ((1, 2, 12, 30), (3, 2, 4, 7), (2, 3), (2, 2), 1),   # width 7 (one channel per block), dilated
    ((2, 2, 9, 21), (3, 2, 3, 8), (1, 4), 1, 1),  # width 8: the direct kernel declines, the GEMM path runs
    # channel-vectorized (more lanes filled along the channels than along the row):
    ((3, 6, 14, 14), (16, 6, 5, 5), 0, 1, 1),    # LeNet conv2: OW = 10, two vectors of 8 channels
    ((2, 3, 7, 9), (12, 3, 3, 3), 1, 1, 1),      # 12 channels: the second vector half padding
    ((2, 4, 6, 5), (48, 2, 2, 3), (0, 1), (2, 1), 2),  # 3 vectors per group: a block of 3 (width 3)
    ((1, 2, 9, 11), (8, 2, 3, 7), (1, 3), 1, 1),  # width 7: one vector per block
    ((2, 1, 5, 6), (40, 1, 1, 1), 0, 1, 1),       # width 1: blocks of 4 vectors, then 1
])
def test_direct_backward_weight_shapes(x_shape, w_shape, padding, dilation, groups):
    check_direct_and_auto(5, x_shape, w_shape, padding, dilation, groups)


@needs_direct
@pytest.mark.parametrize("x_shape,w_shape,padding,dilation,groups", [
    ((3, 6, 14, 14), (16, 6, 5, 5), 0, 1, 1),    # LeNet conv2: auto takes the direct backward data
    ((2, 4, 9, 11), (6, 4, 3, 3), 1, 1, 1),      # padding 1 of 2: the flipped problem pads by 1
    ((2, 8, 10, 13), (6, 4, 3, 5), (2, 4), (1, 1), 2),  # padding = dilation * (kernel - 1): flipped pad 0
    ((1, 6, 12, 12), (4, 6, 3, 3), (1, 2), (2, 2), 1),  # dilated
    ((2, 4, 7, 7), (5, 4, 3, 3), (2, 1), 1, 1),  # padding beyond the kernel: direct declines, GEMM runs
])
def test_direct_backward_data_shapes(x_shape, w_shape, padding, dilation, groups):
    check_direct_and_auto(6, x_shape, w_shape, padding, dilation, groups)


@needs_direct
def test_direct_backward_weight_masks_the_row_tail():
    # OW = 12: the second 8-pixel vector of each row has 4 lanes past the row. The inputs those lanes
    # would read (beyond what any real tap reads for q = 0) hold inf: masked, they add exactly 0.
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 1, 6, 14)).astype(np.float32)
    dy = rng.standard_normal((2, 3, 6, 12)).astype(np.float32)
    x[:, :, :, 12:] = np.inf  # only taps q >= 1 reach columns 12, 13 (j + q with j <= 11)
    with cpu_impl("direct"):
        dw = F.conv2d_backward_weight(x, dy, (3, 1, 1, 3), padding=(0, 0))
    want = ref.conv2d_backward_weight(x.astype(np.float64), dy.astype(np.float64), (3, 1, 1, 3))
    assert np.isfinite(dw[..., 0]).all()
    np.testing.assert_array_equal(np.isfinite(dw), np.isfinite(want))
    fin = np.isfinite(want)
    assert_close(dw[fin], want[fin], rtol=1e-5, atol=1e-5)


@needs_direct
@pytest.mark.parametrize("nthreads", [1, 2])
@pytest.mark.parametrize("where", [(0, 2), (0, 3), (1, 0)])  # (image, channel) whose row 0 holds inf
def test_direct_backward_weight_masks_dy_past_the_row(nthreads, where):
    # OW = 12: a row's second vector of dy has 4 lanes past the row, which the kernel loads whole (and
    # clears) where they stay inside dy. Past channel c's last row lies channel c + 1's first row (or
    # the next image's first channel): inf there must reach only the gradients that really use it.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 1, 6, 14)).astype(np.float32)
    dy = rng.standard_normal((2, 6, 6, 12)).astype(np.float32)
    dy[where[0], where[1], 0, :4] = np.inf
    with cpu_impl("direct"), threads(nthreads):
        dw = F.conv2d_backward_weight(x, dy, (6, 1, 1, 3), padding=(0, 0))
    want = ref.conv2d_backward_weight(x.astype(np.float64), dy.astype(np.float64), (6, 1, 1, 3))
    assert not np.isfinite(want[where[1]]).all() and np.isfinite(np.delete(want, where[1], axis=0)).all()
    np.testing.assert_array_equal(np.isfinite(dw), np.isfinite(want))
    np.testing.assert_array_equal(np.isnan(dw), np.isnan(want))
    fin = np.isfinite(want)
    assert_close(dw[fin], want[fin], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", IMPLS + ["direct"])
@pytest.mark.parametrize("case", [
    # name: x_shape, w_shape, stride, padding, dilation, groups
    ("lenet_conv1", (3, 1, 28, 28), (6, 1, 5, 5), 1, 2, 1, 1),
    ("lenet_conv2", (2, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1, 1),  # direct: channel-vectorized (OW = 10)
    ("narrow_24_channels", (2, 3, 5, 7), (24, 3, 3, 3), 1, 1, 1, 1),  # 16 + 8 channels, 6 + 1 pixels
    ("narrow_groups", (3, 4, 6, 3), (18, 2, 2, 3), 1, (0, 1), (2, 1), 2),
    ("alexnet_conv1_small", (2, 3, 35, 35), (8, 3, 11, 11), 4, 0, 1, 1),
    ("alexnet_conv2_small", (3, 8, 13, 13), (12, 4, 5, 5), 1, 2, 1, 2),
    ("1x1", (3, 6, 5, 7), (4, 6, 1, 1), 1, 0, 1, 1),
    ("1x1_groups", (2, 6, 4, 3), (9, 2, 1, 1), 1, 0, 1, 3),
    ("1x1_strided", (2, 4, 7, 7), (5, 4, 1, 1), 2, 0, 1, 1),
    ("1x1_padded", (2, 4, 3, 3), (5, 4, 1, 1), 1, 1, 1, 1),
    ("depthwise", (2, 5, 9, 8), (10, 1, 3, 3), (2, 1), (1, 0), 1, 5),
    ("kernel_is_input", (2, 3, 6, 5), (4, 3, 6, 5), 1, 0, 1, 1),
    ("kernel_beyond_input", (1, 2, 3, 2), (3, 2, 5, 4), 1, (1, 1), 1, 1),
    ("padding_wider_than_image", (2, 2, 4, 1), (3, 2, 3, 7), 1, (1, 3), 1, 1),  # some taps see only padding
    ("padding_wider_dilated", (1, 3, 2, 3), (2, 3, 3, 3), 1, (3, 4), (3, 4), 1),
    ("non_square_dilated", (2, 3, 12, 9), (4, 3, 2, 4), (1, 2), (0, 3), (3, 1), 1),
    ("one_channel_batch1", (1, 1, 5, 5), (1, 1, 3, 3), 1, 1, 1, 1),
])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_layer_shapes(impl, case, dt):
    _, xs, ws, s, p, d, g = case
    if impl == "direct" and (dt != np.float32 or s != 1 or not direct_available()):
        pytest.skip("the direct kernel takes float32 stride-1 convs on AVX2")
    x, w, b = random_problem(np.random.default_rng(7), xs, ws, dt)
    with cpu_impl(impl):
        check_all(x, w, b, s, p, d, g)


@pytest.mark.parametrize("impl", IMPLS)
def test_large_image_in_bands(impl):
    # The GEMM path builds im2col columns in bands of output rows (8 MiB of columns each): here
    # K * OH * OW * 8 bytes = 81 * 131 * 131 * 8 = 11.1 MB, so two bands of 98 and 33 rows.
    x, w, b = random_problem(np.random.default_rng(3), (2, 9, 131, 131), (4, 9, 3, 3), np.float64)
    with cpu_impl(impl):
        check_all(x, w, b, padding=1)


def test_auto_matches_forced_paths(rng):
    x, w, b = random_problem(rng, (5, 6, 11, 10), (8, 3, 3, 3), np.float32)
    kw = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    with cpu_impl("gemm"):
        fast = F.conv2d(x, w, b, **kw)
    with cpu_impl("ref"):
        slow = F.conv2d(x, w, b, **kw)
    auto = F.conv2d(x, w, b, **kw)  # the default: the fast path for this shape
    np.testing.assert_array_equal(auto, fast)
    mag = ref.conv2d(np.abs(x), np.abs(w), np.abs(b), **kw)
    assert_close(fast, slow, rtol=0, atol=bound(3 * 9 + 1, mag, np.float32) * 2)


def test_set_cpu_impl_hook():
    old = _core._conv2d_set_cpu_impl("ref")
    try:
        assert _core._conv2d_set_cpu_impl("gemm") == "ref"
        assert _core._conv2d_set_cpu_impl("auto") == "gemm"
        assert _core._conv2d_set_cpu_impl("direct") == "auto"
        assert_raises(ValueError, r"must be 'auto', 'ref', 'gemm' or 'direct', got 'fast'", _core._conv2d_set_cpu_impl,
                      "fast")
        assert _core._conv2d_set_cpu_impl("auto") == "direct"
    finally:
        _core._conv2d_set_cpu_impl(old)


# ---- threads -------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS + ["direct"])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_thread_count_independent(impl, n, rng):
    if impl == "direct" and not direct_available():
        pytest.skip("no direct kernel here")
    # N = 5 on 2 threads: images 0-3 split per thread, image 4 on both threads inside the GEMM;
    # on 3 threads: 3 per thread, 2 shared. Backward weight sums per-thread partials in a fixed order.
    x, w, b = random_problem(rng, (n, 4, 13, 12), (6, 2, 3, 3), np.float32)
    kw = dict(stride=1, padding=1, groups=2)
    dy = rng.standard_normal((n, 6, 13, 12)).astype(np.float32)
    results = {}
    with cpu_impl(impl):
        for t in (1, 2, 3):
            with threads(t):
                results[t] = (F.conv2d(x, w, b, **kw), F.conv2d_backward_data(dy, w, x.shape, **kw),
                              F.conv2d_backward_weight(x, dy, w.shape, **kw), F.conv2d_backward_bias(dy))
    mags = (ref.conv2d(np.abs(x), np.abs(w), np.abs(b), **kw),
            ref.conv2d_backward_data(np.abs(dy), np.abs(w), x.shape, **kw),
            ref.conv2d_backward_weight(np.abs(x), np.abs(dy), w.shape, **kw),
            ref.conv2d_backward_bias(np.abs(dy)))
    terms = (2 * 9 + 1, 3 * 9, n * 13 * 12, n * 13 * 12)
    for t in (2, 3):
        for name, a, b1, mag, k in zip(("y", "dx", "dw", "db"), results[1], results[t], mags, terms):
            if impl == "ref" or name == "db" or (impl == "direct" and name in ("y", "dx", "dw")):
                np.testing.assert_array_equal(a, b1)  # one thread per output, one fixed order
            else:
                assert_close(b1, a, rtol=0, atol=bound(k, mag, np.float32) * 2, name=f"{name} on {t} threads")


# ---- gradients (float64, central differences through the real kernels) --------------------------

def check_conv_gradients(x, w, b, kw):
    """The three backward passes against finite differences of the forward (check_gradients)."""
    check_gradients(
        lambda x, w, b: F.conv2d(x, w, b, **kw),
        lambda dy, x, w, b: (F.conv2d_backward_data(dy, w, x.shape, **kw),
                             F.conv2d_backward_weight(x, dy, w.shape, **kw),
                             F.conv2d_backward_bias(dy)),
        [x, w, b], names=["x", "weight", "bias"])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kw", [
    dict(),
    dict(stride=2, padding=1),
    dict(stride=(1, 2), padding=(2, 0), dilation=(2, 1), groups=2),
    dict(padding=1, groups=4),  # depthwise
])
def test_gradients(impl, kw, rng):
    x, w, b = random_problem(rng, (2, 4, 7, 6), (4, 4 // kw.get("groups", 1), 3, 2), np.float64)
    with cpu_impl(impl):
        check_conv_gradients(x, w, b, kw)


@pytest.mark.parametrize("kw", [dict(stride=(2, 1), padding=(2, 1), dilation=(1, 2), groups=2), dict(padding=2)])
def test_gradients_tap_major_weight_gradient(kw, rng):
    # the weight gradient with tap-major columns (forced; float64 runs it too) against finite
    # differences, on odd shapes: a 5 x 3 kernel, stride, dilation, groups, 5 channels per group (runs
    # of one tap's channels that end inside a strip)
    ws = (4, 5, 5, 3) if kw.get("groups") else (3, 5, 5, 5)
    xs = (2, 10, 9, 7) if kw.get("groups") else (2, 5, 7, 6)
    x, w, b = random_problem(rng, xs, ws, np.float64)
    with cpu_impl("gemm"), env("CONVKIT_CONV_WGRAD_TAPS", "1"):
        check_conv_gradients(x, w, b, kw)


@pytest.mark.skipif(not indirect_runs, reason="the indirect forward runs on AVX2 only")
def test_gradients_through_the_indirect_forward(rng):
    # float32 (the only dtype the indirect tile takes): the forward, and the data gradient run as a
    # forward (a "same" 5 x 5 convolution: both through the indirect tile), against central
    # differences of that forward. The convolution is linear in each input, so a large step has no
    # truncation error and the float32 rounding of the loss stays far below the tolerance.
    x, w, b = random_problem(rng, (2, 16, 7, 9), (16, 16, 5, 5), np.float64)
    kw = dict(padding=2)
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    with cpu_impl("gemm"), indirect("1"), env("CONVKIT_CONV_BWD_AS_FWD", "1"):
        check_gradients(
            lambda x, w, b: F.conv2d(f32(x), f32(w), f32(b), **kw),
            lambda dy, x, w, b: (F.conv2d_backward_data(f32(dy), f32(w), x.shape, **kw),
                                 F.conv2d_backward_weight(f32(x), f32(dy), w.shape, **kw),
                                 F.conv2d_backward_bias(f32(dy))),
            [x, w, b], names=["x", "weight", "bias"], eps=0.5, rtol=1e-4, atol=1e-3)


def test_forced_routes_still_check_their_input():
    # with the new routes forced on, bad input is still refused by the argument checks, before any
    # route runs: mismatched channels, a float64 weight with float32 input, a non-contiguous view
    x = np.ones((1, 16, 9, 9), np.float32)
    with indirect("1"), env("CONVKIT_CONV_WGRAD_TAPS", "1"):
        assert_raises(ValueError, r"conv2d", F.conv2d, x, np.ones((16, 8, 5, 5), np.float32))
        assert_raises(TypeError, r"conv2d", F.conv2d, x, np.ones((16, 16, 5, 5), np.float64))
        assert_raises(ValueError, r"contiguous", F.conv2d, x[:, :, ::2], np.ones((16, 16, 5, 5), np.float32))
        assert_raises(ValueError, r"conv2d_backward_weight", F.conv2d_backward_weight, x,
                      np.ones((1, 16, 4, 4), np.float32), (16, 16, 5, 5), padding=2)


@pytest.mark.parametrize("kw", [dict(padding=(1, 2), groups=2), dict(padding=2, dilation=2)])
def test_gradients_data_as_forward(kw, rng):
    # the data gradient through conv2d_gemm.cpp's forward route (forced), against finite differences
    # of the forward, on odd "same" shapes (3 x 5 kernel with groups; dilation 2)
    ws = (4, 3, 3, 5) if kw.get("groups") else (3, 5, 3, 3)
    xs = (2, 6, 7, 5) if kw.get("groups") else (2, 5, 7, 9)
    x, w, b = random_problem(rng, xs, ws, np.float64)
    with cpu_impl("gemm"), env("CONVKIT_CONV_BWD_AS_FWD", "1"):
        check_conv_gradients(x, w, b, kw)


# ---- Winograd F(2 x 2, 3 x 3) (conv2d_winograd.cpp) -----------------------------------------------

def winograd(mode):
    """CONVKIT_CONV_WINOGRAD: '1' forces the Winograd routes for every 3 x 3, stride-1, undilated conv
    with padding <= 2 and every 5-wide one (F(2, 5) along the rows) with padding <= 4 across and
    below the kernel's height down (any dtype, channel and image count; auto mode only), '0' keeps
    them off; unset, they take float32 layers with enough channels (see each route's tests)."""
    return env("CONVKIT_CONV_WINOGRAD", mode)


def winograd_bounds(x, w, b, dy, padding, groups, dt):
    """Elementwise error bounds of the route's forward, data gradient and weight gradient: bound()
    with the magnitudes of all the terms the route adds, transforms included (reference/winograd.py
    with absolute values). Terms: the forward sums Cg products, each of a weight transformed in up to
    4 roundings and an input in 2, then 4 roundings of the output transform and the bias: Cg + 12;
    the data gradient OCg products, 2 + 4 + 4 roundings of the transforms and up to 4 overlapping
    patches: OCg + 14; the weight gradient one product per tile of every image (and a partial sum
    per thread), 2 + 2 + 6 roundings of the transforms: tiles + 16."""
    cg, ocg = w.shape[1], w.shape[0] // groups
    ph, pw = (padding, padding) if np.isscalar(padding) else padding
    tiles = x.shape[0] * ((x.shape[2] + 2 * ph - 1) // 2) * ((x.shape[3] + 2 * pw - 1) // 2)
    return (bound(cg + 12, wref.forward(x, w, b, padding, groups, absolute=True), dt),
            bound(ocg + 14, wref.backward_data(dy, w, x.shape, padding, groups, absolute=True), dt),
            bound(tiles + 16, wref.backward_weight(x, dy, w.shape, padding, groups, absolute=True), dt))


def winograd_passes(x, w, b, dy, padding, groups):
    kw = dict(padding=padding, groups=groups)
    return (F.conv2d(x, w, b, **kw), F.conv2d_backward_data(dy, w, x.shape, **kw),
            F.conv2d_backward_weight(x, dy, w.shape, **kw))


def test_winograd_reference_is_the_convolution(rng):
    # the tests' own float64 Winograd (reference/winograd.py) against the plain reference: the same
    # linear map and its adjoints, to float64 rounding; its magnitudes cover the direct sums'
    for xs, ws, p, g in [((2, 6, 7, 9), (4, 3, 3, 3), 1, 2), ((1, 3, 5, 4), (6, 3, 3, 3), (0, 2), 1)]:
        x, w, b = random_problem(rng, xs, ws, np.float64)
        y = ref.conv2d(x, w, b, padding=p, groups=g)
        dy = rng.standard_normal(y.shape)
        assert_close(wref.forward(x, w, b, p, g), y, rtol=1e-13, atol=1e-13)
        assert_close(wref.backward_data(dy, w, x.shape, p, g), ref.conv2d_backward_data(dy, w, x.shape, padding=p,
                     groups=g), rtol=1e-13, atol=1e-13)
        assert_close(wref.backward_weight(x, dy, w.shape, p, g), ref.conv2d_backward_weight(x, dy, w.shape, padding=p,
                     groups=g), rtol=1e-13, atol=1e-13)
        direct = ref.conv2d(np.abs(x), np.abs(w), np.abs(b), padding=p, groups=g)
        assert np.all(wref.forward(x, w, b, p, g, absolute=True) >= direct * (1 - 1e-12))


# x shape, w shape, padding, groups: the 3 x 3 route's geometries, then the rows route's (5-wide kernels)
WINOGRAD_GEOMS = [
    ((2, 5, 7, 9), (6, 5, 3, 3), 1, 1),        # odd output: a last tile row and column half outside
    ((3, 6, 8, 5), (4, 3, 3, 3), 0, 2),        # no padding, groups, 3 images
    ((2, 4, 6, 6), (6, 4, 3, 3), 2, 1),        # padding 2: the output larger than the input
    ((2, 4, 5, 7), (10, 2, 3, 3), (2, 0), 2),  # asymmetric padding
    ((2, 3, 1, 12), (2, 3, 3, 3), 1, 1),       # one output row: one tile row, half of it outside
    ((2, 8, 30, 26), (8, 8, 3, 3), 1, 1),      # 15 x 13 tiles: several chunks per image
    ((2, 64, 13, 13), (96, 32, 3, 3), 1, 2),   # AlexNet-like channels and groups
    ((2, 300, 6, 5), (260, 300, 3, 3), 1, 1),  # 300 / 260 channels: two K blocks in the packed products
    ((3, 32, 9, 9), (32, 16, 3, 3), 1, 2),     # 3 images really on 2 threads (1.1M multiply-adds; 64K per thread)
    ((2, 5, 7, 9), (6, 5, 5, 5), 2, 1),        # odd output width: the last tile half outside
    ((3, 6, 8, 6), (4, 3, 5, 5), 0, 2),        # no padding: one tile per row; groups, 3 images
    ((2, 4, 6, 6), (6, 4, 5, 5), 4, 1),        # padding 4: the output larger than the input
    ((2, 4, 5, 7), (10, 2, 5, 5), (2, 0), 2),  # asymmetric padding
    ((2, 3, 9, 8), (4, 3, 3, 5), (1, 2), 1),   # a 3 x 5 kernel
    ((2, 3, 1, 12), (2, 3, 1, 5), (0, 2), 1),  # a one-row kernel on a one-row input
    ((2, 8, 32, 27), (8, 8, 5, 5), 2, 1),      # 32 x 14 tiles per image: two chunks of rows
    ((2, 64, 13, 13), (96, 32, 5, 5), 2, 2),   # AlexNet-like channels and groups
    ((3, 32, 9, 9), (32, 16, 5, 5), 2, 2),     # 6 image-groups on 2 threads: each thread sums part of both groups
    ((1, 48, 11, 11), (48, 16, 5, 5), 2, 3),   # one image's 3 groups on 2 threads: a thread's dU misses groups
]


def route_bounds(w):
    """The bounds of the route a forced-on conv with these weights takes."""
    return winograd_bounds if w.shape[3] == 3 else rows_bounds


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("geom", WINOGRAD_GEOMS)
def test_winograd_matches_reference(dt, geom, rng):
    # forced on, 1 and 2 threads, all three passes against the reference within the route's bounds;
    # the forward and data gradient do not depend on the thread count (each output by one thread)
    xs, ws, p, g = geom
    x, w, b = random_problem(rng, xs, ws, dt)
    kw = dict(padding=p, groups=g)
    want = (ref.conv2d(x, w, b, **kw),)
    dy = rng.standard_normal(want[0].shape).astype(dt)
    want += (ref.conv2d_backward_data(dy, w, x.shape, **kw), ref.conv2d_backward_weight(x, dy, w.shape, **kw))
    tols = route_bounds(w)(x, w, b, dy, p, g, dt)
    got = {}
    for n in (1, 2):
        with winograd("1"), threads(n):
            got[n] = winograd_passes(x, w, b, dy, p, g)
        for name, a, r, tol in zip(("y", "dx", "dw"), got[n], want, tols):
            assert a.dtype == dt
            assert_close(a, r, rtol=0, atol=tol, name=f"{name}, {n} threads")
    assert np.array_equal(got[1][0], got[2][0]) and np.array_equal(got[1][1], got[2][1])
    if dt == np.float32 and ws[1] >= 8:  # it really ran: the direct sums round differently
        with winograd("0"):
            direct = winograd_passes(x, w, b, dy, p, g)
        assert not any(np.array_equal(a, d) for a, d in zip(got[1], direct))


def check_auto_takes(x, w, b, dy, padding, groups):
    """Auto mode picks the route (the same bits as forced on, not those of the route off), within
    its bounds."""
    auto = winograd_passes(x, w, b, dy, padding, groups)
    with winograd("1"):
        forced = winograd_passes(x, w, b, dy, padding, groups)
    with winograd("0"):
        off = winograd_passes(x, w, b, dy, padding, groups)
    kw = dict(padding=padding, groups=groups)
    want = (ref.conv2d(x, w, b, **kw), ref.conv2d_backward_data(dy, w, x.shape, **kw),
            ref.conv2d_backward_weight(x, dy, w.shape, **kw))
    for name, a, f, o, r, tol in zip(("y", "dx", "dw"), auto, forced, off, want,
                                     route_bounds(w)(x, w, b, dy, padding, groups, np.float32)):
        assert np.array_equal(a, f) and not np.array_equal(a, o), name
        assert_close(a, r, rtol=0, atol=tol, name=name)


def test_winograd_auto_takes_alexnet_conv4(rng):
    # float32, 192 x 192 channels per group on 13 x 13, 4 images (676 output pixels; auto wants 512)
    x, w, b = random_problem(rng, (4, 384, 13, 13), (384, 192, 3, 3), np.float32)
    check_auto_takes(x, w, b, rng.standard_normal((4, 384, 13, 13)).astype(np.float32), 1, 2)


def test_winograd_auto_declines_small_layers(rng):
    # 32 channels, float64, a 7 x 7 output or one 13 x 13 image: auto keeps the GEMM path (the same
    # bits as with the route off); CONVKIT_CONV_IMPL=gemm never takes it, even forced on
    cases = [(np.float32, (2, 32, 12, 12), (32, 32, 3, 3)), (np.float64, (2, 128, 9, 9), (128, 128, 3, 3)),
             (np.float32, (2, 128, 7, 7), (128, 128, 3, 3)), (np.float32, (1, 128, 13, 13), (128, 128, 3, 3))]
    for dt, xs, ws in cases:
        x, w, b = random_problem(rng, xs, ws, dt)
        dy = rng.standard_normal((xs[0], ws[0], xs[2], xs[3])).astype(dt)
        auto = winograd_passes(x, w, b, dy, 1, 1)
        with winograd("0"):
            off = winograd_passes(x, w, b, dy, 1, 1)
        assert all(np.array_equal(a, o) for a, o in zip(auto, off)), (dt, xs)
    with cpu_impl("gemm"), winograd("1"):
        gemm = winograd_passes(x, w, b, dy, 1, 1)
    assert all(np.array_equal(a, o) for a, o in zip(gemm, off))


@pytest.mark.parametrize("kw", [dict(stride=2, padding=1), dict(padding=1, dilation=2), dict(padding=3),
                                dict(padding=2, kernel=(5, 3)), dict(padding=(1, 0), kernel=(3, 1))])
def test_winograd_declines_what_it_cannot_do(kw, rng):
    # forced on, shapes outside F(2 x 2, 3 x 3) with padding <= 2 (and outside the rows route's
    # 5-wide kernels) run where they ran before: the same bits as with it off
    kw = dict(kw)
    k = kw.pop("kernel", 3)
    kh, kwd = (k, k) if np.isscalar(k) else k
    x, w, b = random_problem(rng, (2, 8, 11, 10), (8, 8, kh, kwd), np.float32)
    with winograd("1"):
        y1 = F.conv2d(x, w, b, **kw)
    with winograd("0"):
        y0 = F.conv2d(x, w, b, **kw)
    assert np.array_equal(y1, y0)


def test_winograd_inf_stays_in_its_windows():
    # an inf in the input makes non-finite exactly the outputs whose window holds it (the reference's
    # inf; the route may give NaN there, its transforms subtract it from itself) and nothing else:
    # the transforms' sums skip the tile values an output does not use
    for where in [(0, 0), (6, 7), (3, 4), (12, 12)]:
        x = np.ones((1, 8, 13, 13), np.float32)
        x[0, 5][where] = np.inf
        w = np.ones((8, 8, 3, 3), np.float32)
        with winograd("1"):
            y = F.conv2d(x, w, padding=1)
        want = ref.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1)
        assert np.array_equal(np.isfinite(y), np.isfinite(want)), where
        fin = np.isfinite(want)
        assert np.array_equal(y[fin], want[fin].astype(np.float32)), where  # small integers: exact


@pytest.mark.parametrize("k", [3, 5])
def test_winograd_forced_still_checks_its_input(k):
    # forced on, bad input to all three passes is refused by the argument checks before the route
    # (the 3 x 3 one or the rows one) runs
    x = np.ones((2, 8, 9, 9), np.float32)
    w = np.ones((8, 8, k, k), np.float32)
    dy = np.ones((2, 8, 9, 9), np.float32)
    p = k // 2
    with winograd("1"):
        assert_raises(ValueError, r"conv2d", F.conv2d, x, np.ones((8, 4, k, k), np.float32), padding=p)
        assert_raises(TypeError, r"conv2d", F.conv2d, x, w.astype(np.float64), padding=p)
        assert_raises(ValueError, r"contiguous", F.conv2d, x[:, :, ::2], w, padding=p)
        assert_raises(ValueError, r"conv2d_backward_data", F.conv2d_backward_data, dy[:, :, :7], w, x.shape, padding=p)
        assert_raises(ValueError, r"conv2d_backward_weight", F.conv2d_backward_weight, x, dy[:, :4], w.shape,
                      padding=p)


@pytest.mark.parametrize("xs,ws,kw", [
    ((2, 4, 7, 6), (4, 2, 3, 3), dict(padding=(1, 2), groups=2)), ((2, 3, 6, 7), (5, 3, 3, 3), dict(padding=0)),
    ((2, 4, 7, 8), (4, 2, 3, 5), dict(padding=(1, 2), groups=2)), ((2, 3, 6, 9), (5, 3, 5, 5), dict(padding=0)),
])
def test_winograd_gradients(xs, ws, kw, rng):
    # float64 through the route (forced; 3 x 3 or 5-wide) against central differences of its own forward
    x, w, b = random_problem(rng, xs, ws, np.float64)
    with winograd("1"):
        check_conv_gradients(x, w, b, kw)


@pytest.mark.parametrize("k", [3, 5])
def test_winograd_against_torch(k, rng):
    # float64 forced through the route (3 x 3 or the rows one) against PyTorch's CPU convolution and
    # its autograd
    torch = pytest.importorskip("torch")
    x, w, b = random_problem(rng, (2, 6, 9, 11), (8, 3, k, k), np.float64)
    kw = dict(padding=k // 2, groups=2)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, **kw)
    dy = rng.standard_normal(ty.shape)
    ty.backward(torch.tensor(dy))
    with winograd("1"):
        y, dx, dw = winograd_passes(x, w, b, dy, k // 2, 2)
    # float64: ~1e-15 relative (the rows route's transforms hold 4s, 5s and 1/24s) to magnitudes below
    # 100 here
    assert_close(y, ty.detach().numpy(), rtol=1e-12, atol=1e-11)
    assert_close(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-11)
    assert_close(dw, tw.grad.numpy(), rtol=1e-12, atol=1e-11)


# ---- Winograd F(2, 5) along the rows (conv2d_winograd_rows.cpp) -------------------------------------

def rows_bounds(x, w, b, dy, padding, groups, dt):
    """Elementwise error bounds of the rows route's three passes: bound() with the magnitudes of all
    the terms it adds (reference/winograd.py's rows_* with absolute values). Terms: the forward sums
    KH Cg products, each of a weight transformed in up to 5 roundings and an input in 3, then 5 of
    the output transform and the bias: KH Cg + 14; the data gradient OCg products (a transformed dy
    in 2 roundings), KH rows added, 4 roundings back and 3 overlapping tiles: OCg + KH + 12; the
    weight gradient one product per tile of every image (a partial sum per thread), 2 + 3 + 6
    roundings of the transforms: tiles + 14."""
    oc, cg, kh = w.shape[:3]
    ph, pw = (padding, padding) if np.isscalar(padding) else padding
    oh, ow = x.shape[2] + 2 * ph - kh + 1, x.shape[3] + 2 * pw - 4
    tiles = x.shape[0] * oh * ((ow + 1) // 2)
    return (bound(kh * cg + 14, wref.rows_forward(x, w, b, padding, groups, absolute=True), dt),
            bound(oc // groups + kh + 12, wref.rows_backward_data(dy, w, x.shape, padding, groups, absolute=True), dt),
            bound(tiles + 14, wref.rows_backward_weight(x, dy, w.shape, padding, groups, absolute=True), dt))


def test_winograd_rows_reference_is_the_convolution(rng):
    # the tests' float64 F(2, 5) along the rows against the plain reference: the same linear map and
    # its adjoints, to float64 rounding (its transforms hold 4s, 5s and 1/24s); its magnitudes cover
    # the direct sums'
    for xs, ws, p, g in [((2, 6, 7, 9), (4, 3, 5, 5), 2, 2), ((1, 3, 5, 4), (6, 3, 3, 5), (0, 2), 1),
                         ((2, 2, 6, 5), (2, 2, 1, 5), (0, 4), 1)]:
        x, w, b = random_problem(rng, xs, ws, np.float64)
        kw = dict(padding=p, groups=g)
        y = ref.conv2d(x, w, b, **kw)
        dy = rng.standard_normal(y.shape)
        assert_close(wref.rows_forward(x, w, b, p, g), y, rtol=1e-13, atol=1e-12)
        assert_close(wref.rows_backward_data(dy, w, x.shape, p, g), ref.conv2d_backward_data(dy, w, x.shape, **kw),
                     rtol=1e-13, atol=1e-12)
        assert_close(wref.rows_backward_weight(x, dy, w.shape, p, g),
                     ref.conv2d_backward_weight(x, dy, w.shape, **kw), rtol=1e-13, atol=1e-12)
        direct = ref.conv2d(np.abs(x), np.abs(w), np.abs(b), **kw)
        assert np.all(wref.rows_forward(x, w, b, p, g, absolute=True) >= direct * (1 - 1e-12))


def test_winograd_rows_auto_takes_a_conv2_like_layer(rng):
    # float32 5 x 5, 32 input and 64 output channels per group on 16 x 16, 2 images (512 output
    # pixels, the least auto takes)
    x, w, b = random_problem(rng, (2, 64, 16, 16), (128, 32, 5, 5), np.float32)
    check_auto_takes(x, w, b, rng.standard_normal((2, 128, 16, 16)).astype(np.float32), 2, 2)


def test_winograd_rows_auto_takes_one_image_of_two_groups_on_two_threads(rng):
    # the units of work are image-groups: AlexNet conv2's shape at batch 1 gives both threads a group
    x, w, b = random_problem(rng, (1, 96, 27, 27), (256, 48, 5, 5), np.float32)
    with threads(2):
        check_auto_takes(x, w, b, rng.standard_normal((1, 256, 27, 27)).astype(np.float32), 2, 2)


def test_winograd_rows_auto_declines_small_layers(rng):
    # float64; 16 input or 32 output channels per group; a 3 x 5 kernel; a 10-wide output (5 tiles);
    # 1 image of one group on 2 threads: auto keeps the other paths (the same bits as with the route off)
    cases = [(np.float64, (2, 64, 16, 16), (64, 64, 5, 5), 1), (np.float32, (2, 16, 16, 16), (64, 16, 5, 5), 1),
             (np.float32, (2, 64, 16, 16), (32, 64, 5, 5), 1), (np.float32, (2, 64, 16, 16), (64, 64, 3, 5), 1),
             (np.float32, (4, 64, 10, 10), (64, 64, 5, 5), 1), (np.float32, (1, 64, 24, 24), (64, 64, 5, 5), 2)]
    for dt, xs, ws, nt in cases:
        x, w, b = random_problem(rng, xs, ws, dt)
        pad = (ws[2] // 2, 2)
        dy = rng.standard_normal((xs[0], ws[0], xs[2], xs[3])).astype(dt)
        with threads(nt):
            auto = winograd_passes(x, w, b, dy, pad, 1)
            with winograd("0"):
                off = winograd_passes(x, w, b, dy, pad, 1)
        assert all(np.array_equal(a, o) for a, o in zip(auto, off)), (dt, xs, ws)


@pytest.mark.parametrize("kw", [dict(stride=2, padding=2), dict(padding=4, dilation=2), dict(padding=5),
                                dict(padding=(2, 2), kernel=(2, 5)), dict(padding=3, kernel=(5, 7))])
def test_winograd_rows_declines_what_it_cannot_do(kw, rng):
    # forced on, shapes outside the rows route (stride or dilation 2, padding 5 across, padding at
    # least the kernel's height down, a 7-wide kernel) run where they ran before: the same bits
    kw = dict(kw)
    k = kw.pop("kernel", 5)
    kh, kwd = (k, k) if np.isscalar(k) else k
    x, w, b = random_problem(rng, (2, 8, 13, 12), (8, 8, kh, kwd), np.float32)
    with winograd("1"):
        y1 = F.conv2d(x, w, b, **kw)
    with winograd("0"):
        y0 = F.conv2d(x, w, b, **kw)
    assert np.array_equal(y1, y0)


def test_winograd_rows_inf_stays_in_its_windows():
    # an inf in the input makes non-finite exactly the outputs whose window holds it and nothing
    # else: a tile's first input column feeds only its first output, its last only its second
    for where in [(0, 0), (6, 7), (3, 4), (12, 12), (5, 0), (5, 1)]:
        x = np.ones((1, 8, 13, 13), np.float32)
        x[0, 5][where] = np.inf
        w = np.ones((8, 8, 5, 5), np.float32)
        with winograd("1"):
            y = F.conv2d(x, w, padding=2)
        want = ref.conv2d(x.astype(np.float64), w.astype(np.float64), padding=2)
        assert np.array_equal(np.isfinite(y), np.isfinite(want)), where
        fin = np.isfinite(want)
        mag = wref.rows_forward(np.ones(x.shape), w, None, 2, 1, absolute=True)  # the finite terms' magnitudes
        assert_close(y[fin], want[fin], rtol=0, atol=bound(8 * 5 + 14, mag[fin], np.float32))


# ---- torch ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("xs,ws,kw", [
    ((2, 3, 9, 9), (4, 3, 3, 3), dict(stride=1, padding=1)),
    ((2, 4, 11, 10), (6, 2, 3, 5), dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1), groups=2)),
    ((1, 6, 8, 8), (6, 1, 3, 3), dict(padding=2, dilation=2, groups=6)),
    ((3, 6, 13, 13), (8, 3, 5, 5), dict(padding=2, groups=2)),  # AlexNet conv2's geometry, smaller
    ((2, 3, 31, 31), (4, 3, 11, 11), dict(stride=4)),            # AlexNet conv1's
])
def test_against_torch(impl, xs, ws, kw, rng):
    torch = pytest.importorskip("torch")
    x, w, b = random_problem(rng, xs, ws, np.float64)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, **kw)
    dy = rng.standard_normal(ty.shape)
    ty.backward(torch.tensor(dy))
    with cpu_impl(impl):
        # float64 on both sides: the sums differ only by rounding, ~1e-16 relative to the magnitudes (< 10 here)
        assert_close(F.conv2d(x, w, b, **kw), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
        assert_close(F.conv2d_backward_data(dy, w, x.shape, **kw), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
        assert_close(F.conv2d_backward_weight(x, dy, w.shape, **kw), tw.grad.numpy(), rtol=1e-12, atol=1e-11)
        assert_close(F.conv2d_backward_bias(dy), tb.grad.numpy(), rtol=1e-12, atol=1e-12)


# ---- devices -------------------------------------------------------------------------------------

def test_on_device(device, rng):
    x, w, b = random_problem(rng, (2, 4, 9, 8), (6, 2, 3, 3), np.float32)
    kw = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    y = F.conv2d(on(device, x), on(device, w), on(device, b), **kw)
    mag = ref.conv2d(np.abs(x), np.abs(w), np.abs(b), **kw)
    assert_close(convkit.to_numpy(y), ref.conv2d(x, w, b, **kw), rtol=0, atol=bound(2 * 9 + 1, mag, np.float32))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = F.conv2d_backward_data(on(device, dy), on(device, w), x.shape, **kw)
    assert_close(convkit.to_numpy(dx), ref.conv2d_backward_data(dy, w, x.shape, **kw), rtol=1e-4, atol=1e-4)
    dw = F.conv2d_backward_weight(on(device, x), on(device, dy), w.shape, **kw)
    assert_close(convkit.to_numpy(dw), ref.conv2d_backward_weight(x, dy, w.shape, **kw), rtol=1e-4, atol=1e-4)
    db = F.conv2d_backward_bias(on(device, dy))
    assert_close(convkit.to_numpy(db), ref.conv2d_backward_bias(dy), rtol=1e-4, atol=1e-4)


# ---- bad input: the Python layer, then the C++ checks behind it ----------------------------------

def test_bad_input_functional():
    x = np.ones((2, 4, 5, 5), np.float32)
    w = np.ones((6, 2, 3, 3), np.float32)
    b = np.ones(6, np.float32)
    dy = np.ones((2, 6, 3, 3), np.float32)
    fn = F.conv2d
    assert_raises(ValueError, r"conv2d: x must have shape \[N, C, H, W\], got \[4, 5, 5\]", fn, x[0], w)
    assert_raises(ValueError, r"conv2d: weight must have shape \[OC, C/groups, KH, KW\], got \[6, 2, 3\]",
                  fn, x, w[..., 0])
    assert_raises(TypeError, r"conv2d: weight has dtype float64 but x has float32", fn, x, w.astype(np.float64))
    assert_raises(TypeError, r"conv2d: x must have dtype float32 or float64, got int64", fn, x.astype(np.int64), w)
    assert_raises(ValueError, r"groups=3 must divide the input channels C=4", fn, x, w, groups=3)
    assert_raises(ValueError, r"groups=4 must divide the output channels OC=6", fn, x, np.ones((6, 1, 3, 3), np.float32),
                  groups=4)
    assert_raises(ValueError, r"weight must have shape \[OC, C/groups, KH, KW\] = \[6, 2, 3, 3\]", fn, x,
                  np.ones((6, 4, 3, 3), np.float32), groups=2)
    assert_raises(ValueError, r"output size -1x-1 <= 0", fn, x, np.ones((6, 4, 7, 7), np.float32))
    assert_raises(ValueError, r"C-contiguous", fn, np.ones((2, 4, 5, 10), np.float32)[..., ::2], w, groups=2)
    assert_raises(ValueError, r"conv2d: x is empty", fn, np.ones((0, 4, 5, 5), np.float32), w, groups=2)
    assert_raises(ValueError, r"conv2d: bias must have shape \[6\], got \[5\]", fn, x, w, b[:5], groups=2)
    assert_raises(ValueError, r"conv2d: stride must be >= 1, got 0", fn, x, w, stride=0, groups=2)
    assert_raises(ValueError, r"conv2d: stride must be >= 1, got -1", fn, x, w, stride=(1, -1), groups=2)
    assert_raises(ValueError, r"conv2d: dilation must be >= 1, got 0", fn, x, w, dilation=0, groups=2)
    assert_raises(ValueError, r"conv2d: padding must be >= 0, got -1", fn, x, w, padding=-1, groups=2)
    assert_raises(ValueError, r"conv2d: groups must be >= 1, got 0", fn, x, w, groups=0)
    assert_raises(TypeError, r"conv2d: stride must be an int", fn, x, w, stride=1.5, groups=2)
    # backward: the x_shape / weight_shape that do not fit dy
    assert_raises(ValueError, r"conv2d_backward_data: dy must have shape \[2, 6, 4, 4\], got \[2, 6, 3, 3\]",
                  F.conv2d_backward_data, dy, w, (2, 4, 6, 6), groups=2)
    assert_raises(ValueError, r"conv2d_backward_data: x_shape must be a 4-tuple", F.conv2d_backward_data, dy, w,
                  (4, 5, 5), groups=2)
    assert_raises(ValueError, r"conv2d_backward_data: x_shape must be >= 1, got 0", F.conv2d_backward_data, dy, w,
                  (2, 4, 0, 5), groups=2)
    assert_raises(ValueError, r"conv2d_backward_weight: dy must have shape \[2, 6, 1, 1\]",
                  F.conv2d_backward_weight, x, dy, (6, 2, 5, 5), groups=2)
    assert_raises(TypeError, r"conv2d_backward_weight: dy has dtype float64 but x has float32",
                  F.conv2d_backward_weight, x, dy.astype(np.float64), w.shape, groups=2)
    assert_raises(ValueError, r"conv2d_backward_bias: dy must have shape \[N, OC, OH, OW\], got \[6, 3, 3\]",
                  F.conv2d_backward_bias, dy[0])


def test_bad_input_core():
    # The binding's own checks, for callers that skip convkit.functional.
    x = np.ones((2, 4, 5, 5), np.float32)
    w = np.ones((6, 2, 3, 3), np.float32)
    b = np.ones(6, np.float32)
    dy = np.ones((2, 6, 3, 3), np.float32)
    one, zero = (1, 1), (0, 0)

    def fwd(x=x, w=w, b=b, stride=one, padding=zero, dilation=one, groups=2):
        return _core.conv2d_forward(x, w, b, stride, padding, dilation, groups)

    fwd()  # the baseline is valid
    assert_raises(ValueError, r"conv2d_forward: x must have shape \[N, C, H, W\], got \[4, 5, 5\]", fwd, x=x[0])
    assert_raises(ValueError, r"conv2d_forward: weight must be float32, got float64", fwd, w=w.astype(np.float64))
    assert_raises(ValueError, r"conv2d_forward: bias must be float32, got float64", fwd, b=b.astype(np.float64))
    assert_raises(ValueError, r"conv2d_forward: x must be float32 or float64, got int64", fwd,
                  x=x.astype(np.int64), w=w.astype(np.int64), b=b.astype(np.int64))
    assert_raises(ValueError, r"conv2d_forward: groups=3 must divide the input channels C=4", fwd, groups=3)
    assert_raises(ValueError, r"conv2d_forward: groups=4 must divide the output channels OC=6", fwd,
                  w=np.ones((6, 1, 3, 3), np.float32), groups=4)
    assert_raises(ValueError, r"conv2d_forward: weight must have shape \[6, 2, 3, 3\], got \[6, 3, 3, 3\]", fwd,
                  w=np.ones((6, 3, 3, 3), np.float32))
    assert_raises(ValueError, r"conv2d_forward: groups must be >= 1, got 0", fwd, groups=0)
    assert_raises(ValueError, r"output size -1 <= 0", fwd, w=np.ones((6, 2, 7, 3), np.float32))
    assert_raises(ValueError, r"C-contiguous", fwd, x=np.ones((2, 4, 5, 10), np.float32)[..., ::2])
    assert_raises(ValueError, r"conv2d_forward: x is empty", fwd, x=np.ones((0, 4, 5, 5), np.float32))
    assert_raises(ValueError, r"conv2d_forward: weight is empty", fwd, w=np.ones((0, 2, 3, 3), np.float32),
                  b=np.ones(0, np.float32))
    assert_raises(ValueError, r"conv2d_forward: bias must have shape \[6\], got \[5\]", fwd, b=b[:5])
    assert_raises(ValueError, r"conv2d_forward: bias must have shape \[OC\], got \[6, 1\]", fwd, b=b[:, None])
    assert_raises(ValueError, r"stride must be >= 1, got 0", fwd, stride=(1, 0))
    assert_raises(ValueError, r"stride must be >= 1, got -2", fwd, stride=(-2, 1))
    assert_raises(ValueError, r"dilation must be >= 1, got 0", fwd, dilation=(0, 1))
    assert_raises(ValueError, r"padding must be >= 0, got -1", fwd, padding=(0, -1))
    assert_raises(TypeError, r"conv2d_forward: x must be a numpy array", fwd, x=[[1.0]])
    assert_raises(OverflowError, r"overflows", fwd, padding=(2**62, 0))

    # backward data: a wrong x_shape shows up as a dy that does not fit it
    bd = _core.conv2d_backward_data
    bd(dy, w, [2, 4, 5, 5], one, zero, one, 2)
    assert_raises(ValueError, r"conv2d_backward_data: dy must have shape \[2, 6, 4, 4\] .*, got \[2, 6, 3, 3\]", bd,
                  dy, w, [2, 4, 6, 6], one, zero, one, 2)
    assert_raises(ValueError, r"conv2d_backward_data: weight must have shape \[6, 4, 3, 3\], got \[6, 2, 3, 3\]",
                  bd, dy, w, [2, 8, 5, 5], one, zero, one, 2)
    assert_raises(ValueError, r"conv2d_backward_data: x_shape must have 4 entries", bd, dy, w, [4, 5, 5], one, zero,
                  one, 2)
    assert_raises(ValueError, r"conv2d_backward_data: weight must be float32, got float64", bd, dy,
                  w.astype(np.float64), [2, 4, 5, 5], one, zero, one, 2)
    assert_raises(ValueError, r"conv2d_backward_data: dy must be float32 or float64, got int64", bd,
                  dy.astype(np.int64), w, [2, 4, 5, 5], one, zero, one, 2)
    # backward weight: a wrong w_shape
    bw = _core.conv2d_backward_weight
    bw(x, dy, [6, 2, 3, 3], one, zero, one, 2)
    assert_raises(ValueError, r"conv2d_backward_weight: dw must have shape \[6, 2, 3, 3\], got \[6, 4, 3, 3\]", bw,
                  x, dy, [6, 4, 3, 3], one, zero, one, 2)
    assert_raises(ValueError, r"conv2d_backward_weight: dy must have shape \[2, 6, 1, 1\]", bw, x, dy,
                  [6, 2, 5, 5], one, zero, one, 2)
    assert_raises(ValueError, r"conv2d_backward_weight: dy must be float32, got float64", bw, x,
                  dy.astype(np.float64), [6, 2, 3, 3], one, zero, one, 2)
    assert_raises(ValueError, r"conv2d_backward_bias: dy must have shape \[N, OC, OH, OW\]",
                  _core.conv2d_backward_bias, dy[0])
    assert_raises(ValueError, r"conv2d_backward_bias: dy is empty", _core.conv2d_backward_bias,
                  np.ones((0, 6, 3, 3), np.float32))


def test_cuda_without_device_is_clear():
    if convkit.cuda_available():
        pytest.skip("a CUDA device is usable here")
    assert_raises(RuntimeError, r"device='cuda' requested but CUDA is not usable",
                  convkit.asarray, np.ones(3, np.float32), device="cuda")
