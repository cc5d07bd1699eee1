"""convkit's own GEMM (csrc/gemm) through the test hook convkit._core._gemm.

The hook computes C = alpha * op(A) @ op(B) + beta * C in place on flat numpy buffers viewed as
row-major matrices with leading dimensions lda, ldb, ldc. Padding between rows is filled with NaN,
so a kernel that reads outside the logical matrices poisons its result, and the padding of C must
come back untouched.

Tolerance: every element is a sum of K products computed in the working precision, then scaled by
alpha and combined with beta * C. The standard worst-case bound for such a sum (any summation order,
with or without FMA) is |computed - exact| <= gamma_{K+3} * (|alpha| * (|A| @ |B|) + |beta| * |C|)
with gamma_n = n*u / (1 - n*u), u the unit roundoff (2^-24 for float32, 2^-53 for float64); the
+3 covers alpha, beta and the final add. The reference is numpy's float64 matmul of the same
(already rounded) inputs; its own error obeys the same bound with u = 2^-53, negligible next to a
float32 result's bound, and as large as a float64 result's, so for float64 the bound is doubled.
Being a bound and not an estimate, it cannot flake, yet it catches a wrong index at once.
"""
import itertools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convkit
from convkit import _core
from convkit.testing import assert_raises

DTYPES = [np.float32, np.float64]


def gemm_reference(trans_a, trans_b, alpha, A, B, beta, C):
    """float64: alpha * op(A) @ op(B) + beta * C; beta == 0 ignores C (it may hold NaN)."""
    a = np.asarray(A, np.float64)
    b = np.asarray(B, np.float64)
    a = a.T if trans_a else a
    b = b.T if trans_b else b
    out = alpha * (a @ b)
    if beta != 0:
        out = out + beta * np.asarray(C, np.float64)
    return out


def error_bound(trans_a, trans_b, alpha, A, B, beta, C, dtype):
    """gamma_{K+3} * (|alpha| |op(A)| @ |op(B)| + |beta| |C|), doubled for float64 (see module doc)."""
    a = np.abs(np.asarray(A, np.float64))
    b = np.abs(np.asarray(B, np.float64))
    a = a.T if trans_a else a
    b = b.T if trans_b else b
    k = a.shape[1]
    u = np.finfo(dtype).eps / 2
    gamma = (k + 3) * u / (1 - (k + 3) * u)
    mag = abs(alpha) * (a @ b)
    if beta != 0:
        mag = mag + abs(beta) * np.abs(np.asarray(C, np.float64))
    return gamma * mag * (2.0 if dtype == np.float64 else 1.0) + np.finfo(dtype).tiny


def strided(rng, rows, cols, ld, dtype):
    """A flat buffer holding a [rows, cols] matrix with leading dimension ld; padding is NaN."""
    buf = np.full(max(rows * ld, 1), np.nan, dtype)
    view = buf[: rows * ld].reshape(rows, ld)[:, :cols] if rows else np.zeros((0, cols), dtype)
    # values away from zero, both signs, so no product vanishes by accident
    view[...] = (rng.uniform(0.5, 2.0, (rows, cols)) * rng.choice([-1.0, 1.0], (rows, cols))).astype(dtype)
    return buf, view


def run_gemm(rng, dtype, M, N, K, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, pad=(0, 0, 0),
             threads=0):
    """Builds padded operands, runs the hook, checks against the reference; returns the C matrix."""
    a_rows, a_cols = (K, M) if trans_a else (M, K)
    b_rows, b_cols = (N, K) if trans_b else (K, N)
    lda, ldb, ldc = max(1, a_cols) + pad[0], max(1, b_cols) + pad[1], max(1, N) + pad[2]
    abuf, A = strided(rng, a_rows, a_cols, lda, dtype)
    bbuf, B = strided(rng, b_rows, b_cols, ldb, dtype)
    cbuf, C = strided(rng, M, N, ldc, dtype)
    if pad[2]:
        cbuf.reshape(M, ldc)[:, N:] = 7.0  # sentinel: C's padding must come back unchanged
    if beta == 0:
        C[...] = np.nan  # beta == 0: C is never read
    C0 = C.copy()
    expected = gemm_reference(trans_a, trans_b, alpha, A, B, beta, C0)
    bound = error_bound(trans_a, trans_b, alpha, A, B, beta, C0, dtype)
    _core._gemm(trans_a, trans_b, M, N, K, alpha, abuf, lda, bbuf, ldb, beta, cbuf, ldc, threads)
    got = cbuf[: M * ldc].reshape(M, ldc)[:, :N].astype(np.float64)
    err = np.abs(got - expected)
    bad = ~(err <= bound)
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        raise AssertionError(f"{np.dtype(dtype).name} M={M} N={N} K={K} ta={trans_a} tb={trans_b} alpha={alpha} "
                             f"beta={beta} pad={pad}: {int(bad.sum())} of {bad.size} elements off; at {i}: got "
                             f"{got[i]!r}, expected {expected[i]!r}, bound {bound[i]:.3e}")
    if pad[2]:
        assert np.all(cbuf.reshape(M, ldc)[:, N:] == 7.0), "gemm wrote into C's padding"
    return got


def test_hand_worked():
    # [[1, 2, 3], [4, 5, 6]] @ [[1, 0], [0, 1], [1, 1]] = [[1+3, 2+3], [4+6, 5+6]] = [[4, 5], [10, 11]];
    # alpha = 2, beta = -1 with C = [[1, 1], [1, 1]]: [[7, 9], [19, 21]]
    for dt in DTYPES:
        A = np.array([[1, 2, 3], [4, 5, 6]], dt)
        B = np.array([[1, 0], [0, 1], [1, 1]], dt)
        C = np.ones((2, 2), dt)
        _core._gemm(False, False, 2, 2, 3, 2.0, A, 3, B, 2, -1.0, C, 2)
        assert C.tolist() == [[7, 9], [19, 21]]
        # the same through the transposed layouts
        C = np.ones((2, 2), dt)
        _core._gemm(True, True, 2, 2, 3, 2.0, np.ascontiguousarray(A.T), 2, np.ascontiguousarray(B.T), 3, -1.0, C, 2)
        assert C.tolist() == [[7, 9], [19, 21]]


# Shapes for every path: matrix-vector (M or N = 1), rank-1 (K = 1), tails smaller than every
# microkernel (MR 4/6/12, NR 4/8/16/32), exact tiles, K past one KC block, M past one MC block.
SHAPES = [(1, 1, 1), (1, 1, 37), (1, 45, 19), (1, 300, 5), (37, 1, 19), (300, 1, 7), (9, 11, 1), (1, 9, 1),
          (2, 3, 2), (5, 7, 3), (6, 16, 8), (12, 32, 5), (13, 33, 17), (7, 70, 31), (71, 9, 40), (48, 64, 300),
          (150, 45, 600), (33, 200, 257)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("M,N,K", SHAPES)
def test_shapes_and_layouts(dtype, trans_a, trans_b, M, N, K):
    rng = np.random.default_rng(M * 10007 + N * 101 + K)
    run_gemm(rng, dtype, M, N, K, trans_a, trans_b, alpha=1.0, beta=0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (-0.75, 0.0), (2.5, -1.5), (0.5, 1.0), (1.0, 0.25)])
@pytest.mark.parametrize("M,N,K", [(1, 37, 29), (29, 1, 37), (23, 19, 1), (17, 41, 300)])
def test_alpha_beta(dtype, alpha, beta, M, N, K):
    rng = np.random.default_rng(3)
    for ta, tb in itertools.product([False, True], repeat=2):
        run_gemm(rng, dtype, M, N, K, ta, tb, alpha=alpha, beta=beta)


@pytest.mark.parametrize("dtype", DTYPES)
def test_padded_leading_dimensions(dtype):
    rng = np.random.default_rng(5)
    for (M, N, K), ta, tb in itertools.product([(1, 30, 20), (30, 1, 20), (20, 30, 1), (19, 37, 45)],
                                               [False, True], [False, True]):
        run_gemm(rng, dtype, M, N, K, ta, tb, alpha=1.5, beta=0.5, pad=(3, 5, 2))
        run_gemm(rng, dtype, M, N, K, ta, tb, alpha=1.0, beta=0.0, pad=(1, 17, 9))


@given(M=st.integers(1, 60), N=st.integers(1, 60), K=st.integers(1, 80), ta=st.booleans(), tb=st.booleans(),
       pads=st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)),
       ab=st.sampled_from([(1.0, 0.0), (-2.0, 0.0), (0.5, 1.0), (1.0, -0.5)]),
       dtype=st.sampled_from(DTYPES))
def test_random_shapes(M, N, K, ta, tb, pads, ab, dtype):
    rng = np.random.default_rng(M + 61 * N + 3721 * K)
    run_gemm(rng, dtype, M, N, K, ta, tb, alpha=ab[0], beta=ab[1], pad=pads)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 0])
def test_several_cache_blocks(dtype, threads):
    # N past NC (3072 columns per B block) on one thread, M past MC, K past KC, each with a tail
    rng = np.random.default_rng(17)
    for (M, N, K), ta, tb in itertools.product([(7, 3200, 20), (300, 9, 530)], [False, True], [False, True]):
        run_gemm(rng, dtype, M, N, K, ta, tb, alpha=0.5, beta=-1.0, pad=(1, 0, 3), threads=threads)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 0])
def test_short_products(dtype, threads):
    # few rows of A and a short K (gemm.cpp's short_product: K kept whole, narrow B blocks), on
    # both sides of the limits (96 rows, K = 512 on AVX2) and with N long enough to split; the
    # thread count must not change the bits
    rng = np.random.default_rng(23)
    for (M, N, K), ta, tb in itertools.product([(90, 700, 363), (96, 301, 512), (97, 300, 100), (5, 1030, 513)],
                                               [False, True], [False, True]):
        run_gemm(rng, dtype, M, N, K, ta, tb, alpha=1.5, beta=0.5, pad=(0, 1, 2), threads=threads)
    old = convkit.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            convkit.set_num_threads(n)
            results.append(run_gemm(np.random.default_rng(5), dtype, 90, 700, 363, threads=0))
        np.testing.assert_array_equal(results[0], results[1])
    finally:
        convkit.set_num_threads(old)


@pytest.mark.parametrize("dtype", DTYPES)
def test_matrix_vector_every_tail(dtype):
    # gemv_rows (M == 1 with B [N, K], N == 1 with A [M, K]): dot products 4 rows at a time, on AVX2
    # in steps of 16 values, one of 8, then single products: every K from 1 to 40 (each remainder
    # mod 16, below and above 8) with 1-9 rows (groups of 4 and single rows), against the reference
    rng = np.random.default_rng(41)
    for K in range(1, 41):
        for R in (1, 3, 4, 5, 9):
            run_gemm(rng, dtype, 1, R, K, False, True, alpha=1.5, beta=0.5, pad=(1, 3, 2))
            run_gemm(rng, dtype, R, 1, K, False, False, alpha=-0.75, beta=0.0, pad=(2, 1, 0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_matrix_vector_row_does_not_depend_on_its_group(dtype):
    # a row's dot product has the same bits whether it runs in a group of 4 or alone (9 rows: two
    # groups and one row alone; each row again as a 1-row product)
    rng = np.random.default_rng(43)
    K = 77
    B = rng.standard_normal((9, K)).astype(dtype)
    a = rng.standard_normal(K).astype(dtype)
    whole = np.empty(9, dtype)
    _core._gemm(False, True, 1, 9, K, 1.0, a, K, B.ravel(), K, 0.0, whole, 9, 1)
    for r in range(9):
        one = np.empty(1, dtype)
        _core._gemm(False, True, 1, 1, K, 1.0, a, K, B[r].copy(), K, 0.0, one, 1, 1)
        assert one[0] == whole[r], r


# The AVX2 float kernel's narrow paths (gemm_internal.h): a last strip of 8 or 9 columns in pairs of
# 6-row panels (HalfPair), of 1 or 2 columns down the rows (Column), and short last panels of 1-3
# rows over two full strips at once (EdgeRows2); rows left over take the edge tile. N = 16 s + r for
# r in {1, 2, 8, 9} (and 10, 15, which keep the edge tile), M covering pairs, an odd panel and short
# panels; K past one block (beta on the later blocks) and not.
NARROW_SHAPES = [(128, 169, 300), (12, 9, 5), (24, 8, 257), (7, 57, 40), (13, 25, 600), (3, 49, 20),
                 (20, 42, 31), (9, 33, 70), (30, 17, 2), (1, 9, 3), (50, 26, 11), (19, 31, 260)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, True)])
def test_narrow_strips(dtype, trans_a, trans_b, monkeypatch):
    # against the reference, and bit for bit against the edge tile they replace (every C value gets
    # the full kernel's operations); CONVKIT_GEMM_NARROW=0 turns them off per product
    for M, N, K in NARROW_SHAPES:
        for alpha, beta, pad in [(1.0, 0.0, (0, 0, 0)), (-1.5, 0.5, (1, 2, 3))]:
            got = {}
            for narrow in "10":
                monkeypatch.setenv("CONVKIT_GEMM_NARROW", narrow)
                got[narrow] = run_gemm(np.random.default_rng(M * N + K), dtype, M, N, K, trans_a, trans_b, alpha,
                                       beta, pad, threads=1)
            np.testing.assert_array_equal(got["1"], got["0"], err_msg=f"M={M} N={N} K={K} beta={beta}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_alpha_zero_and_k_zero_never_read_a_b(dtype):
    # alpha == 0 or K == 0: C = beta * C, A and B are not read (they hold NaN here)
    A = np.full(12, np.nan, dtype)
    B = np.full(12, np.nan, dtype)
    C = np.arange(1, 7, dtype=dtype)
    _core._gemm(False, False, 2, 3, 4, 0.0, A, 4, B, 3, 0.5, C, 3)
    assert C.tolist() == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    _core._gemm(False, False, 2, 3, 0, 1.0, A, 1, B, 3, -2.0, C, 3)
    assert C.tolist() == [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0]
    C[:] = np.nan
    _core._gemm(False, False, 2, 3, 0, 1.0, A, 1, B, 3, 0.0, C, 3)  # beta == 0: zeros, NaN not read
    assert C.tolist() == [0.0] * 6
    # M or N == 0: nothing to do, nothing touched
    _core._gemm(False, False, 0, 3, 4, 1.0, A, 4, B, 3, 0.0, C, 3)
    assert C.tolist() == [0.0] * 6


@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_does_not_change_bits(dtype):
    # every path, with shapes big enough to be split: the results must be bitwise identical
    cases = [(130, 250, 70, False, True), (400, 20, 90, True, False), (1, 5000, 300, False, True),
             (1, 3000, 200, True, False), (3000, 1, 200, False, False), (2000, 1, 100, True, True),
             (300, 500, 1, False, False)]
    old = convkit.get_num_threads()
    try:
        for M, N, K, ta, tb in cases:
            results = []
            for threads, global_threads in [(1, old), (2, old), (3, old), (0, 1), (0, 2), (0, 5)]:
                convkit.set_num_threads(global_threads)
                results.append(run_gemm(np.random.default_rng(M + N + K), dtype, M, N, K, ta, tb, alpha=1.25,
                                        beta=0.5, threads=threads))
            for r in results[1:]:
                np.testing.assert_array_equal(r, results[0], err_msg=f"M={M} N={N} K={K}")
    finally:
        convkit.set_num_threads(old)


GENERIC_SCRIPT = textwrap.dedent("""
    import itertools, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from convkit import _core
    import test_gemm as t
    assert _core.cpu_isa() == "generic", _core.cpu_isa()
    rng = np.random.default_rng(0)
    for dt in t.DTYPES:
        for (M, N, K), ta, tb in itertools.product(t.SHAPES, [False, True], [False, True]):
            t.run_gemm(rng, dt, M, N, K, ta, tb, alpha=1.5, beta=0.0, pad=(1, 2, 3))
            t.run_gemm(rng, dt, M, N, K, ta, tb, alpha=-1.0, beta=0.5)
    print("generic ok")
""")


def test_generic_isa_path():
    """CONVKIT_ISA=generic forces the portable microkernel (the ISA is chosen once per process)."""
    env = dict(os.environ, CONVKIT_ISA="generic")
    script = GENERIC_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "generic ok" in r.stdout


EMULATED_SCRIPT = textwrap.dedent("""
    import itertools, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    import convkit
    import convkit.functional as F
    from convkit import _core
    import test_gemm as t
    assert (_core.cpu_isa(), _core.route_isa()) == ("avx2", "avx512"), (_core.cpu_isa(), _core.route_isa())
    rng = np.random.default_rng(0)
    for dt in t.DTYPES:
        for (M, N, K), ta, tb in itertools.product(t.SHAPES + [(200, 50, 256), (25, 70, 400)], [False, True],
                                                   [False, True]):
            t.run_gemm(rng, dt, M, N, K, ta, tb, alpha=1.5, beta=0.0, pad=(1, 2, 3))
            t.run_gemm(rng, dt, M, N, K, ta, tb, alpha=-1.0, beta=0.5)
    x, w = np.load({x!r}), np.load({w!r})
    np.save({out!r}, np.asarray(F.conv2d(x, w, None)))
    print("emulated ok")
""")


@pytest.mark.skipif(_core.cpu_isa() == "generic", reason="no AVX2 here: nothing to emulate AVX-512's routes with")
def test_avx512_routes_emulated(tmp_path):
    """CONVKIT_ISA=avx512-emulated: an AVX-512 machine's GEMM tiles (12 x 32 / 12 x 16) and blocks in AVX2 code,
    the paths the AVX-512 microkernels are called from; the GEMMs against the float64 reference, and a
    convolution whose K blocks differ from the AVX2 ones (K = 256: one block of 256 here, two of 128 there)
    against the reference and, as proof that the other route ran, not bit for bit the same as here (on an
    AVX-512 CPU: bit for bit the same, its own kernels doing the same sums in the same order)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 256, 5, 7)).astype(np.float32)
    w = rng.standard_normal((192, 256, 1, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    out = tmp_path / "y.npy"
    script = EMULATED_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)), x=str(tmp_path / "x.npy"),
                                    w=str(tmp_path / "w.npy"), out=str(out))
    env = dict(os.environ, CONVKIT_ISA="avx512-emulated")
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "emulated ok" in r.stdout
    there = np.load(out)
    ref = np.einsum("nchw,oc->nohw", x.astype(np.float64), w[:, :, 0, 0].astype(np.float64))
    # float32 sums of 256 products of unit normals (|value| ~ 16): K * eps32 * max|x w| bounds the error
    np.testing.assert_allclose(there, ref, rtol=0, atol=256 * 1.2e-7 * np.abs(x).max() * np.abs(w).max())
    import convkit.functional as F
    here = np.asarray(F.conv2d(x, w, None))
    if _core.route_isa() == "avx2":
        assert not np.array_equal(here, there)
    elif _core.route_isa() == "avx512":  # an AVX-512 CPU: its own kernels give the emulation's bits
        assert np.array_equal(here, there)


@pytest.mark.parametrize("value", ["avx3", "AVX2", ""])
def test_isa_request_not_understood(value):
    """A CONVKIT_ISA the core does not know is ignored, and import says so instead of running on silently."""
    def isa_of_child(env):
        r = subprocess.run([sys.executable, "-c", "import convkit; print(convkit.info()['cpu_isa'])"], env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout.strip(), r.stderr

    unset = {k: v for k, v in os.environ.items() if k != "CONVKIT_ISA"}
    best, quiet = isa_of_child(unset)
    got, err = isa_of_child(dict(unset, CONVKIT_ISA=value))
    assert "CONVKIT_ISA" not in quiet
    assert f"CONVKIT_ISA={value!r} is not one of generic, avx2, avx512, avx512-emulated: ignored" in err
    assert got == best  # the machine's best, as if unset


def test_isa_request_understood_is_quiet():
    """The values the core knows (its one list, csrc/runtime.cpp) import without a warning and cap the ISA."""
    order = ["generic", "avx2", "avx512"]
    unset = {k: v for k, v in os.environ.items() if k != "CONVKIT_ISA"}
    code = "import convkit; print(convkit.info()['cpu_isa'])"
    best = subprocess.run([sys.executable, "-c", code], env=unset, capture_output=True, text=True,
                          timeout=600).stdout.strip()
    for value in ["generic", "avx2", "avx512", "avx512-emulated"]:
        r = subprocess.run([sys.executable, "-c", code], env=dict(unset, CONVKIT_ISA=value), capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        cap = "avx2" if value == "avx512-emulated" else value
        assert r.stdout.strip() == order[min(order.index(cap), order.index(best))], value
        if value != "avx512-emulated" or best != "generic":
            assert "CONVKIT_ISA" not in r.stderr, (value, r.stderr)


FEWER_THREADS_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    import convkit
    import test_gemm as t
    convkit.set_num_threads(4)
    rng = np.random.default_rng(0)
    for M, N, K, ta, tb in [(130, 250, 70, False, True), (400, 20, 90, True, False), (1, 5000, 300, False, True),
                            (1, 3000, 200, True, False), (3000, 1, 200, False, False), (300, 500, 1, False, False)]:
        t.run_gemm(rng, np.float32, M, N, K, ta, tb, alpha=1.0, beta=0.5, threads=4)
    print("fewer threads ok")
""")


def test_fewer_threads_than_asked():
    """OpenMP may grant fewer threads than a parallel region asks for (OMP_THREAD_LIMIT, or inside
    another parallel region): every part of the split must still be computed."""
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    script = FEWER_THREADS_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "fewer threads ok" in r.stdout


def test_bad_input():
    f32 = np.ones(64, np.float32)
    g = _core._gemm
    assert_raises(ValueError, r"gemm: M, N, K must be >= 0, got -1, 2, 2", g, False, False, -1, 2, 2, 1.0, f32, 2,
                  f32, 2, 0.0, f32, 2)
    assert_raises(ValueError, r"gemm: lda must be >= max\(1, K\) = 5, got 4", g, False, False, 2, 2, 5, 1.0, f32, 4,
                  f32, 2, 0.0, f32, 2)
    assert_raises(ValueError, r"gemm: lda must be >= max\(1, M\) = 3, got 2", g, True, False, 3, 2, 2, 1.0, f32, 2,
                  f32, 2, 0.0, f32, 2)
    assert_raises(ValueError, r"gemm: ldb must be >= max\(1, K\) = 4, got 3", g, False, True, 2, 2, 4, 1.0, f32, 4,
                  f32, 3, 0.0, f32, 2)
    assert_raises(ValueError, r"gemm: ldc must be >= max\(1, N\) = 3, got 2", g, False, False, 2, 3, 2, 1.0, f32, 2,
                  f32, 3, 0.0, f32, 2)
    assert_raises(ValueError, r"gemm: threads must be >= 0, got -1", g, False, False, 2, 2, 2, 1.0, f32, 2,
                  f32, 2, 0.0, f32, 2, -1)
    # the hook checks that its buffers hold what the strides reach (a kernel never reads past them)
    assert_raises(ValueError, r"_gemm: A holds 64 elements, the strides reach 66", g, False, False, 2, 2, 33, 1.0,
                  f32, 33, np.ones(66, np.float32), 2, 0.0, f32, 2)
    assert_raises(ValueError, r"_gemm: C holds 64 elements, the strides reach 66", g, False, False, 2, 2, 2, 1.0,
                  f32, 2, f32, 2, 0.0, f32, 64)
    assert_raises(ValueError, r"_gemm: B must be float32, got float64", g, False, False, 2, 2, 2, 1.0, f32, 2,
                  np.ones(4), 2, 0.0, f32, 2)
    assert_raises(ValueError, r"_gemm: A must be float32 or float64, got int64", g, False, False, 2, 2, 2, 1.0,
                  np.ones(4, np.int64), 2, f32, 2, 0.0, f32, 2)
    ro = np.ones(4, np.float32)
    ro.flags.writeable = False
    assert_raises(ValueError, r"_gemm: C is read-only", g, False, False, 2, 2, 2, 1.0, f32, 2, f32, 2, 0.0, ro, 2)
    assert_raises(ValueError, r"C-contiguous", g, False, False, 2, 2, 2, 1.0, f32[::2], 2, f32, 2, 0.0,
                  np.ones(4, np.float32), 2)


def test_fma_peak_probe():
    # convkit bench's "% of peak" divides by this: it must be a positive, finite rate, and refuse
    # nonsense arguments with a clear message. (No upper bound: the machine's peak is not known here.)
    for t in (1, 2):
        r = _core._fma_peak(t, 100000)
        assert np.isfinite(r) and r > 0.0
    assert_raises(ValueError, r"fma_peak_gflops: threads must be >= 0, got -1", _core._fma_peak, -1, 10)
    assert_raises(ValueError, r"fma_peak_gflops: iters must be >= 1, got 0", _core._fma_peak, 1, 0)
