"""Tests of the example extension: reference values, a float64 finite-difference gradient check of
the backward, clear errors on bad input, CPU/CUDA agreement, and training inside a network."""
import numpy as np
import pytest

import convkit
import convkit.optim
from convkit import nn
from convkit.testing import assert_close, assert_raises, check_gradients

import convkit_custom_op as cop

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not (convkit.cuda_available() and cop.cuda_compiled),
                                                                  reason="needs a CUDA device and a CUDA build"))]


def reference(x, slope):
    """The specification, in float64: y = x if x > 0 else slope * x."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, x, slope * x)


def test_hand_worked():
    # slope 0.5: 2 -> 2, -4 -> -2, 0 -> 0 (0 is not > 0: 0.5 * 0), -0.25 -> -0.125; all exact in float32.
    x = np.array([2.0, -4.0, 0.0, -0.25], dtype=np.float32)
    y = cop.leaky_relu(x, slope=0.5)
    np.testing.assert_array_equal(y, np.array([2.0, -2.0, 0.0, -0.125], dtype=np.float32))
    # backward with dy = [1, 1, 1, 8]: [1, 0.5, 0.5 (x == 0 takes the slope, as PyTorch), 4]
    dx = cop.leaky_relu_backward(np.array([1, 1, 1, 8], dtype=np.float32), x, slope=0.5)
    np.testing.assert_array_equal(dx, np.array([1.0, 0.5, 0.5, 4.0], dtype=np.float32))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (3, 5), (2, 3, 7, 9), (1, 1, 1, 100003)])
def test_forward_matches_reference(device, dtype, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    y = convkit.to_numpy(cop.leaky_relu(convkit.asarray(x, device=device), slope=0.2))
    assert y.dtype == dtype and y.shape == shape
    # one rounding of slope * x in the array's dtype
    eps = np.finfo(dtype).eps
    assert_close(y, reference(x, np.float64(dtype(0.2))), rtol=eps, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_gradient_float64_finite_differences(device):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 5, 4))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink at 0 (eps = 1e-6 must not cross it)

    def fwd(x):
        return cop.leaky_relu(convkit.asarray(x, device=device), slope=0.3)

    def bwd(dy, x):
        return cop.leaky_relu_backward(convkit.asarray(dy, device=device), convkit.asarray(x, device=device), slope=0.3)

    # piecewise linear: central differences are exact up to rounding, so 1e-7 is generous
    check_gradients(fwd, bwd, [x], rtol=1e-7, names=["x"])


def test_bad_input_clear_errors():
    x = np.ones((2, 3), dtype=np.float32)
    assert_raises(TypeError, r"leaky_relu: x must be a numpy array or convkit.DeviceArray, got list",
                  cop.leaky_relu, [1.0, 2.0])
    assert_raises(TypeError, r"leaky_relu: x must have dtype float32 or float64, got int64",
                  cop.leaky_relu, np.ones(3, dtype=np.int64))
    assert_raises(ValueError, r"leaky_relu: x must be C-contiguous", cop.leaky_relu, np.ones((4, 4), np.float32)[:, ::2])
    assert_raises(ValueError, r"leaky_relu: x is empty", cop.leaky_relu, np.ones((0, 3), np.float32))
    assert_raises(ValueError, r"leaky_relu: slope must be finite, got nan", cop.leaky_relu, x, slope=float("nan"))
    assert_raises(TypeError, r"leaky_relu: slope must be a number, got str", cop.leaky_relu, x, slope="0.1")
    assert_raises(ValueError, r"leaky_relu_backward: dy must have shape \[2, 3\], got \[3, 2\]",
                  cop.leaky_relu_backward, np.ones((3, 2), np.float32), x)
    assert_raises(TypeError, r"leaky_relu_backward: dy has dtype float64 but x has float32",
                  cop.leaky_relu_backward, np.ones((2, 3)), x)
    assert_raises(ValueError, r"LeakyReLU: x must be C-contiguous", cop.LeakyReLU(0.1), np.ones((4, 4), np.float32).T)


def test_bad_input_reaches_cpp_checks():
    """Skip the Python layer: the C++ binding's own checks give the same kind of errors."""
    from convkit_custom_op import _leaky_relu as ext
    assert_raises(TypeError, r"leaky_relu_forward: x must be a numpy array or convkit.DeviceArray, got str",
                  ext.leaky_relu_forward, "abc", 0.1)
    assert_raises(TypeError, r"leaky_relu_forward: x has unsupported dtype int32",
                  ext.leaky_relu_forward, np.ones(3, np.int32), 0.1)
    assert_raises(ValueError, r"leaky_relu_forward: x must be float32 or float64, got int64",
                  ext.leaky_relu_forward, np.ones(3, np.int64), 0.1)
    assert_raises(ValueError, r"leaky_relu_forward: x must be C-contiguous",
                  ext.leaky_relu_forward, np.ones((3, 4), np.float32)[:, 1:], 0.1)
    assert_raises(ValueError, r"leaky_relu_forward: x is empty", ext.leaky_relu_forward, np.ones(0, np.float32), 0.1)
    assert_raises(ValueError, r"leaky_relu_forward: slope must be finite", ext.leaky_relu_forward,
                  np.ones(3, np.float32), float("inf"))
    assert_raises(ValueError, r"leaky_relu_backward: dy must have the shape of x \[3\], got \[4\]",
                  ext.leaky_relu_backward, np.ones(4, np.float32), np.ones(3, np.float32), 0.1)
    assert_raises(ValueError, r"leaky_relu_backward: dy must be float64, got float32",
                  ext.leaky_relu_backward, np.ones(3, np.float32), np.ones(3), 0.1)


