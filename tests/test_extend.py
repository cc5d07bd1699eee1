"""convkit.extend: Python-defined ops (@op and Function) behave like built-in layers.

Checked here: results and gradients against plain numpy (the specification), float64 finite
differences through the real module path, use inside Sequential (training, no_grad, param_grads /
input_grad, grads_at), the same clear errors as built-in ops for bad input, clear errors for bad
results of user code, and (where CUDA is usable) a body made of convkit ops running on the GPU.
"""
import numpy as np
import pytest

import convkit
import convkit.optim
from convkit import extend, nn
from convkit import functional as F
from convkit.testing import assert_close, assert_raises, check_gradients

from conftest import on


# ---- the ops under test ---------------------------------------------------------------------------

@extend.op
def leaky_relu(x, slope=0.01):
    return np.where(x > 0, x, slope * x)


@leaky_relu.backward
def _leaky_relu_backward(dy, x, y, slope=0.01):
    return np.where(x > 0, dy, slope * dy)


def _square_backward(dy, x, y):
    return 2 * x * dy


square = extend.op(lambda x: x * x, backward=_square_backward, name="square")


@extend.op(ndim=4, layout="[N, C, H, W]")
def channel_sum(x):
    """Not shape-preserving: [N, C, H, W] -> [N, 1, H, W]."""
    return x.sum(axis=1, keepdims=True)


@channel_sum.backward
def _(dy, x, y):
    return np.broadcast_to(dy, x.shape)  # non-contiguous on purpose: the machinery makes it contiguous


class Scale(extend.Function):
    """y = x * w[c] per channel of [N, C, ...] (a learnable per-channel scale)."""
    ndim = 2
    layout = "[N, C]"

    def __init__(self, channels, dtype=np.float32):
        super().__init__()
        self.weight = nn.Parameter(np.linspace(0.5, 1.5, channels).astype(dtype))

    def forward(self, x):
        self.save(x)
        return x * self.weight.data

    def backward(self, dy):
        (x,) = self.saved
        dx = dy * self.weight.data if self.needs_input_grad else None
        dw = (dy * x).sum(axis=0) if self.needs_param_grads else None
        return dx, {"weight": dw}


# ---- @op --------------------------------------------------------------------------------------------

def test_op_forward_and_backward_hand_worked():
    # slope 0.5: [2, -4, 0.5, -0.25] -> [2, -2, 0.5, -0.125]; dy = [1, 2, 3, 4] -> dx = [1, 1, 3, 2]
    x = np.array([2.0, -4.0, 0.5, -0.25], dtype=np.float32)
    y = leaky_relu(x, slope=0.5)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [2.0, -2.0, 0.5, -0.125])
    dx = leaky_relu.grad(np.array([1, 2, 3, 4], dtype=np.float32), x, slope=0.5)
    np.testing.assert_array_equal(dx, [1.0, 1.0, 3.0, 2.0])


def test_op_result_keeps_input_dtype_and_is_contiguous(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    y = extend.op(lambda x: x.astype(np.float64).T.T * 2.0, backward=lambda dy, x, y: 2.0 * dy)(x)
    assert y.dtype == np.float32 and y.flags.c_contiguous
    m = channel_sum.module()
    x4 = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    m(x4)
    dx = m.backward(np.ones((2, 1, 4, 5), np.float32))
    assert dx.flags.c_contiguous and dx.shape == x4.shape and dx.dtype == np.float32


@pytest.mark.parametrize("op_module", [lambda: leaky_relu.module(slope=0.3), lambda: square.module(),
                                       lambda: channel_sum.module()])
def test_op_module_gradients_finite_differences(op_module, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    x[np.abs(x) < 1e-3] = 0.5  # away from leaky_relu's kink
    m = op_module()

    def fwd(x):
        return m.forward(x)

    def bwd(dy, x):
        m.forward(x)
        return m.backward(dy)

    # piecewise linear / quadratic: central differences exact up to rounding (square: O(eps^2) = 1e-12)
    check_gradients(fwd, bwd, [x], rtol=1e-7, names=["x"])


def test_function_gradients_finite_differences(rng):
    x = rng.standard_normal((5, 3))
    layer = Scale(3, dtype=np.float64)

    def fwd(x, w):
        layer.weight.data = w
        return layer.forward(x)

    def bwd(dy, x, w):
        layer.weight.data = w
        layer.zero_grad()
        layer.forward(x)
        dx = layer.backward(dy)
        return dx, layer.weight.grad

    check_gradients(fwd, bwd, [x, layer.weight.data.copy()], rtol=1e-7, names=["x", "weight"])


def test_function_param_grads_accumulate_and_flags(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    dy = rng.standard_normal((4, 3)).astype(np.float32)
    layer = Scale(3)
    layer(x)
    layer.backward(dy)
    g1 = layer.weight.grad.copy()
    layer.backward(dy)  # accumulates: p.grad += g
    assert_close(layer.weight.grad, 2 * g1, rtol=1e-6)
    layer.zero_grad()
    assert layer.backward(dy, param_grads=False) is not None and layer.weight.grad is None
    assert layer.backward(dy, input_grad=False) is None and layer.weight.grad is not None
    layer.weight.requires_grad = False
    layer.zero_grad()
    layer.backward(dy)
    assert layer.weight.grad is None


def test_no_grad_keeps_nothing(rng):
    x = rng.standard_normal((2, 3)).astype(np.float32)
    for m in (leaky_relu.module(), Scale(3)):
        with nn.no_grad():
            m(x)
        assert_raises(RuntimeError, r"backward: no .* from a forward pass", m.backward, np.ones_like(x))


def test_python_op_matches_builtin_relu(rng, device):
    """slope 0 makes leaky ReLU a ReLU: identical to the built-in op, values and gradients."""
    x = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    ours = leaky_relu.module(slope=0.0)
    builtin = nn.ReLU()
    y0 = ours(x)
    np.testing.assert_array_equal(y0, builtin(x))
    np.testing.assert_array_equal(ours.backward(dy), builtin.backward(dy))


# ---- inside networks ---------------------------------------------------------------------------------

def _mlp(act, seed=0):
    nn.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), act, nn.Linear(16, 3))


def test_in_sequential_trains(rng):
    x = rng.standard_normal((48, 6)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    model = _mlp(leaky_relu.module(slope=0.1))
    opt = convkit.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(30):
        model.zero_grad()
        loss, dlogits = nn.cross_entropy(model(x), labels)
        model.backward(dlogits)
        opt.step()
        losses.append(loss)
    assert losses[-1] < 0.5 * losses[0], losses


def test_in_sequential_same_as_builtin_relu_network(rng):
    """A network with the Python op at slope 0 and one with nn.ReLU: same logits and weight gradients."""
    x = rng.standard_normal((8, 6)).astype(np.float32)
    labels = np.arange(8) % 3
    a, b = _mlp(leaky_relu.module(slope=0.0)), _mlp(nn.ReLU())
    for m in (a, b):
        _, d = nn.cross_entropy(m(x), labels)
        m.backward(d)
    for (na, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.grad, pb.grad, err_msg=na)


def test_function_in_sequential_with_capture_and_grads_at(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    nn.manual_seed(1)
    model = nn.Sequential({"fc1": nn.Linear(6, 3), "scale": Scale(3), "act": leaky_relu.module(slope=0.2)})
    y, acts = model.forward(x, capture=("scale",))
    np.testing.assert_array_equal(acts["scale"], model["scale"](model["fc1"](x)))
    g = np.ones((4, 3), np.float32)
    dx, grads = model.backward(None, grads_at={"act": g}, return_grads=("scale",), param_grads=False)
    assert dx.shape == x.shape and grads["scale"].shape == (4, 3)
    assert model["scale"].weight.grad is None


def test_repr():
    assert "slope=0.3" in repr(leaky_relu.module(slope=0.3))
    assert "leaky_relu" in repr(leaky_relu)


# ---- clear errors -------------------------------------------------------------------------------------

def test_bad_input_same_errors_as_builtin():
    """The messages a built-in layer gives, with the custom op's name."""
    bad = [
        ([1.0, 2.0], TypeError, r"must be a numpy array or convkit.DeviceArray, got list"),
        (np.ones(3, np.int64), TypeError, r"must have dtype float32 or float64, got int64"),
        (np.ones((4, 4), np.float32)[:, ::2], ValueError, r"must be C-contiguous"),
        (np.ones((0, 2), np.float32), ValueError, r"is empty"),
        (np.ones(3, np.float32).astype(">f4"), (TypeError, ValueError), r"byte order|dtype"),
    ]
    for x, exc, pattern in bad:
        assert_raises(exc, r"ReLU: x " + pattern, nn.ReLU(), x)
        assert_raises(exc, r"leaky_relu: x " + pattern, leaky_relu, x)
        assert_raises(exc, r"leaky_relu: x " + pattern, leaky_relu.module(), x)
        assert_raises(exc, r"Scale: x " + pattern, Scale(2), x)


def test_bad_rank_and_params():
    assert_raises(ValueError, r"channel_sum: x must have shape \[N, C, H, W\], got \[2, 3\]",
                  channel_sum, np.ones((2, 3), np.float32))
    assert_raises(ValueError, r"Scale: x must have shape \[N, C\], got \[2, 3, 4\]", Scale(3),
                  np.ones((2, 3, 4), np.float32))
    assert_raises(TypeError, r"leaky_relu: .*unexpected keyword argument 'slop'", leaky_relu.module, slop=0.1)
    assert_raises(TypeError, r"leaky_relu: .*unexpected keyword argument 'slop'", leaky_relu,
                  np.ones(2, np.float32), slop=0.1)


def test_bad_dy():
    m = leaky_relu.module()
    m(np.ones((2, 3), np.float32))
    assert_raises(ValueError, r"leaky_relu.backward: dy must have shape \[2, 3\], got \[3, 2\]",
                  m.backward, np.ones((3, 2), np.float32))
    assert_raises(TypeError, r"leaky_relu.backward: dy has dtype float64 but y has float32",
                  m.backward, np.ones((2, 3)))
    s = Scale(3)
    s(np.ones((2, 3), np.float32))
    assert_raises(TypeError, r"Scale.backward: dy must be a numpy array", s.backward, [[1, 2, 3]])


def test_bad_results_of_user_code_are_named():
    x = np.ones((2, 3), np.float32)
    assert_raises(TypeError, r"bad_fwd: forward result must be an array .* got list",
                  extend.op(lambda x: [1, 2], name="bad_fwd"), x)
    wrong_shape = extend.op(lambda x: x.copy(), backward=lambda dy, x, y: dy[:, :2], name="wrong_shape").module()
    wrong_shape(x)
    assert_raises(ValueError, r"wrong_shape: backward result \(gradient of x\) must have shape \[2, 3\], got \[2, 2\]",
                  wrong_shape.backward, x)
    no_bwd = extend.op(lambda x: x * 2, name="no_bwd").module()
    no_bwd(x)
    assert_raises(NotImplementedError, r"no_bwd: no backward defined", no_bwd.backward, x)

    class BadGrad(extend.Function):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(np.ones(3, np.float32))

        def forward(self, x):
            return x

        def backward(self, dy):
            return dy, {"v": dy}

    b = BadGrad()
    b(x)
    assert_raises(KeyError, r"BadGrad.backward returned a gradient for 'v', which is not a parameter", b.backward, x)

    class SaveOutside(extend.Function):
        def forward(self, x):
            return x

        def backward(self, dy):
            return dy

    s = SaveOutside()
    assert_raises(RuntimeError, r"SaveOutside.save: call it inside forward", s.save, x)
    assert_raises(TypeError, r"extend.op: .* must take the input array", extend.op, lambda *, a: a)


# ---- on CUDA: a body made of convkit ops --------------------------------------------------------------

@extend.op
def relu_via_convkit(x):
    return F.relu(x)


@relu_via_convkit.backward
def _(dy, x, y):
    return F.relu_backward(dy, y)


def test_op_built_from_convkit_ops_runs_on_device(rng, device):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    m = relu_via_convkit.module()
    y = m(on(device, x))
    assert convkit.device_of(y) == device
    np.testing.assert_array_equal(convkit.to_numpy(y), np.maximum(x, 0))
    np.testing.assert_array_equal(convkit.to_numpy(m.backward(on(device, dy))), np.where(x > 0, dy, 0))


def test_numpy_result_for_device_input_is_a_clear_error(device):
    if device != "cuda":
        pytest.skip("needs a CUDA input")
    x = convkit.asarray(np.ones((2, 2), np.float32), device="cuda")
    assert_raises(ValueError, r"forward result is on cpu but the input is on cuda",
                  extend.op(lambda x: np.ones((2, 2), np.float32), name="cpu_only"), x)
