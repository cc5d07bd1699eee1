"""The hostile-input matrix: every public function of convkit.functional, the main nn / models / io /
data entry points and the CLI commands against inputs a careless or malicious caller can give.

Every case must end in a clear Python exception of the stated type whose message names the
function and the problem (checked with a regular expression) -- never a crash, a hang, a huge
allocation or a silently wrong answer. Kinds of bad input:

  dtype     int32 / float16 / complex / object arrays, mixed float32 + float64, Python lists
  rank      one dimension too many or too few
  device    DeviceArray without CUDA (a clear error), CPU and CUDA arrays mixed (when CUDA exists)
  layout    non-contiguous views, negative strides, zero-stride (broadcast) views of huge shapes
  empty     a zero-sized dimension
  values    NaN / inf inputs (results must carry them exactly where the reference does) and
            NaN / inf / out-of-range hyperparameters
  sizes     zero, negative, non-integer, huge; claimed shapes (x_shape, weight_shape, padding,
            dilation) whose products overflow 32-bit and 64-bit indexing, on tiny arrays
  read-only inputs work (ops never write their inputs); writes into read-only arrays are refused
  targets   label lists of the wrong length, dtype or range
  files     truncated / corrupt IDX, npz and safetensors files; failed writes leave nothing behind

The number of cases is printed by `pytest tests/test_hostile.py -q` (each case is one test id).
"""
import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convkit
import convkit.functional as F
from convkit import _core, data, io, models, nn, optim
from convkit.device import cuda_available
from convkit.testing import assert_raises
from reference import activation as ref_act
from reference import conv2d as ref_conv
from reference import lrn as ref_lrn
from reference import max_pool2d as ref_pool
from reference import softmax as ref_sm

RNG = np.random.default_rng(2024)


def rnd(*shape, dt=np.float32):
    return RNG.standard_normal(shape).astype(dt)


# ---- the valid call of every public function ------------------------------------------------------
# name -> (function, positional array arguments {name: array}, keyword arguments). Each hostile case
# below changes exactly one thing in a valid call.

def _pool_idx():
    _, idx = F.max_pool2d(rnd(2, 3, 6, 6), 2, return_indices=True)
    return idx


def _lrn_parts():
    x = rnd(2, 6, 3, 3)
    y, s = F.local_response_norm(x, 3, return_scale=True)
    return dict(x=x, y=y, scale=s, dy=rnd(2, 6, 3, 3))


def _sm_probs():
    return F.softmax(rnd(4, 5))


VALID = {
    "conv2d": (F.conv2d, lambda: dict(x=rnd(2, 4, 7, 7), weight=rnd(6, 2, 3, 3), bias=rnd(6)),
               dict(stride=2, padding=1, dilation=1, groups=2)),
    "conv2d_backward_data": (F.conv2d_backward_data, lambda: dict(dy=rnd(2, 6, 4, 4), weight=rnd(6, 2, 3, 3)),
                             dict(x_shape=(2, 4, 7, 7), stride=2, padding=1, groups=2)),
    "conv2d_backward_weight": (F.conv2d_backward_weight, lambda: dict(x=rnd(2, 4, 7, 7), dy=rnd(2, 6, 4, 4)),
                               dict(weight_shape=(6, 2, 3, 3), stride=2, padding=1, groups=2)),
    "conv2d_backward_bias": (F.conv2d_backward_bias, lambda: dict(dy=rnd(2, 6, 4, 4)), {}),
    "max_pool2d": (F.max_pool2d, lambda: dict(x=rnd(2, 3, 6, 6)), dict(kernel_size=2)),
    "max_pool2d_backward": (F.max_pool2d_backward, lambda: dict(dy=rnd(2, 3, 3, 3), indices=_pool_idx()),
                            dict(x_shape=(2, 3, 6, 6), kernel_size=2)),
    "local_response_norm": (F.local_response_norm, lambda: dict(x=rnd(2, 6, 3, 3)), dict(size=3)),
    "local_response_norm_backward": (F.local_response_norm_backward, _lrn_parts, dict(size=3)),
    "linear": (F.linear, lambda: dict(x=rnd(3, 5), weight=rnd(4, 5), bias=rnd(4)), {}),
    "linear_backward_data": (F.linear_backward_data, lambda: dict(dy=rnd(3, 4), weight=rnd(4, 5)), {}),
    "linear_backward_weight": (F.linear_backward_weight, lambda: dict(x=rnd(3, 5), dy=rnd(3, 4)), {}),
    "linear_backward_bias": (F.linear_backward_bias, lambda: dict(dy=rnd(3, 4)), {}),
    "relu": (F.relu, lambda: dict(x=rnd(2, 3, 4)), {}),
    "relu_backward": (F.relu_backward, lambda: dict(dy=rnd(2, 3, 4), y=F.relu(rnd(2, 3, 4))), {}),
    "dropout": (F.dropout, lambda: dict(x=rnd(2, 3, 4)), dict(p=0.3, seed=5)),
    "dropout_backward": (F.dropout_backward, lambda: dict(dy=rnd(2, 3, 4), mask=F.dropout(rnd(2, 3, 4), 0.3)[1]),
                         dict(p=0.3)),
    "softmax": (F.softmax, lambda: dict(x=rnd(4, 5)), {}),
    "softmax_backward": (F.softmax_backward, lambda: dict(y=_sm_probs(), dy=rnd(4, 5)), {}),
    "log_softmax": (F.log_softmax, lambda: dict(x=rnd(4, 5)), {}),
    "log_softmax_backward": (F.log_softmax_backward, lambda: dict(y=F.log_softmax(rnd(4, 5)), dy=rnd(4, 5)), {}),
    "softmax_cross_entropy": (F.softmax_cross_entropy,
                              lambda: dict(logits=rnd(4, 5), labels=np.array([0, 4, 2, 1])), {}),
    "softmax_cross_entropy_backward": (F.softmax_cross_entropy_backward,
                                       lambda: dict(probs=_sm_probs(), labels=np.array([0, 4, 2, 1]),
                                                    dloss=rnd(4)), {}),
}
# Arrays whose rank is free (elementwise ops): a wrong rank is not an error there.
ANY_RANK = {"relu", "relu_backward", "dropout", "dropout_backward"}
# Integer (index / label / mask) arrays: their dtype is fixed, not float.
INT_ARGS = {("max_pool2d_backward", "indices"), ("softmax_cross_entropy", "labels"),
            ("softmax_cross_entropy_backward", "labels"), ("dropout_backward", "mask")}


def call(name, **change):
    fn, make, kw = VALID[name]
    arrays = make()
    kwargs = {**arrays, **kw}
    kwargs.update(change)
    return fn(**kwargs)


def array_args():
    return [(name, arg) for name, (_, make, _) in VALID.items() for arg in make()]


def test_every_public_function_is_in_the_matrix():
    public = {n for n in dir(F) if not n.startswith("_") and callable(getattr(F, n))
              and getattr(getattr(F, n), "__module__", "") == F.__name__}
    helpers = {"check_array", "check_same", "check_shape", "conv_out_size", "pool_out_size"}
    assert public - helpers == set(VALID), "add new functional ops to VALID (and the fuzz tests)"


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_calls_work(name):
    call(name)


# ---- dtype, rank, layout, emptiness of every array argument ---------------------------------------

def _mutate(a, kind):
    if kind == "int32":
        return a.astype(np.int32) if a.dtype.kind == "f" else a.astype(np.float32)
    if kind == "float16":
        return a.astype(np.float16)
    if kind == "complex":
        return a.astype(np.complex64)
    if kind == "object":
        return a.astype(object)
    if kind == "list":
        return a.tolist()
    if kind == "rank+1":
        return a[None]
    if kind == "rank-1":
        return a.reshape(-1) if a.ndim > 1 else a.reshape(1, -1, 1)
    if kind == "noncontig":
        return np.repeat(a, 2, axis=-1)[..., ::2]
    if kind == "negstride":
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    if kind == "empty":
        return a[:0]
    if kind == "bigendian":
        return a.astype(a.dtype.newbyteorder(">"))
    if kind == "scalar":
        return 1.5
    raise AssertionError(kind)


MUTATIONS = {
    # kind: (exception, message pattern with {fn} and {arg})
    "int32": (TypeError, r"{fn}: {arg} must have dtype"),
    "float16": (TypeError, r"{fn}: {arg} must have dtype"),
    "complex": (TypeError, r"{fn}: {arg} must have dtype"),
    "object": (TypeError, r"{fn}: {arg} must have dtype"),
    "rank+1": (ValueError, r"{fn}: \w+ must have shape"),
    "rank-1": (ValueError, r"{fn}: \w+ must have shape"),
    "noncontig": (ValueError, r"{fn}: {arg} must be C-contiguous"),
    "negstride": (ValueError, r"{fn}: {arg} must be C-contiguous.*strides \(.*-\d+,?\)"),
    "empty": (ValueError, r"{fn}: (\w+ is empty|\w+ must have shape)"),
    "bigendian": (TypeError, r"{fn}: {arg} must have dtype .*got >[fi]\d"),
    "scalar": (TypeError, r"{fn}: {arg} must be a numpy array or convkit.DeviceArray, got float"),
}


def _expected(name, arg, kind):
    exc, pat = MUTATIONS[kind]
    if kind == "list" or (arg == "labels" and kind in ("list",)):
        return None
    if arg == "labels":   # labels are converted from any integer array, checked for dtype and shape
        if kind in ("int32",):
            return ValueError, r"labels must lie in|labels must have"   # int32 -> float32: dtype error below
        if kind == "empty":
            return ValueError, rf"{name}: labels (is empty|must have shape \[4\])"
        if kind == "rank-1":
            return ValueError, rf"{name}: labels must have shape"
    if (name, arg) in INT_ARGS and kind in ("int32", "float16", "complex", "object"):
        pat = r"{fn}: {arg} must have dtype"
    if name in ANY_RANK and kind in ("rank+1", "rank-1", "empty") and kind != "empty":
        # the other argument must match this one's shape
        return ValueError, rf"{name}: \w+ must have shape"
    if kind == "bigendian" and (name, arg) in INT_ARGS and arg == "mask":
        return None   # uint8 has no byte order
    return exc, pat.format(fn=name, arg=arg)


ARRAY_CASES = [(n, a, k) for n, a in array_args() for k in MUTATIONS]


@pytest.mark.parametrize("name,arg,kind", ARRAY_CASES, ids=[f"{n}-{a}-{k}" for n, a, k in ARRAY_CASES])
def test_bad_array_argument(name, arg, kind):
    fn, make, kw = VALID[name]
    arrays = make()
    if kind in ("rank+1", "rank-1") and name in ANY_RANK and len(arrays) == 1:
        call(name, **{arg: _mutate(arrays[arg], kind)})   # a single elementwise input: any rank is fine
        return
    if kind == "int32" and arg == "labels":
        # integer labels of any width are accepted (converted to int64): the call must simply work
        call(name, **{arg: arrays[arg].astype(np.int32)})
        return
    if kind == "bigendian" and arg == "labels":
        # big-endian integer labels are converted to native int64: the same result
        got, want = fn(**{**arrays, **kw, arg: _mutate(arrays[arg], kind)}), fn(**arrays, **kw)
        np.testing.assert_array_equal(got[0] if isinstance(got, tuple) else got,
                                      want[0] if isinstance(want, tuple) else want)
        return
    if kind == "float16" and arg == "labels" or kind in ("complex", "object") and arg == "labels":
        assert_raises(TypeError, rf"{name}: labels must have dtype int64", call, name,
                      **{arg: _mutate(arrays[arg], kind)})
        return
    exp = _expected(name, arg, kind)
    if exp is None:
        pytest.skip("not applicable")
    exc, pat = exp
    assert_raises(exc, pat, call, name, **{arg: _mutate(arrays[arg], kind)})


@pytest.mark.parametrize("name", sorted(n for n in VALID if sum(1 for (m, a) in array_args() if m == n
                                                                 and (m, a) not in INT_ARGS) >= 2))
def test_mixed_float_dtypes(name):
    """float32 and float64 arrays in one call: a TypeError naming both dtypes, never a silent cast."""
    fn, make, kw = VALID[name]
    arrays = make()
    floats = [a for a in arrays if (name, a) not in INT_ARGS]
    last = floats[-1]
    assert_raises(TypeError, rf"{name}: \w+ (has|must have) dtype float(32|64)( but \w+ has float(32|64))?", call, name,
                  **{last: arrays[last].astype(np.float64)})


@pytest.mark.parametrize("name,arg", [(n, a) for n, a in array_args() if (n, a) not in INT_ARGS])
def test_read_only_inputs_are_fine(name, arg):
    """Ops never write their inputs, so read-only inputs (np.broadcast_to, mmap'ed weights) work
    and give the same result as writable ones."""
    fn, make, kw = VALID[name]
    arrays = make()
    expected = fn(**arrays, **kw)
    ro = arrays[arg].copy()
    ro.flags.writeable = False
    got = fn(**{**arrays, arg: ro}, **kw)
    for g, e in zip(got if isinstance(got, tuple) else (got,), expected if isinstance(expected, tuple) else (expected,)):
        np.testing.assert_array_equal(g, e)


def test_writes_into_read_only_arrays_are_refused():
    # the optimizer updates parameters in place: a read-only parameter is an error, not a crash
    m = models.lenet5(seed=0)
    for p in m.parameters():
        p.data.flags.writeable = False
    x = rnd(2, 1, 28, 28)
    _, d = nn.cross_entropy(m.forward(x), [1, 2])
    m.backward(d)
    assert_raises(ValueError, "read-only", optim.SGD(m.parameters(), lr=0.1).step)
    # the C++ side refuses read-only outputs too (GEMM test hook writes C in place)
    a = rnd(2, 2)
    c = np.zeros((2, 2), np.float32)
    c.flags.writeable = False
    assert_raises(ValueError, r"_gemm: C is read-only", _core._gemm, False, False, 2, 2, 2, 1.0, a, 2, a, 2, 0.0, c, 2)


# ---- wrong device --------------------------------------------------------------------------------

@pytest.mark.skipif(cuda_available(), reason="CUDA is usable here: the no-CUDA errors cannot happen")
def test_device_array_without_cuda_is_a_clear_error():
    x = rnd(1, 1, 4, 4)
    assert_raises(RuntimeError, r"CUDA (support|is not usable)", convkit.asarray, x, device="cuda")
    assert_raises(RuntimeError, r"built without CUDA|no usable CUDA device", convkit.DeviceArray.from_numpy, x)
    assert_raises(RuntimeError, r"built without CUDA|no usable CUDA device", convkit.DeviceArray.zeros, [2, 2], np.float32)
    # a 2^80-element request: either error may come first (no CUDA, or the size overflow), never a crash
    with pytest.raises((RuntimeError, OverflowError),
                       match=r"built without CUDA|no usable CUDA device|size 1099511627776 x 1099511627776 overflows"):
        convkit.DeviceArray.zeros([2**40, 2**40], np.float32)
    assert_raises(RuntimeError, r"CUDA", models.lenet5().to, "cuda")
    assert_raises(ValueError, r"device must be 'cpu' or 'cuda', got 'gpu'", convkit.asarray, x, device="gpu")


@pytest.mark.skipif(not cuda_available(), reason="needs a usable CUDA device")
@pytest.mark.parametrize("name,arg", [(n, a) for n, a in array_args() if (n, a) not in INT_ARGS])
def test_mixed_devices(name, arg):
    fn, make, kw = VALID[name]
    arrays = make()
    others = [a for a in arrays if a != arg and (name, a) not in INT_ARGS]
    if not others:
        pytest.skip("one array argument")
    moved = {a: convkit.asarray(v, device="cuda") for a, v in arrays.items() if a != arg}
    with pytest.raises((ValueError, TypeError), match=r"cuda|cpu|device"):
        fn(**{**arrays, **moved}, **kw)


# ---- hyperparameters: zero, negative, huge, non-integer, NaN/inf --------------------------------

PARAM_CASES = [
    # (function, keyword, value, exception, message)
    ("conv2d", "stride", 0, ValueError, r"conv2d: stride must be >= 1, got 0"),
    ("conv2d", "stride", -2, ValueError, r"conv2d: stride must be >= 1, got -2"),
    ("conv2d", "stride", 1.5, TypeError, r"conv2d: stride must be an int, got float"),
    ("conv2d", "stride", True, TypeError, r"conv2d: stride must be an int, got bool"),
    ("conv2d", "stride", "2", TypeError, r"conv2d: stride must be an int, got str"),
    ("conv2d", "stride", (1, 2, 3), ValueError, r"conv2d: stride must be an int or a pair"),
    ("conv2d", "stride", 2**63, ValueError, r"conv2d: stride must be <= 4611686018427387904"),
    ("conv2d", "padding", -1, ValueError, r"conv2d: padding must be >= 0, got -1"),
    ("conv2d", "padding", 2**64, ValueError, r"conv2d: padding must be <= "),
    ("conv2d", "dilation", 0, ValueError, r"conv2d: dilation must be >= 1"),
    ("conv2d", "dilation", 2**40, ValueError, r"conv2d: output size -?\d+x-?\d+ <= 0"),
    ("conv2d", "groups", 0, ValueError, r"conv2d: groups must be >= 1"),
    ("conv2d", "groups", 3, ValueError, r"conv2d: groups=3 must divide"),
    ("conv2d", "groups", 2**70, ValueError, r"conv2d: groups must be <= "),
    ("conv2d_backward_data", "x_shape", (2, 4, 7), ValueError, r"x_shape must be a 4-tuple"),
    ("conv2d_backward_data", "x_shape", (2, 4, 0, 7), ValueError, r"x_shape must be >= 1, got 0"),
    ("conv2d_backward_data", "x_shape", (2, 4, -7, 7), ValueError, r"x_shape must be >= 1, got -7"),
    ("conv2d_backward_data", "x_shape", (2, 4, 7.0, 7), TypeError, r"x_shape must be an int"),
    ("conv2d_backward_data", "x_shape", (2**40, 4, 7, 7), ValueError, r"dy must have shape \[1099511627776, 6"),
    ("conv2d_backward_data", "x_shape", (2, 4, 2**65, 7), ValueError, r"x_shape must be <= "),
    ("conv2d_backward_data", "x_shape", "2,4,7,7", ValueError, r"x_shape must be a 4-tuple"),
    ("conv2d_backward_weight", "weight_shape", (6, 2, 3), ValueError, r"weight_shape must be a 4-tuple"),
    ("conv2d_backward_weight", "weight_shape", (6, 3, 3, 3), ValueError, r"weight must have shape \[OC, C/groups"),
    ("conv2d_backward_weight", "weight_shape", (2**40, 2, 3, 3), ValueError, r"dy must have shape"),
    ("max_pool2d", "kernel_size", 0, ValueError, r"max_pool2d: kernel_size must be >= 1"),
    ("max_pool2d", "kernel_size", 7, ValueError, r"max_pool2d: output size 0x0 <= 0"),
    ("max_pool2d", "kernel_size", 2**62, ValueError, r"max_pool2d: output size"),
    ("max_pool2d", "stride", 0, ValueError, r"max_pool2d: stride must be >= 1"),
    ("max_pool2d", "padding", 2, ValueError, r"max_pool2d: padding must be <= kernel_size / 2"),
    ("max_pool2d", "padding", -1, ValueError, r"max_pool2d: padding must be >= 0"),
    ("max_pool2d", "ceil_mode", "yes", TypeError, r"max_pool2d: ceil_mode must be a bool"),
    ("max_pool2d_backward", "x_shape", (2, 3, 6, 2**40), ValueError, r"dy must have shape"),
    ("max_pool2d_backward", "x_shape", (2, 3, 6), ValueError, r"x_shape must be a 4-tuple"),
    ("local_response_norm", "size", 0, ValueError, r"local_response_norm: size must be >= 1"),
    ("local_response_norm", "size", 2**63, ValueError, r"local_response_norm: size must be <= "),
    ("local_response_norm", "alpha", float("nan"), ValueError, r"local_response_norm: alpha must be finite"),
    ("local_response_norm", "alpha", float("inf"), ValueError, r"local_response_norm: alpha must be finite"),
    ("local_response_norm", "alpha", -1.0, ValueError, r"local_response_norm: alpha must be >= 0"),
    ("local_response_norm", "beta", -0.5, ValueError, r"local_response_norm: beta must be >= 0"),
    ("local_response_norm", "k", 0.0, ValueError, r"local_response_norm: k must be > 0"),
    ("local_response_norm", "k", "1", TypeError, r"local_response_norm: k must be a number"),
    ("local_response_norm_backward", "beta", float("inf"), ValueError, r"beta must be finite"),
    ("dropout", "p", 1.0, ValueError, r"dropout: p must be < 1.0"),
    ("dropout", "p", -0.1, ValueError, r"dropout: p must be >= 0"),
    ("dropout", "p", float("nan"), ValueError, r"dropout: p must be finite"),
    ("dropout", "seed", -1, ValueError, r"dropout: seed must be >= 0"),
    ("dropout", "seed", 2**64, ValueError, r"dropout: seed must be < 2\*\*64"),
    ("dropout", "seed", 0.5, TypeError, r"dropout: seed must be an int"),
    ("dropout_backward", "p", 1.5, ValueError, r"dropout_backward: p must be < 1.0"),
    # wrong-length, wrong-dtype and out-of-range target lists
    ("softmax_cross_entropy", "labels", [0, 1, 2], ValueError, r"labels must have shape \[4\] .*got \[3\]"),
    ("softmax_cross_entropy", "labels", [0, 1, 2, 3, 4], ValueError, r"labels must have shape \[4\] .*got \[5\]"),
    ("softmax_cross_entropy", "labels", [0, 1, 2, 5], ValueError, r"labels must lie in \[0, 5\), got values in \[0, 5\]"),
    ("softmax_cross_entropy", "labels", [0, -1, 2, 3], ValueError, r"labels must lie in \[0, 5\)"),
    ("softmax_cross_entropy", "labels", [0, 1.5, 2, 3], TypeError, r"labels must have dtype int64"),
    ("softmax_cross_entropy", "labels", [[0], [1], [2], [3]], ValueError, r"labels must have shape \[N\]"),
    ("softmax_cross_entropy", "labels", np.array([0, 1, 2, 2**62], np.int64), ValueError, r"labels must lie in"),
    ("softmax_cross_entropy", "labels", "0123", TypeError, r"labels must be a numpy array"),
    ("softmax_cross_entropy_backward", "labels", [0, 1], ValueError, r"labels must have shape \[4\]"),
    ("softmax_cross_entropy_backward", "labels", [0, 1, 2, 9], ValueError, r"labels must lie in \[0, 5\)"),
    ("softmax_cross_entropy_backward", "dloss", np.ones(3, np.float32), ValueError, r"dloss must have shape \[4\]"),
]


@pytest.mark.parametrize("name,key,value,exc,pattern", PARAM_CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[2]!r}"[:60] for c in PARAM_CASES])
def test_bad_parameter(name, key, value, exc, pattern):
    assert_raises(exc, pattern, call, name, **{key: value})


# ---- sizes whose products overflow 32-bit and 64-bit indexing (tiny arrays, huge claims) ----------

TOO_BIG = (ValueError, MemoryError, OverflowError)
TOO_BIG_MSG = r"too big|Unable to allocate|overflows 64-bit|must be <= |output size -\d+ <= 0"


@pytest.mark.parametrize("case", [
    # an output of 2^41 x 2^41 pixels (2^84 bytes) from a 1x1 input: refused, nothing allocated
    lambda: F.conv2d(rnd(1, 1, 1, 1), rnd(1, 1, 1, 1), padding=2**40),
    # 2^62 padding: 2*pad overflows int64 inside the C++ size computation
    lambda: F.conv2d(rnd(1, 1, 1, 1), rnd(1, 1, 1, 1), padding=2**62),
    lambda: _core.conv2d_forward(rnd(1, 1, 1, 1), rnd(1, 1, 1, 1), None, (1, 1), (2**62, 2**62), (1, 1), 1),
    lambda: _core.conv2d_forward(rnd(1, 1, 1, 1), rnd(1, 1, 2, 2), None, (1, 1), (0, 0), (2**62, 2**62), 1),
    # a weight gradient of 2^62 elements claimed through weight_shape, dy only 2x2
    lambda: F.conv2d_backward_weight(rnd(1, 1, 1, 1), rnd(1, 1, 2, 2), (1, 1, 2**31, 2**31), padding=2**30),
    lambda: _core.conv2d_backward_data(rnd(1, 1, 1, 1), rnd(1, 1, 1, 1), [2**31, 2**31, 2**31, 1], (1, 1), (0, 0),
                                       (1, 1), 1),
    lambda: _core.conv2d_backward_data(rnd(1, 1, 1, 1), rnd(1, 1, 1, 1), [2**40, 2**40, 1, 1], (1, 1), (0, 0),
                                       (1, 1), 1),
    lambda: _core.max_pool2d_backward(rnd(1, 1, 1, 1), np.zeros((1, 1, 1, 1), np.int64),
                                      [2**20, 2**20, 2**20, 2**20], (1, 1), (1, 1), (0, 0), False),
    lambda: F.max_pool2d_backward(rnd(1, 1, 1, 1), np.zeros((1, 1, 1, 1), np.int64), (1, 1, 2**40, 2**40), 2**40),
], ids=["conv-pad-2^40", "conv-pad-2^62", "core-conv-pad-2^62", "core-conv-dil-2^62", "conv-dw-2^62",
        "core-conv-dx-2^93", "core-conv-dx-2^80", "core-pool-dx-2^80", "pool-dx-2^80"])
def test_huge_claimed_sizes_are_refused(case):
    with pytest.raises(TOO_BIG, match=TOO_BIG_MSG):
        case()


@pytest.mark.parametrize("kind", ["broadcast-2^60", "broadcast-2^33"])
@pytest.mark.parametrize("name", ["relu", "softmax", "linear", "conv2d", "max_pool2d", "local_response_norm"])
def test_zero_stride_views_of_huge_shapes(name, kind):
    """np.broadcast_to makes an array claiming 2^60 (or 2^33) elements out of one float: it must be
    refused as non-contiguous before any kernel reads it."""
    n = 2**15 if kind == "broadcast-2^60" else 2**8
    one = np.ones(1, np.float32)
    big4 = np.broadcast_to(one, (n, n, n, n // 2**7 if n > 256 else 2))
    big2 = np.broadcast_to(one, (n**2, n**2))
    arg = {"relu": big4, "softmax": big2, "linear": big2, "conv2d": big4, "max_pool2d": big4,
           "local_response_norm": big4}[name]
    first = next(iter(VALID[name][1]()))
    assert_raises(ValueError, rf"{name}: {first} must be C-contiguous", call, name, **{first: arg})


def test_offsets_beyond_32_bits_give_the_right_answer():
    """Dilation, padding and kernel sizes near and above 2^31 on a tiny input: every product of a
    tap index and the dilation overflows 32 bits; the output is 1x1 and every tap lands in the
    zero padding (conv) or the window covers the whole input (pooling). Wrong index arithmetic
    would read out of bounds (the sanitizer job catches it) or give a wrong value."""
    x, w, b = rnd(1, 1, 1, 1), rnd(1, 1, 2, 2), rnd(1)
    # taps at -2^30 and +2^30 (+1 for the tail): all padding, so y = bias exactly
    y = F.conv2d(x, w, b, padding=2**30, dilation=2**31)
    assert y.shape == (1, 1, 1, 1) and y[0, 0, 0, 0] == b[0]
    dx = F.conv2d_backward_data(np.ones((1, 1, 1, 1), np.float32), w, (1, 1, 1, 1), padding=2**30, dilation=2**31)
    np.testing.assert_array_equal(dx, 0)
    dw = F.conv2d_backward_weight(x, np.ones((1, 1, 1, 1), np.float32), (1, 1, 2, 2), padding=2**30, dilation=2**31)
    np.testing.assert_array_equal(dw, 0)
    # stride 2^40: a single output
    y = F.conv2d(rnd(1, 2, 5, 5), rnd(3, 2, 3, 3), stride=2**40)
    assert y.shape == (1, 3, 1, 1)
    # a pooling window of 2^31+1 with padding 2^30 over a 3x4 plane: the global max
    xp = rnd(2, 3, 3, 4)
    yp, idx = F.max_pool2d(xp, 2**31 + 1, stride=2**40, padding=2**30, return_indices=True)
    assert yp.shape == (2, 3, 1, 1)
    np.testing.assert_array_equal(yp[..., 0, 0], xp.max(axis=(2, 3)))
    np.testing.assert_array_equal(idx[..., 0, 0], xp.reshape(2, 3, -1).argmax(axis=2))
    # an LRN window of 2^40 channels: clipped to the C channels there are (sum over all of them)
    xl = rnd(1, 4, 2, 2)
    ry, _ = ref_lrn.lrn(xl, 7, 1e-2, 0.75, 1.0)        # a window of 7 already covers all 4 channels
    yl = F.local_response_norm(xl, 2**40, alpha=1e-2 * 2**40 / 7, beta=0.75, k=1.0)
    np.testing.assert_allclose(yl, ry, rtol=1e-5)


# ---- NaN and inf in the data: propagated exactly where the reference has them ----------------------

def same_specials(got, ref, rtol, name):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{name}: NaN positions differ")
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(ref), err_msg=f"{name}: +inf positions differ")
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(ref), err_msg=f"{name}: -inf positions differ")
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=rtol, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("special", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_nan_and_inf_inputs(special, dt):
    x = rnd(2, 4, 6, 6, dt=dt)
    x[0, 1, 2, 3] = special
    w = rnd(5, 4, 3, 3, dt=dt)
    same_specials(F.conv2d(x, w, padding=1), ref_conv.conv2d(x, w, padding=1), 1e-4, "conv2d")
    y, idx = F.max_pool2d(x, 3, 2, 1, True, return_indices=True)
    ry, ridx = ref_pool.max_pool2d(x, (3, 3), (2, 2), (1, 1), True)
    same_specials(y, ry, 0, "max_pool2d")
    np.testing.assert_array_equal(idx, ridx)
    with np.errstate(invalid="ignore"):
        same_specials(F.local_response_norm(x, 3), ref_lrn.lrn(x, 3, 1e-4, 0.75, 1.0)[0], 1e-5, "lrn")
    same_specials(F.relu(x), ref_act.relu(x), 0, "relu")
    logits = rnd(3, 7, dt=dt)
    logits[1, 4] = special
    with np.errstate(invalid="ignore"):
        same_specials(F.softmax(logits), ref_sm.softmax(logits), 1e-5, "softmax")
        same_specials(F.log_softmax(logits), ref_sm.log_softmax(logits), 1e-5, "log_softmax")
    xl = rnd(3, 8, dt=dt)
    xl[2, 5] = special
    wl = rnd(4, 8, dt=dt)
    same_specials(F.linear(xl, wl), xl.astype(np.float64) @ wl.T.astype(np.float64), 1e-5, "linear")


def test_huge_finite_logits_stay_finite():
    """softmax of logits near the float32 maximum: the max shift keeps exp in range (no inf/NaN)."""
    x = np.array([[3e38, 3e38, -3e38], [1e30, 0, -1e30]], np.float32)
    y = F.softmax(x)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, [[0.5, 0.5, 0], [1, 0, 0]], atol=1e-7)
    loss, _ = F.softmax_cross_entropy(x, [2, 1])
    assert np.isinf(loss[0]) or loss[0] > 1e38     # -log(0): the true loss is ~6e38, not finite in float32
    assert np.isfinite(F.log_softmax(x)[1]).all()


# ---- nn, models ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lenet():
    return models.lenet5(seed=0)


@pytest.mark.parametrize("x,exc,pattern", [
    (np.ones((2, 1, 27, 27), np.float32), ValueError, r"Linear: x must have 400 features"),
    (np.ones((2, 3, 28, 28), np.float32), ValueError, r"Conv2d: x must have 1 channels"),
    (np.ones((1, 28, 28), np.float32), ValueError, r"Conv2d: x must have shape \[N, C, H, W\]"),
    (np.ones((2, 1, 28, 28), np.float64), TypeError, r"conv2d: weight has dtype float32 but x has float64"),
    (np.ones((2, 1, 28, 28), np.uint8), TypeError, r"x must have dtype float32 or float64, got uint8"),
    (np.ones((0, 1, 28, 28), np.float32), ValueError, r"x is empty"),
    (np.ones((2, 1, 28, 56), np.float32)[..., ::2], ValueError, r"x must be C-contiguous"),
    ([[1.0]], TypeError, r"x must be a numpy array"),
], ids=["size", "channels", "rank", "float64", "uint8", "empty", "noncontig", "list"])
def test_model_forward_bad_input(lenet, x, exc, pattern):
    assert_raises(exc, pattern, lenet.forward, x)


def test_model_backward_and_loss_bad_input(lenet):
    y = lenet.forward(rnd(2, 1, 28, 28))
    assert_raises(ValueError, r"labels must have shape \[2\]", nn.cross_entropy, y, [1])
    assert_raises(ValueError, r"labels must have shape \[2\]", nn.cross_entropy, y, [1, 2, 3])
    assert_raises(ValueError, r"labels must lie in \[0, 10\)", nn.cross_entropy, y, [1, 10])
    assert_raises(ValueError, r"reduction must be one of", nn.cross_entropy, y, [1, 2], reduction="avg")
    assert_raises(ValueError, r"labels must have shape \[2\]", nn.CrossEntropyLoss(), y, [0])
    assert_raises(RuntimeError, r"call the loss on \(logits, labels\) first", nn.CrossEntropyLoss().backward)
    assert_raises(ValueError, r"dy must have shape \[2, OUT\], got \[3, 10\]", lenet.backward, rnd(3, 10))
    assert_raises(TypeError, r"dy has dtype float64 but x has float32", lenet.backward, rnd(2, 10, dt=np.float64))
    assert_raises(KeyError, r"names no layer", lenet.forward, rnd(1, 1, 28, 28), capture=("conv9",))
    with nn.no_grad():
        lenet.forward(rnd(1, 1, 28, 28))
    assert_raises(RuntimeError, r"no forward pass to differentiate", lenet.backward, rnd(1, 10))


@pytest.mark.parametrize("build,exc,pattern", [
    (lambda: nn.Conv2d(3, 5, 0), ValueError, r"Conv2d: kernel_size must be >= 1"),
    (lambda: nn.Conv2d(3, 5, 3, groups=2), ValueError, r"Conv2d: groups=2 must divide"),
    (lambda: nn.Conv2d(3, 5, 3, dtype=np.int32), TypeError, r"Conv2d: dtype must be float32 or float64"),
    (lambda: nn.Conv2d(2**20, 2**20, 2**10), MemoryError, r"Unable to allocate"),
    (lambda: nn.Linear(2**40, 2**40), (ValueError, MemoryError), r"too big|Unable to allocate"),
    (lambda: nn.Linear(-1, 3), ValueError, r"Linear: in_features must be >= 1"),
    (lambda: nn.Linear(3, 2.5), TypeError, r"Linear: out_features must be an int"),
    (lambda: nn.MaxPool2d(0), ValueError, r"MaxPool2d: kernel_size must be >= 1"),
    (lambda: nn.LocalResponseNorm(0), ValueError, r"LocalResponseNorm: size must be >= 1"),
    (lambda: nn.Dropout(1.0), ValueError, r"Dropout: p must be < 1.0"),
    (lambda: nn.Dropout(float("nan")), ValueError, r"Dropout: p must be finite"),
    (lambda: models.get("resnet"), ValueError, r"unknown model 'resnet'"),
    (lambda: models.alexnet(num_classes=0), ValueError, r"out_features must be >= 1"),
    (lambda: models.lenet5(width=1e9), MemoryError, r"Unable to allocate"),
    (lambda: optim.SGD([], lr=0.1), ValueError, r"SGD: got an empty parameter list"),
    (lambda: optim.Adam(models.lenet5().parameters(), lr=float("nan")), TypeError, r"Adam: lr must be a finite"),
    (lambda: convkit.set_num_threads(-1), ValueError, r"set_num_threads: n must be in \[0, 4096\]"),
    (lambda: convkit.set_num_threads(2**40), ValueError, r"set_num_threads: n must be in \[0, 4096\]"),
    (lambda: convkit.set_num_threads(2.0), TypeError, r"set_num_threads: n must be an int"),
], ids=["conv-k0", "conv-groups", "conv-dtype", "conv-huge", "linear-huge", "linear-neg", "linear-float",
        "pool-k0", "lrn-0", "dropout-1", "dropout-nan", "zoo-unknown", "alexnet-0-classes", "lenet-huge-width",
        "sgd-empty", "adam-nan-lr", "threads-neg", "threads-huge", "threads-float"])
def test_bad_construction(build, exc, pattern):
    with pytest.raises(exc, match=pattern):
        build()


def test_state_dict_bad_values(lenet):
    sd = lenet.state_dict()
    bad = dict(sd, **{"fc3.bias": np.full(10, np.nan, np.float32)})
    assert_raises(ValueError, r"fc3.bias contains NaN or infinity", models.lenet5().load_state_dict, bad)
    bad = dict(sd, **{"fc3.bias": np.ones(11, np.float32)})
    assert_raises(ValueError, r"fc3.bias must have shape \[10\], got \[11\]", models.lenet5().load_state_dict, bad)
    bad = dict(sd, **{"fc3.bias": np.ones(10, np.int64)})
    assert_raises(TypeError, r"fc3.bias must be a float array", models.lenet5().load_state_dict, bad)
    assert_raises(KeyError, r"missing parameters \['fc3.bias'\]", models.lenet5().load_state_dict,
                  {k: v for k, v in sd.items() if k != "fc3.bias"})


def test_summary_with_huge_input_reports_exact_sizes():
    from convkit.summary import summary
    m = models.lenet5()
    # 2^40 x 2^40 images: the flattened size (~2^84) must be reported exactly, not wrapped to int64
    with pytest.raises(ValueError, match=r"Linear: input must have 400 features .*got \[1, (\d+)\]") as e:
        summary(m, (1, 2**40, 2**40))
    assert int(e.value.args[0].rsplit(", ", 1)[1].rstrip("]")) > 2**63
    assert_raises(ValueError, r"input_shape must be a tuple of positive ints", summary, m, (1, -28, 28))


# ---- files: IDX, npz, safetensors ----------------------------------------------------------------

def idx_bytes(a: np.ndarray, code=0x08) -> bytes:
    return struct.pack(">HBB", 0, code, a.ndim) + struct.pack(f">{a.ndim}i", *a.shape) + a.tobytes()


GOOD_IDX = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))


@pytest.mark.parametrize("blob,pattern", [
    (b"", r"too short for an IDX file \(0 bytes\)"),
    (b"\0\0", r"too short"),
    (b"\1\2\3\4" + GOOD_IDX[4:], r"not an IDX file \(header bytes 01020304\)"),
    (b"\0\0\x07\x02" + GOOD_IDX[4:], r"not an IDX file"),                        # unknown type code
    (b"\0\0\x08\x00", r"not an IDX file"),                                       # zero dimensions
    (GOOD_IDX[:6], r"truncated IDX header"),
    (b"\0\0\x08\xff" + b"\0" * 20, r"truncated IDX header \(24 bytes, need 1024\)"),
    (GOOD_IDX[:-1], r"truncated: the header says 3x4 uint8 \(12 bytes\) but 11 data bytes follow"),
    (GOOD_IDX + b"\0", r"has trailing bytes"),
    (struct.pack(">HBB", 0, 8, 1) + struct.pack(">i", -1), r"negative dimension"),
    # 2^16 x 2^16 x 2^16 x 2^16 = 2^64 bytes claimed with no data: wraps to 0 in int64 arithmetic
    (struct.pack(">HBB", 0, 8, 4) + struct.pack(">4i", *[2**16] * 4), r"truncated: the header says 65536x65536"),
    (struct.pack(">HBB", 0, 8, 3) + struct.pack(">3i", *[2**31 - 1] * 3), r"\(9903520300447984150353281023 bytes\)"),
    (struct.pack(">HBB", 0, 0x0D, 1) + struct.pack(">i", 2) + b"\0" * 5, r"2 float32 \(8 bytes\) but 5"),
], ids=["empty", "2-bytes", "bad-magic", "bad-type", "0-dims", "short-header", "255-dims", "truncated", "trailing",
        "negative-dim", "2^64-wraps", "2^93", "float-truncated"])
def test_corrupt_idx(tmp_path, blob, pattern):
    assert_raises(data.DataError, pattern, data.parse_idx, blob)
    p = tmp_path / "x-idx1-ubyte"
    p.write_bytes(blob)
    assert_raises(data.DataError, pattern, data.read_idx, p)
    p.write_bytes(gzip.compress(blob))
    assert_raises(data.DataError, pattern, data.read_idx, p)


def test_corrupt_idx_files(tmp_path):
    p = tmp_path / "x-idx1-ubyte.gz"
    p.write_bytes(gzip.compress(GOOD_IDX)[:-6])
    assert_raises(data.DataError, r"corrupt or truncated gzip data", data.read_idx, p)
    p.write_bytes(b"\x1f\x8b" + b"\0" * 30)
    assert_raises(data.DataError, r"corrupt or truncated gzip data", data.read_idx, p)
    assert_raises(data.DataError, r"no such file", data.read_idx, tmp_path / "missing")
    assert_raises(data.DataError, r"cannot read", data.read_idx, tmp_path)
    assert_raises(data.DataError, r"does not hold the data set: missing train-images-idx3-ubyte",
                  data.load_fashion_mnist, tmp_path)
    # a folder with all four files whose label counts disagree with the image counts
    for stem, a in (("train-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8)),
                    ("train-labels-idx1-ubyte", np.zeros(2, np.uint8)),
                    ("t10k-images-idx3-ubyte", np.zeros((1, 2, 2), np.uint8)),
                    ("t10k-labels-idx1-ubyte", np.zeros(1, np.uint8))):
        data.write_idx(tmp_path / stem, a)
    assert_raises(data.DataError, r"3 train images but 2 labels", data.load_fashion_mnist, tmp_path)
    data.write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 10], np.uint8))
    assert_raises(data.DataError, r"labels outside \[0, 10\)", data.load_fashion_mnist, tmp_path)


def test_data_helpers_bad_input():
    assert_raises(ValueError, r"batch_size must be an int >= 1, got 0", lambda: list(data.batches(np.ones(3), None, 0)))
    assert_raises(ValueError, r"x has 3 items but y has 2", lambda: list(data.batches(np.ones(3), np.ones(2))))
    assert_raises(ValueError, r"images must be \[N, H, W\] or \[N, C, H, W\]", data.to_float, np.ones((3, 3)))
    assert_raises(TypeError, r"write_idx: dtype complex128 has no IDX type code", data.write_idx, "unused",
                  np.ones(2, np.complex128))
    assert_raises(ValueError, r"load_digits: size must be 8 or 28", data.load_digits, size=9)


def st_file(path, header, payload=b""):
    h = json.dumps(header).encode() if not isinstance(header, bytes) else header
    Path(path).write_bytes(struct.pack("<Q", len(h)) + h + payload)


@pytest.mark.parametrize("header,payload,pattern", [
    (None, b"", r"0 bytes, shorter than the 8-byte header length"),
    (b"{}", b"", None),                                                    # an empty file is valid: no tensors
    (b"[1]", b"", r"header is not a JSON object"),
    (b"{not json", b"", r"header is not JSON"),
    (b"\xff\xfe", b"", r"header is not JSON"),
    ({"a": 5}, b"", r"entry 'a' lacks a valid dtype/shape/data_offsets"),
    ({"a": {"dtype": "F32", "shape": "ab", "data_offsets": [0, 0]}}, b"", r"lacks a valid dtype/shape/data_offsets"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}}, b"\0" * 8, r"lacks a valid dtype/shape/data_offsets"),
    ({"a": {"dtype": "F32", "shape": [1]}}, b"\0" * 4, r"lacks a valid dtype/shape/data_offsets"),
    ({"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8, r"has unsupported dtype 'C64'"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, r"has offsets \[0, 8\] outside the 4-byte data \(truncated\?\)"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"\0" * 4, r"has offsets \[4, 0\] outside"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}, b"\0" * 4, r"has offsets \[-4, 0\] outside"),
    ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}, b"", r"has offsets \[0, 0\] outside the 0-byte data"),
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 4]}}, b"\0" * 4, r"4 bytes for shape \[3\] of F32"),
    ({"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 4]}}, b"\0" * 4, r"4 bytes for shape"),
    # 2^96 elements: wraps to 0 in int64, so 0 bytes would have matched before the exact product
    ({"a": {"dtype": "F32", "shape": [2**32] * 3, "data_offsets": [0, 0]}}, b"", r"0 bytes for shape \[4294967296"),
    ({"a": {"dtype": "F64", "shape": [2**61], "data_offsets": [0, 0]}}, b"", r"0 bytes for shape"),
], ids=["no-header", "empty-json", "json-list", "not-json", "not-utf8", "entry-int", "shape-str", "3-offsets",
        "no-offsets", "dtype-C64", "truncated-data", "reversed-offsets", "negative-offset", "negative-dim",
        "size-mismatch", "2^80-elements", "2^96-wraps", "2^64-bytes-wraps"])
def test_corrupt_safetensors(tmp_path, header, payload, pattern):
    p = tmp_path / "w.safetensors"
    if header is None:
        p.write_bytes(b"")
    else:
        st_file(p, header, payload)
    if pattern is None:
        assert io.load_safetensors(p) == {}
        return
    assert_raises(io.WeightsError, r"w.safetensors: not a valid safetensors file: (entry 'a':? )?" + pattern,
                  io.load_safetensors, p)


def test_header_length_beyond_the_file(tmp_path):
    p = tmp_path / "w.safetensors"
    p.write_bytes(struct.pack("<Q", 2**63) + b"{}")
    assert_raises(io.WeightsError, r"header length 9223372036854775808 exceeds the file \(10 bytes\)",
                  io.load_safetensors, p)
    p.write_bytes(struct.pack("<Q", 2**64 - 1))
    assert_raises(io.WeightsError, r"header length \d+ exceeds the file", io.load_safetensors, p)


def test_truncated_weight_files(tmp_path, lenet):
    for ext in (".npz", ".safetensors"):
        p = tmp_path / f"w{ext}"
        io.save(p, lenet)
        raw = p.read_bytes()
        for cut in (0, 7, 8, 40, len(raw) // 2, len(raw) - 1):
            p.write_bytes(raw[:cut])
            with pytest.raises(io.WeightsError, match=rf"{p.name}: not a (readable npz weights|valid safetensors) file"):
                io.load(p)
        # one flipped byte in the middle of the compressed npz data or the safetensors header
        bad = bytearray(raw)
        bad[len(raw) // 2 if ext == ".npz" else 12] ^= 0xFF
        p.write_bytes(bytes(bad))
        try:
            state = io.load(p)
        except io.WeightsError:
            pass
        else:   # a flipped data byte can still be a readable file: then it must still fit the model
            assert set(state) == set(lenet.state_dict())
    p = tmp_path / "w.npz"
    p.write_bytes(b"garbage" * 10)
    assert_raises(io.WeightsError, r"not a readable npz weights file", io.load, p)
    np.savez(p, a=np.array([object()], dtype=object))          # pickled objects are never loaded
    assert_raises(io.WeightsError, r"not a readable npz weights file", io.load, p)
    assert_raises(FileNotFoundError, r"no such weights file", io.load, tmp_path / "none.npz")
    assert_raises(ValueError, r"unknown weights format '.pt'", io.load, tmp_path / "w.pt")
    p = tmp_path / "lenet.npz"
    io.save(p, models.lenet5(seed=1))
    assert_raises(ValueError, r"load_state_dict: conv1.weight must have shape \[12, 1, 5, 5\], got \[6, 1, 5, 5\]",
                  io.load, p, models.lenet5(width=2))


@pytest.mark.parametrize("ext", [".npz", ".safetensors", ".idx"])
@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_failed_writes_leave_nothing_half_written(tmp_path, monkeypatch, lenet, ext, where):
    """A failure anywhere in a write (disk full, a crash before the rename) leaves the target as it
    was -- absent, or the previous complete file -- and no temporary file behind."""
    target = tmp_path / f"w{ext}"

    def save():
        if ext == ".idx":
            data.write_idx(target, np.arange(6, dtype=np.uint8).reshape(2, 3))
        else:
            io.save(target, lenet)

    save()
    before = target.read_bytes()
    target.unlink()
    for previous in (None, b"previous complete file"):
        if previous is not None:
            target.write_bytes(previous)

        def boom(*a, **k):
            raise OSError(28, "No space left on device")

        with monkeypatch.context() as mp:
            if where == "write":
                mp.setattr(os, "fdopen", lambda fd, *a, **k: _FailingFile(fd))
            elif where == "fsync":
                if ext == ".idx":
                    pytest.skip("write_idx does not fsync")
                mp.setattr(os, "fsync", boom)
            else:
                mp.setattr(os, "replace", boom)
            with pytest.raises(OSError, match="No space left"):
                save()
        assert sorted(p.name for p in tmp_path.iterdir()) == ([] if previous is None else [target.name])
        if previous is not None:
            assert target.read_bytes() == previous
    save()
    assert target.read_bytes() == before


class _FailingFile:
    """A file object whose write fails half-way (after writing a few bytes)."""

    def __init__(self, fd):
        self.f = open(fd, "wb", closefd=True)

    def write(self, b):
        self.f.write(bytes(b)[:10])
        self.f.flush()
        raise OSError(28, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.f.close()


def test_unsavable_state_writes_nothing(tmp_path):
    p = tmp_path / "w.safetensors"
    assert_raises(TypeError, r"save_safetensors: a has dtype complex64", io.save_safetensors, p,
                  {"a": np.ones(2, np.complex64)})
    assert_raises(TypeError, r"state dict keys must be strings", io.save_npz, tmp_path / "w.npz", {1: np.ones(2)})
    assert_raises(ValueError, r"'__meta__' is reserved", io.save_npz, tmp_path / "w.npz", {"__meta__": np.ones(2)})
    assert_raises(TypeError, r"expected a convkit.nn.Module or a mapping", io.save_npz, tmp_path / "w.npz", 5)
    assert list(tmp_path.iterdir()) == []


# ---- the CLI -------------------------------------------------------------------------------------

CLI_CASES = [
    ([], 2, r"the following arguments are required: command"),
    (["nope"], 2, r"invalid choice: 'nope'"),
    (["summary", "resnet"], 2, r"convkit summary: error: unknown model 'resnet'"),
    (["summary", "lenet5", "--input", "1,-5,5"], 2, r"input_shape must be a tuple of positive ints"),
    (["summary", "lenet5", "--input", "abc"], 2, r"--input must look like 3,227,227, got 'abc'"),
    (["summary", "lenet5", "--input", "1,28"], 2, r"Conv2d: input must have shape \[N, C, H, W\]"),
    (["summary", "lenet5", "--input", "1,99999999999999,99999999999999"], 2,
     r"Linear: input must have 400 features .*got \[1, 9999999999997600000000000144\]"),
    (["train", "lenet5", "--dataset", "mnist", "--data", "/nonexistent-convkit", "--out", "{tmp}", "--no-progress"],
     2, r"convkit train: error: mnist: /nonexistent-convkit does not hold the data set"),
    (["train", "lenet5", "--dataset", "digits", "--epochs", "-1", "--out", "{tmp}", "--no-progress"], 2,
     r"epochs and batch_size must be >= 1, got -1"),
    (["train", "lenet5", "--dataset", "digits", "--batch-size", "0", "--out", "{tmp}", "--no-progress"], 2,
     r"epochs and batch_size must be >= 1"),
    (["train", "lenet5", "--dataset", "digits", "--lr", "nan", "--out", "{tmp}", "--no-progress"], 2,
     r"lr must be a finite number, got nan"),
    (["train", "lenet5", "--dataset", "digits", "--threads", "-3", "--out", "{tmp}", "--no-progress"], 2,
     r"set_num_threads: n must be in \[0, 4096\], got -3"),
    (["train", "lenet5", "--epochs", "x", "--out", "{tmp}"], 2, r"argument --epochs: invalid int value: 'x'"),
    (["train", "alexnet", "--out", "{tmp}"], 2, r"invalid choice: 'alexnet'"),
    (["train", "lenet5"], 2, r"the following arguments are required: --out"),
    (["bench", "--nonsense"], 2, r"unrecognized arguments: --nonsense|error"),
]
if not cuda_available():
    CLI_CASES.append((["train", "lenet5", "--dataset", "digits", "--device", "cuda", "--out", "{tmp}",
                       "--no-progress"], 2, r"convkit train: error: device='cuda' requested but CUDA is not usable"))


# The real `python -m convkit` in a subprocess for a few cases (exit status, stderr, no traceback),
# the rest through convkit.cli.main in-process (the same code path; a subprocess costs seconds).
SUBPROCESS = {0, 1, 2, 6, 7, 11}


@pytest.mark.parametrize("i", range(len(CLI_CASES)), ids=[" ".join(c[0])[:50] or "no-args" for c in CLI_CASES])
def test_cli_bad_arguments(tmp_path, capsys, i):
    import re
    args, rc, pattern = CLI_CASES[i]
    args = [a.replace("{tmp}", str(tmp_path / "out")) for a in args]
    if i in SUBPROCESS:
        r = subprocess.run([sys.executable, "-m", "convkit", *args], capture_output=True, text=True, timeout=300,
                           cwd=tmp_path)
        code, err = r.returncode, r.stderr
    else:
        from convkit.cli import main
        try:
            code = main(args)
        except SystemExit as e:   # argparse errors exit(2) after printing the usage
            code = e.code
        err = capsys.readouterr().err
    assert code == rc, (code, err[-2000:])
    assert re.search(pattern, err), err[-2000:]
    assert "Traceback" not in err, err[-3000:]