@pytest.mark.skipif(cop.cuda_compiled, reason="this build has CUDA kernels")
def test_cuda_array_without_cuda_build_is_a_clear_error():
    class FakeCudaArray:  # a CUDA array as another library would hand it over
        __cuda_array_interface__ = {"shape": (3,), "typestr": "<f4", "data": (1 << 20, False), "version": 3,
                                    "strides": None, "stream": 1}
    assert_raises(RuntimeError, r"leaky_relu_forward: x is on cuda but this extension was built without CUDA support",
                  cop._ext.leaky_relu_forward, FakeCudaArray(), 0.1)


@pytest.mark.skipif(not (convkit.cuda_available() and cop.cuda_compiled), reason="needs a CUDA device and a CUDA build")
def test_cpu_and_cuda_agree():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 17, 19)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    xd, dyd = convkit.asarray(x, device="cuda"), convkit.asarray(dy, device="cuda")
    np.testing.assert_array_equal(convkit.to_numpy(cop.leaky_relu(xd, 0.1)), cop.leaky_relu(x, 0.1))
    np.testing.assert_array_equal(convkit.to_numpy(cop.leaky_relu_backward(dyd, xd, 0.1)),
                                  cop.leaky_relu_backward(dy, x, 0.1))


def test_thread_count_does_not_change_results():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(300001).astype(np.float32)
    old = convkit.get_num_threads()
    try:
        convkit.set_num_threads(1)
        a = cop.leaky_relu(x, 0.1)
        convkit.set_num_threads(2)
        b = cop.leaky_relu(x, 0.1)
    finally:
        convkit.set_num_threads(old)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_trains_inside_a_network(device):
    """A small MLP with the custom layer learns a toy problem: the loss falls."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    labels = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0)
    nn.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), cop.LeakyReLU(0.1), nn.Linear(32, 4)).to(device)
    opt = convkit.optim.SGD(model.parameters(), lr=0.5)
    xd = convkit.asarray(x, device=device)
    losses = []
    for _ in range(40):
        model.zero_grad()
        loss, dlogits = nn.cross_entropy(model(xd), labels)
        model.backward(dlogits)
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses
