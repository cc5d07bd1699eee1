"""convkit.functional: every kernel as a checked Python function.

Arguments are checked here, before any kernel runs, and bad ones raise TypeError (wrong kind or
dtype) or ValueError (wrong shape, layout, size or value) with a message that names the function,
the argument, what was expected and what was given. The C++ side checks again.

Arrays are numpy arrays (CPU) or convkit.DeviceArray (CUDA), C-contiguous, float32 or float64, NCHW
for images. Every op runs where its inputs live; mixing devices is an error. Backward functions
return new arrays (they never accumulate into their inputs).
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _core
from .device import DeviceArray

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# ---- argument checks ------------------------------------------------------------------------------

def _shape_str(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def check_array(x, fn: str, name: str, ndim: int | None = None, layout: str | None = None,
                dtypes=_FLOATS, allow_empty: bool = False):
    """Check that x is a usable convkit array; returns it. Used by every op and by extension authors."""
    is_numpy = isinstance(x, np.ndarray)
    if not is_numpy and not isinstance(x, DeviceArray):
        raise TypeError(f"{fn}: {name} must be a numpy array or convkit.DeviceArray, got {type(x).__name__}")
    if (x.dtype if is_numpy else np.dtype(x.dtype)) not in dtypes:  # a numpy dtype already: no np.dtype() call
        want = " or ".join(str(d) for d in dtypes)
        raise TypeError(f"{fn}: {name} must have dtype {want}, got {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{fn}: {name} must have shape {layout or ndim}, got {_shape_str(x.shape)}")
    if is_numpy:
        if not x.flags.c_contiguous:
            raise ValueError(f"{fn}: {name} must be C-contiguous (use numpy.ascontiguousarray), "
                             f"got strides {x.strides} for shape {_shape_str(x.shape)}")
        if not x.dtype.isnative:
            raise ValueError(f"{fn}: {name} must be in native byte order, got {x.dtype.str}")
    if not allow_empty and x.size == 0:
        raise ValueError(f"{fn}: {name} is empty (shape {_shape_str(x.shape)})")
    return x


def check_same(fn: str, ref, ref_name: str, **others):
    """Check that every array in `others` has ref's dtype and device."""
    ref_dev = "cuda" if isinstance(ref, DeviceArray) else "cpu"
    for name, a in others.items():
        dev = "cuda" if isinstance(a, DeviceArray) else "cpu"
        if dev != ref_dev:
            raise ValueError(f"{fn}: {name} is on {dev} but {ref_name} is on {ref_dev}; move both to one device")
        if np.dtype(a.dtype) != np.dtype(ref.dtype):
            raise TypeError(f"{fn}: {name} has dtype {a.dtype} but {ref_name} has {ref.dtype}; they must match")


def check_shape(fn: str, name: str, x, expected) -> None:
    if tuple(x.shape) != tuple(expected):
        raise ValueError(f"{fn}: {name} must have shape {_shape_str(expected)}, got {_shape_str(x.shape)}")


# Sizes, strides, paddings: the kernels take int64; anything larger is refused here with a clear
# message (the kernels' own checks then catch products that overflow).
_MAX_SIZE = 2**62


def _int(v, fn: str, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if type(v) is not int:  # plain ints skip the ABC check (about 1 us a call, 80 calls a LeNet step)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{fn}: {name} must be an int, got {type(v).__name__} {v!r}")
        v = int(v)
    if minimum is not None and v < minimum:
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{fn}: {name} must be <= {maximum}, got {v}")
    return v


def _pair(v, fn: str, name: str, minimum: int) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{fn}: {name} must be an int or a pair of ints, got {v!r}")
        return (_int(v[0], fn, name, minimum, _MAX_SIZE), _int(v[1], fn, name, minimum, _MAX_SIZE))
    i = _int(v, fn, name, minimum, _MAX_SIZE)
    return (i, i)


def _float(v, fn: str, name: str, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, hi_open: bool = False) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a number, got {type(v).__name__} {v!r}")
    v = float(v)
    if not np.isfinite(v):
        raise ValueError(f"{fn}: {name} must be finite, got {v}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ValueError(f"{fn}: {name} must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ValueError(f"{fn}: {name} must be {'<' if hi_open else '<='} {hi}, got {v}")
    return v


def _shape4(shape, fn: str, name: str) -> tuple[int, ...]:
    if not isinstance(shape, (tuple, list)) or len(shape) != 4:
        raise ValueError(f"{fn}: {name} must be a 4-tuple [N, C, H, W], got {shape!r}")
    return tuple(_int(s, fn, name, 1, _MAX_SIZE) for s in shape)


# ---- conv2d ---------------------------------------------------------------------------------------

def conv_out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """floor((size + 2*padding - dilation*(kernel-1) - 1) / stride) + 1 (may be <= 0 for bad params)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _conv_params(fn, x_shape, w_shape, stride, padding, dilation, groups):
    stride = _pair(stride, fn, "stride", 1)
    padding = _pair(padding, fn, "padding", 0)
    dilation = _pair(dilation, fn, "dilation", 1)
    groups = _int(groups, fn, "groups", 1, _MAX_SIZE)
    n, c, h, w = x_shape
    oc, cpg, kh, kw = w_shape
    if c % groups:
        raise ValueError(f"{fn}: groups={groups} must divide the input channels C={c}")
    if oc % groups:
        raise ValueError(f"{fn}: groups={groups} must divide the output channels OC={oc}")
    if cpg != c // groups:
        raise ValueError(f"{fn}: weight must have shape [OC, C/groups, KH, KW] = [{oc}, {c // groups}, {kh}, {kw}] "
                         f"for C={c}, groups={groups}; got {_shape_str(w_shape)}")
    oh = conv_out_size(h, kh, stride[0], padding[0], dilation[0])
    ow = conv_out_size(w, kw, stride[1], padding[1], dilation[1])
    if oh <= 0 or ow <= 0:
        raise ValueError(f"{fn}: output size {oh}x{ow} <= 0 for input {h}x{w}, kernel {kh}x{kw}, "
                         f"stride {stride}, padding {padding}, dilation {dilation}")
    return stride, padding, dilation, groups, (n, oc, oh, ow)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, out=None):
    """2-D convolution (cross-correlation). x [N, C, H, W], weight [OC, C/groups, KH, KW], bias [OC] or None.

    out: an array of the output's shape and dtype to write into (and return) instead of allocating
    one, e.g. reused across calls; it must not overlap the inputs. (The same keyword on max_pool2d,
    local_response_norm(_backward), linear and linear_backward_data/_weight.)
    """
    fn = "conv2d"
    check_array(x, fn, "x", 4, "[N, C, H, W]")
    check_array(weight, fn, "weight", 4, "[OC, C/groups, KH, KW]")
    check_same(fn, x, "x", weight=weight)
    stride, padding, dilation, groups, _ = _conv_params(fn, x.shape, weight.shape, stride, padding, dilation, groups)
    if bias is not None:
        check_array(bias, fn, "bias", 1, "[OC]")
        check_same(fn, x, "x", bias=bias)
        check_shape(fn, "bias", bias, (weight.shape[0],))
    return _core.conv2d_forward(x, weight, bias, stride, padding, dilation, groups, out)


def conv2d_backward_data(dy, weight, x_shape, stride=1, padding=0, dilation=1, groups=1):
    """Gradient of conv2d with respect to x: dy [N, OC, OH, OW] -> dx of shape x_shape."""
    fn = "conv2d_backward_data"
    x_shape = _shape4(x_shape, fn, "x_shape")
    check_array(dy, fn, "dy", 4, "[N, OC, OH, OW]")
    check_array(weight, fn, "weight", 4, "[OC, C/groups, KH, KW]")
    check_same(fn, dy, "dy", weight=weight)
    stride, padding, dilation, groups, y_shape = _conv_params(fn, x_shape, weight.shape, stride, padding,
                                                              dilation, groups)
    check_shape(fn, "dy", dy, y_shape)
    return _core.conv2d_backward_data(dy, weight, list(x_shape), stride, padding, dilation, groups)


def conv2d_backward_weight(x, dy, weight_shape, stride=1, padding=0, dilation=1, groups=1):
    """Gradient of conv2d with respect to the weight: (x, dy) -> dw of shape weight_shape."""
    fn = "conv2d_backward_weight"
    weight_shape = _shape4(weight_shape, fn, "weight_shape")
    check_array(x, fn, "x", 4, "[N, C, H, W]")
    check_array(dy, fn, "dy", 4, "[N, OC, OH, OW]")
    check_same(fn, x, "x", dy=dy)
    stride, padding, dilation, groups, y_shape = _conv_params(fn, x.shape, weight_shape, stride, padding,
                                                              dilation, groups)
    check_shape(fn, "dy", dy, y_shape)
    return _core.conv2d_backward_weight(x, dy, list(weight_shape), stride, padding, dilation, groups)


def conv2d_backward_bias(dy):
    """Gradient of conv2d with respect to the bias: sum of dy over N, OH, OW."""
    check_array(dy, "conv2d_backward_bias", "dy", 4, "[N, OC, OH, OW]")
    return _core.conv2d_backward_bias(dy)


# ---- max pooling ----------------------------------------------------------------------------------

def pool_out_size(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    """Pooling output size with PyTorch's rule (see csrc/ops/max_pool2d.h)."""
    span = size + 2 * padding - kernel
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _pair_out(fn, out):
    if out is None:
        return None
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(f"{fn}: out must be a tuple of two arrays, got {type(out).__name__}")
    return out


def _pool_params(fn, x_shape, kernel_size, stride, padding, ceil_mode):
    kernel = _pair(kernel_size, fn, "kernel_size", 1)
    stride = kernel if stride is None else _pair(stride, fn, "stride", 1)
    padding = _pair(padding, fn, "padding", 0)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"{fn}: ceil_mode must be a bool, got {type(ceil_mode).__name__}")
    for p, k, axis in ((padding[0], kernel[0], "height"), (padding[1], kernel[1], "width")):
        if p > k // 2:
            raise ValueError(f"{fn}: padding must be <= kernel_size / 2 on the {axis} axis, got padding {p} "
                             f"for kernel {k}")
    n, c, h, w = x_shape
    oh = pool_out_size(h, kernel[0], stride[0], padding[0], bool(ceil_mode))
    ow = pool_out_size(w, kernel[1], stride[1], padding[1], bool(ceil_mode))
    if oh <= 0 or ow <= 0:
        raise ValueError(f"{fn}: output size {oh}x{ow} <= 0 for input {h}x{w}, kernel {kernel}, stride {stride}, "
                         f"padding {padding}")
    return kernel, stride, padding, bool(ceil_mode), (n, c, oh, ow)


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, return_indices=False, out=None):
    """Max pooling over x [N, C, H, W]; stride defaults to kernel_size. Returns y (and indices if asked).

    out: a tuple (y, indices) of preallocated arrays (float like x, int64) to write into instead of
    allocating (the indices are always computed)."""
    fn = "max_pool2d"
    check_array(x, fn, "x", 4, "[N, C, H, W]")
    kernel, stride, padding, ceil_mode, _ = _pool_params(fn, x.shape, kernel_size, stride, padding, ceil_mode)
    y, idx = _core.max_pool2d_forward(x, kernel, stride, padding, ceil_mode, _pair_out(fn, out))
    return (y, idx) if return_indices else y


def max_pool2d_backward(dy, indices, x_shape, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Gradient of max_pool2d: routes dy to the argmax positions recorded in `indices`."""
    fn = "max_pool2d_backward"
    x_shape = _shape4(x_shape, fn, "x_shape")
    check_array(dy, fn, "dy", 4, "[N, C, OH, OW]")
    check_array(indices, fn, "indices", 4, "[N, C, OH, OW]", dtypes=(np.dtype(np.int64),))
    kernel, stride, padding, ceil_mode, y_shape = _pool_params(fn, x_shape, kernel_size, stride, padding, ceil_mode)
    check_shape(fn, "dy", dy, y_shape)
    check_shape(fn, "indices", indices, y_shape)
    if isinstance(dy, DeviceArray) != isinstance(indices, DeviceArray):
        raise ValueError(f"{fn}: dy and indices must be on the same device")
    return _core.max_pool2d_backward(dy, indices, list(x_shape), kernel, stride, padding, ceil_mode)


# ---- local response normalization ----------------------------------------------------------------

def _lrn_params(fn, size, alpha, beta, k):
    size = _int(size, fn, "size", 1, _MAX_SIZE)
    alpha = _float(alpha, fn, "alpha", 0.0)
    beta = _float(beta, fn, "beta", 0.0)
    k = _float(k, fn, "k", 0.0, lo_open=True)
    return size, alpha, beta, k


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0, return_scale=False, out=None):
    """LRN across channels, PyTorch/Caffe convention (alpha divided by size); formula in csrc/ops/lrn.h.

    Returns y, or (y, scale) with scale = k + alpha/size * sum x^2 (what lrn_backward needs).
    out: a tuple (y, scale) of preallocated arrays like x to write into instead of allocating.
    """
    fn = "local_response_norm"
    check_array(x, fn, "x", 4, "[N, C, H, W]")
    size, alpha, beta, k = _lrn_params(fn, size, alpha, beta, k)
    y, scale = _core.lrn_forward(x, size, alpha, beta, k, _pair_out(fn, out))
    return (y, scale) if return_scale else y


def local_response_norm_backward(x, y, scale, dy, size, alpha=1e-4, beta=0.75, k=1.0, out=None):
    """Gradient of local_response_norm with respect to x."""
    fn = "local_response_norm_backward"
    check_array(x, fn, "x", 4, "[N, C, H, W]")
    for name, a in (("y", y), ("scale", scale), ("dy", dy)):
        check_array(a, fn, name, 4, "[N, C, H, W]")
        check_shape(fn, name, a, x.shape)
    check_same(fn, x, "x", y=y, scale=scale, dy=dy)
    size, alpha, beta, k = _lrn_params(fn, size, alpha, beta, k)
    return _core.lrn_backward(x, y, scale, dy, size, alpha, beta, k, out)


# ---- linear ---------------------------------------------------------------------------------------

def linear(x, weight, bias=None, out=None):
    """Fully connected: x [N, IN], weight [OUT, IN], bias [OUT] or None -> [N, OUT]."""
    fn = "linear"
    check_array(x, fn, "x", 2, "[N, IN]")
    check_array(weight, fn, "weight", 2, "[OUT, IN]")
    check_same(fn, x, "x", weight=weight)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"{fn}: weight must have shape [OUT, {x.shape[1]}] for x of shape {_shape_str(x.shape)}, "
                         f"got {_shape_str(weight.shape)}")
    if bias is not None:
        check_array(bias, fn, "bias", 1, "[OUT]")
        check_same(fn, x, "x", bias=bias)
        check_shape(fn, "bias", bias, (weight.shape[0],))
    return _core.linear_forward(x, weight, bias, out)


def linear_backward_data(dy, weight, out=None):
    fn = "linear_backward_data"
    check_array(dy, fn, "dy", 2, "[N, OUT]")
    check_array(weight, fn, "weight", 2, "[OUT, IN]")
    check_same(fn, dy, "dy", weight=weight)
    if dy.shape[1] != weight.shape[0]:
        raise ValueError(f"{fn}: dy must have shape [N, {weight.shape[0]}], got {_shape_str(dy.shape)}")
    return _core.linear_backward_data(dy, weight, out)


def linear_backward_weight(x, dy, out=None):
    fn = "linear_backward_weight"
    check_array(x, fn, "x", 2, "[N, IN]")
    check_array(dy, fn, "dy", 2, "[N, OUT]")
    check_same(fn, x, "x", dy=dy)
    if dy.shape[0] != x.shape[0]:
        raise ValueError(f"{fn}: dy must have shape [{x.shape[0]}, OUT], got {_shape_str(dy.shape)}")
    return _core.linear_backward_weight(x, dy, out)


def linear_backward_bias(dy):
    check_array(dy, "linear_backward_bias", "dy", 2, "[N, OUT]")
    return _core.linear_backward_bias(dy)


# ---- activations ----------------------------------------------------------------------------------

def relu(x):
    check_array(x, "relu", "x")
    return _core.relu_forward(x)


def relu_backward(dy, y):
    """dx = dy where y > 0, else 0 (y is relu's output)."""
    fn = "relu_backward"
    check_array(dy, fn, "dy")
    check_array(y, fn, "y")
    check_same(fn, y, "y", dy=dy)
    check_shape(fn, "dy", dy, y.shape)
    return _core.relu_backward(dy, y)


def dropout(x, p=0.5, seed=0):
    """Inverted dropout: returns (y, mask). The mask depends only on (seed, element index)."""
    fn = "dropout"
    check_array(x, fn, "x")
    p = _float(p, fn, "p", 0.0, 1.0, hi_open=True)
    seed = _int(seed, fn, "seed", 0)
    if seed >= 2**64:
        raise ValueError(f"{fn}: seed must be < 2**64, got {seed}")
    return _core.dropout_forward(x, p, seed)


def dropout_backward(dy, mask, p=0.5):
    fn = "dropout_backward"
    check_array(dy, fn, "dy")
    check_array(mask, fn, "mask", dtypes=(np.dtype(np.uint8),))
    check_shape(fn, "mask", mask, dy.shape)
    if isinstance(dy, DeviceArray) != isinstance(mask, DeviceArray):
        raise ValueError(f"{fn}: dy and mask must be on the same device")
    p = _float(p, fn, "p", 0.0, 1.0, hi_open=True)
    return _core.dropout_backward(dy, mask, p)


# ---- softmax family -------------------------------------------------------------------------------

def softmax(x):
    """Softmax over the last axis of x [N, K]."""
    check_array(x, "softmax", "x", 2, "[N, K]")
    return _core.softmax_forward(x)


def softmax_backward(y, dy):
    fn = "softmax_backward"
    check_array(y, fn, "y", 2, "[N, K]")
    check_array(dy, fn, "dy", 2, "[N, K]")
    check_same(fn, y, "y", dy=dy)
    check_shape(fn, "dy", dy, y.shape)
    return _core.softmax_backward(y, dy)


def log_softmax(x):
    """log(softmax(x)) over the last axis of x [N, K], computed stably."""
    check_array(x, "log_softmax", "x", 2, "[N, K]")
    return _core.log_softmax_forward(x)


def log_softmax_backward(y, dy):
    fn = "log_softmax_backward"
    check_array(y, fn, "y", 2, "[N, K]")
    check_array(dy, fn, "dy", 2, "[N, K]")
    check_same(fn, y, "y", dy=dy)
    check_shape(fn, "dy", dy, y.shape)
    return _core.log_softmax_backward(y, dy)


def _labels(fn, labels, n, k, like):
    if isinstance(labels, (list, tuple)):
        labels = np.asarray(labels)
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu" and labels.dtype != np.int64:
        labels = labels.astype(np.int64)
    check_array(labels, fn, "labels", 1, "[N]", dtypes=(np.dtype(np.int64),))
    if labels.shape[0] != n:
        raise ValueError(f"{fn}: labels must have shape [{n}] (one per row of logits), got {_shape_str(labels.shape)}")
    if isinstance(labels, np.ndarray):
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= k:
            raise ValueError(f"{fn}: labels must lie in [0, {k}), got values in [{lo}, {hi}]")
        if isinstance(like, DeviceArray):
            labels = DeviceArray.from_numpy(np.ascontiguousarray(labels))
    elif not isinstance(like, DeviceArray):
        raise ValueError(f"{fn}: labels are on cuda but logits are on cpu")
    return labels


def softmax_cross_entropy(logits, labels):
    """Per-row cross-entropy of softmax(logits) against integer labels. Returns (loss [N], probs [N, K])."""
    fn = "softmax_cross_entropy"
    check_array(logits, fn, "logits", 2, "[N, K]")
    labels = _labels(fn, labels, logits.shape[0], logits.shape[1], logits)
    return _core.softmax_cross_entropy_forward(logits, labels)


def softmax_cross_entropy_backward(probs, labels, dloss):
    """Gradient with respect to the logits: dloss[n] * (probs[n] - onehot(labels[n]))."""
    fn = "softmax_cross_entropy_backward"
    check_array(probs, fn, "probs", 2, "[N, K]")
    labels = _labels(fn, labels, probs.shape[0], probs.shape[1], probs)
    check_array(dloss, fn, "dloss", 1, "[N]")
    check_same(fn, probs, "probs", dloss=dloss)
    check_shape(fn, "dloss", dloss, (probs.shape[0],))
    return _core.softmax_cross_entropy_backward(probs, labels, dloss)
