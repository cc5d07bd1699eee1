"""convkit.nn: layers, Sequential (capture/until, grads_at/return_grads), Module API, losses.

Gradients are held to central finite differences in float64 through the real kernels and to
PyTorch's autograd (when torch is installed); the module bookkeeping (accumulation, no_grad,
freezing, state dicts, modes) is checked directly.
"""
from collections import OrderedDict

import numpy as np
import pytest

import convkit.nn as nn
from convkit.testing import assert_close, assert_raises, check_gradients
from conftest import on


def small_net(dtype=np.float64, seed=0, dropout=0.0):
    """Every layer kind, odd sizes, groups, ceil_mode, LRN at the channel edges."""
    rng = np.random.default_rng(seed)
    layers = [
        ("conv1", nn.Conv2d(2, 4, 3, padding=1, rng=rng, dtype=dtype)),
        ("relu1", nn.ReLU()),
        ("norm1", nn.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=2.0)),
        ("pool1", nn.MaxPool2d(2, ceil_mode=True)),
        ("conv2", nn.Conv2d(4, 6, (2, 3), stride=(1, 2), padding=(0, 1), groups=2, rng=rng, dtype=dtype)),
        ("relu2", nn.ReLU()),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(6 * 2 * 2, 5, rng=rng, dtype=dtype)),
        ("relu3", nn.ReLU()),
    ]
    if dropout:
        layers.append(("drop", nn.Dropout(dropout, rng=seed)))
    layers.append(("fc2", nn.Linear(5, 3, rng=rng, dtype=dtype)))
    return nn.Sequential(OrderedDict(layers))


def small_input(rng, dtype=np.float64, n=3):
    return rng.standard_normal((n, 2, 5, 7)).astype(dtype)  # 5x7 -> pool (ceil) 3x4 -> conv2 2x2


# ---- construction and initialization ------------------------------------------------------------

def test_init_follows_pytorch_defaults():
    conv = nn.Conv2d(6, 8, (3, 5), groups=2, rng=0)
    bound = 1 / np.sqrt(3 * 3 * 5)  # fan_in = C/groups * KH * KW = 3 * 15 = 45
    w, b = conv.weight.data, conv.bias.data
    assert w.shape == (8, 3, 3, 5) and b.shape == (8,) and w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.9 * bound  # uniform over the whole interval, not a narrower one
    lin = nn.Linear(400, 120, rng=1)
    assert np.abs(lin.weight.data).max() <= 1 / 20 and lin.weight.data.std() > 0.9 * (1 / 20) / np.sqrt(3)


def test_init_is_seeded():
    a, b, c = nn.Conv2d(3, 4, 3, rng=5), nn.Conv2d(3, 4, 3, rng=5), nn.Conv2d(3, 4, 3, rng=6)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert not np.array_equal(a.weight.data, c.weight.data)
    nn.manual_seed(3)
    d = nn.Linear(4, 4)
    nn.manual_seed(3)
    e = nn.Linear(4, 4)
    np.testing.assert_array_equal(d.weight.data, e.weight.data)
    # float64 models from the same seed hold the same values
    f = nn.Conv2d(3, 4, 3, rng=5, dtype=np.float64)
    np.testing.assert_array_equal(f.weight.data, a.weight.data.astype(np.float64))


def test_parameters_and_names():
    m = small_net()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias",
                     "fc2.weight", "fc2.bias"]
    assert m.names == ["conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "flatten", "fc1", "relu3", "fc2"]
    assert m["conv2"] is m.conv2 and m[0] is m["conv1"] and len(m) == 10 and "fc2" in m
    assert m.parameters()[0].name == "weight" and m.num_parameters() == 4 * 2 * 9 + 4 + 6 * 2 * 6 + 6 + 24 * 5 + 5 + 18
    unnamed = nn.Sequential(nn.Linear(2, 3, rng=0), nn.ReLU())
    assert unnamed.names == ["0", "1"] and [n for n, _ in unnamed.named_parameters()] == ["0.weight", "0.bias"]
    nested = nn.Sequential(OrderedDict([("block", small_net()), ("head", nn.Linear(3, 2, rng=0))]))
    assert nested["block.conv1"] is nested["block"]["conv1"]
    assert [n for n, _ in nested.named_parameters()][-2:] == ["head.weight", "head.bias"]
    assert "conv1" in repr(m) and "groups=2" in repr(m)


def test_bad_construction():
    assert_raises(ValueError, r"Conv2d: groups=3 must divide in_channels=4", nn.Conv2d, 4, 6, 3, groups=3)
    assert_raises(ValueError, r"Conv2d: kernel_size must be >= 1, got 0", nn.Conv2d, 1, 1, 0)
    assert_raises(TypeError, r"Conv2d: in_channels must be an int", nn.Conv2d, 1.5, 1, 3)
    assert_raises(TypeError, r"Conv2d: dtype must be float32 or float64, got int32", nn.Conv2d, 1, 1, 3,
                  dtype=np.int32)
    assert_raises(TypeError, r"rng must be None, an int seed or a numpy.random.Generator", nn.Linear, 2, 2,
                  rng="x")
    assert_raises(ValueError, r"Linear: out_features must be >= 1, got 0", nn.Linear, 3, 0)
    assert_raises(ValueError, r"MaxPool2d: padding must be <= kernel_size / 2",
                  nn.MaxPool2d(3, padding=2).output_shape, (1, 1, 8, 8))
    assert_raises(TypeError, r"MaxPool2d: ceil_mode must be a bool", nn.MaxPool2d, 2, ceil_mode=1)
    assert_raises(ValueError, r"LocalResponseNorm: k must be > 0.0", nn.LocalResponseNorm, 5, k=0.0)
    assert_raises(ValueError, r"Dropout: p must be < 1.0, got 1.0", nn.Dropout, 1.0)
    s = nn.Sequential(OrderedDict([("a", nn.ReLU())]))
    assert_raises(ValueError, r"duplicate layer name 'a'", s.add, "a", nn.ReLU())
    assert_raises(ValueError, r"names must be non-empty strings without '.'", s.add, "b.c", nn.ReLU())
    assert_raises(TypeError, r"layer 'b' must be a convkit.nn.Module, got int", s.add, "b", 3)


def test_bad_input_is_clear(rng):
    m = small_net(np.float32)
    assert_raises(ValueError, r"Conv2d: x must have 2 channels", m,
                  rng.standard_normal((1, 3, 5, 7)).astype(np.float32))
    assert_raises(ValueError, r"Conv2d: x must have shape \[N, C, H, W\], got \[2, 5, 7\]", m,
                  np.ones((2, 5, 7), np.float32))
    assert_raises(TypeError, r"conv2d: weight has dtype float32 but x has float64", m, small_input(rng))
    assert_raises(ValueError, r"Linear: x must have 24 features", m["fc1"], np.ones((2, 23), np.float32))
    assert_raises(TypeError, r"must be a numpy array or convkit.DeviceArray, got list", m["relu1"], [1.0])


# ---- forward and backward ----------------------------------------------------------------------

def test_sequential_gradients_finite_differences(rng):
    """dL/dx and dL/dparams of the whole small net against central differences (float64)."""
    m = small_net()
    x = small_input(rng)

    def fwd(x):
        return m(x)

    def bwd(dy, x):
        m.zero_grad()
        m(x)
        return m.backward(dy)

    check_gradients(fwd, bwd, [x], rtol=1e-6)
    for name in ("conv1.weight", "conv2.weight", "conv2.bias", "fc1.weight", "fc2.bias"):
        p = dict(m.named_parameters())[name]

        def fwd_p(w, p=p):
            p.data = w
            return m(x)

        def bwd_p(dy, w, p=p):
            p.data = w
            m.zero_grad()
            m(x)
            m.backward(dy)
            return p.grad

        check_gradients(fwd_p, bwd_p, [p.data.copy()], names=[name], rtol=1e-6)


def _torch_twin(m):
    torch = pytest.importorskip("torch")
    from convkit.io import to_torch
    return torch, to_torch(m)


def test_forward_backward_match_torch(rng):
    m = small_net()
    torch, tm = _torch_twin(m)
    x = small_input(rng)
    dy = rng.standard_normal((3, 3))
    y = m(x)
    dx = m.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = tm(tx)
    ty.backward(torch.tensor(dy))
    # float64 throughout; the two sides sum in different orders: 1e-12 relative is ample
    assert_close(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert_close(dx, tx.grad.numpy(), rtol=1e-11, atol=1e-12)
    tgrads = {n: p.grad.numpy() for n, p in tm.named_parameters()}
    for n, p in m.named_parameters():
        assert_close(p.grad, tgrads[n], rtol=1e-11, atol=1e-12, name=n)


def test_capture_and_until(rng):
    m = small_net()
    x = small_input(rng)
    y, acts = m.forward(x, capture=("conv2", "relu3"))
    assert set(acts) == {"conv2", "relu3"} and acts["conv2"].shape == (3, 6, 2, 2)
    y2, a2 = m.forward(x, capture="pool1")
    assert_close(y2, y, rtol=0, atol=0)
    part = m.forward(x, until="conv2")
    assert_close(part, acts["conv2"], rtol=0, atol=0)
    z, a3 = m.forward(x, capture=["fc1"], until="fc1")
    assert_close(z, a3["fc1"], rtol=0, atol=0)
    assert z.shape == (3, 5)
    assert_raises(KeyError, r"capture names no layer: 'fc9'; layers: conv1, relu1", m.forward, x, capture=("fc9",))
    assert_raises(KeyError, r"until names no layer: 'nope'", m.forward, x, until="nope")
    assert_raises(ValueError, r"capture names \['fc2'\], which come after until='conv2'", m.forward, x,
                  capture=("fc2",), until="conv2")


def test_grads_at_and_return_grads_match_torch(rng):
    """grads_at adds gradients at inner layers; return_grads reports them; against torch autograd."""
    m = small_net()
    torch, tm = _torch_twin(m)
    x = small_input(rng)
    dy = rng.standard_normal((3, 3))
    g_conv2 = rng.standard_normal((3, 6, 2, 2))
    g_relu1 = rng.standard_normal((3, 4, 5, 7))
    m.forward(x)
    dx, grads = m.backward(dy, grads_at={"conv2": g_conv2, "relu1": g_relu1}, return_grads=("fc1", "conv2", "norm1"))
    # torch: L = <y, dy> + <conv2 out, g_conv2> + <relu1 out, g_relu1>, retaining inner gradients
    tx = torch.tensor(x, requires_grad=True)
    h, outs = tx, {}
    for name, layer in tm.named_children():
        h = layer(h)
        h.retain_grad()
        outs[name] = h
    loss = (h * torch.tensor(dy)).sum() + (outs["conv2"] * torch.tensor(g_conv2)).sum() \
        + (outs["relu1"] * torch.tensor(g_relu1)).sum()
    loss.backward()
    assert_close(dx, tx.grad.numpy(), rtol=1e-11, atol=1e-12, name="dx")
    for name in ("fc1", "conv2", "norm1"):
        assert_close(grads[name], outs[name].grad.numpy(), rtol=1e-11, atol=1e-12, name=name)
    tgrads = dict(tm.named_parameters())
    for n, p in m.named_parameters():
        assert_close(p.grad, tgrads[n].grad.numpy(), rtol=1e-11, atol=1e-12, name=n)


def test_backward_from_inner_layer_only(rng):
    """dy=None: backward starts at the deepest grads_at layer (style transfer, feature inversion)."""
    m = small_net()
    x = small_input(rng)
    g = rng.standard_normal((3, 6, 2, 2))
    m.forward(x)
    dx, grads = m.backward(None, grads_at={"relu2": g}, return_grads=("pool1",), param_grads=False)
    # the same as running only up to relu2 and backpropagating g from there
    m.forward(x, until="relu2")
    dx2, grads2 = m.backward(g, return_grads=("pool1",), param_grads=False)
    assert_close(dx, dx2, rtol=0, atol=0)
    assert_close(grads["pool1"], grads2["pool1"], rtol=0, atol=0)
    assert all(p.grad is None for p in m.parameters())  # param_grads=False
    m.forward(x)
    assert_raises(ValueError, r"give dy, grads_at, or both", m.backward, None)
    assert_raises(KeyError, r"grads_at names no layer: 'zz'", m.backward, None, grads_at={"zz": g})
    assert_raises(ValueError, r"return_grads names \['fc2'\], after the layer where backward starts \('relu2'\)",
                  m.backward, None, grads_at={"relu2": g}, return_grads=("fc2",))
    m.forward(x, until="conv2")
    assert_raises(ValueError, r"grads_at names \['fc1'\], after the last layer the forward ran \('conv2'\)",
                  m.backward, None, grads_at={"fc1": np.ones((3, 5))})


def test_grad_accumulates_and_zero_grad(rng):
    m = small_net()
    x = small_input(rng)
    dy = rng.standard_normal((3, 3))
    m.forward(x)
    m.backward(dy)
    once = {n: p.grad.copy() for n, p in m.named_parameters()}
    m.forward(x)
    m.backward(dy)
    for n, p in m.named_parameters():
        assert_close(p.grad, 2 * once[n], rtol=1e-15, atol=0, name=n)  # accumulated: exactly twice
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_input_grad_false_and_freezing(rng):
    m = small_net()
    x = small_input(rng)
    dy = rng.standard_normal((3, 3))
    m.forward(x)
    dx = m.backward(dy)
    ref = {n: p.grad.copy() for n, p in m.named_parameters()}
    m.zero_grad()
    m.forward(x)
    assert m.backward(dy, input_grad=False) is None
    for n, p in m.named_parameters():
        assert_close(p.grad, ref[n], rtol=0, atol=0, name=n)
    m.zero_grad()
    m["conv1"].requires_grad_(False)
    m.forward(x)
    dx2 = m.backward(dy)
    assert m["conv1"].weight.grad is None and m["conv2"].weight.grad is not None
    assert_close(dx2, dx, rtol=0, atol=0)


def test_no_grad_keeps_nothing(rng):
    m = small_net()
    x = small_input(rng)
    y = m(x)
    with nn.no_grad():
        assert not nn.is_grad_enabled()
        y2 = m(x)
    assert nn.is_grad_enabled()
    assert_close(y2, y, rtol=0, atol=0)
    assert_raises(RuntimeError, r"no forward pass to differentiate", m.backward, np.ones((3, 3)))
    assert_raises(RuntimeError, r"Conv2d.backward: no input from a forward pass", m["conv1"].backward,
                  np.ones((3, 4, 5, 7)))


def test_dropout_modes(rng):
    m = small_net(dropout=0.5)
    x = small_input(rng)
    m.eval()
    a, b = m(x), m(x)
    assert_close(a, b, rtol=0, atol=0)  # eval: dropout is the identity
    m.train()
    h1 = m.forward(x, capture="drop")[1]["drop"]
    h2 = m.forward(x, capture="drop")[1]["drop"]
    assert not np.array_equal(h1, h2)  # a fresh mask per forward
    m2 = small_net(dropout=0.5)
    assert_close(m2.forward(x, capture="drop")[1]["drop"], h1, rtol=0, atol=0)  # seeded: reproducible
    # the gradient uses the forward's mask
    d = m["drop"]
    y = d(np.ones((4, 6)))
    assert_close(d.backward(np.ones((4, 6))), y, rtol=0, atol=0)
    assert m.training and not m.eval().training and not m["drop"].training


def test_state_dict_roundtrip_and_errors(rng):
    a, b = small_net(seed=1), small_net(seed=2)
    x = small_input(rng)
    b.load_state_dict(a.state_dict())
    assert_close(b(x), a(x), rtol=0, atol=0)
    sd = a.state_dict()
    sd["fc2.weight"] = sd["fc2.weight"][:, :4]
    assert_raises(ValueError, r"fc2.weight must have shape \[3, 5\], got \[3, 4\]", b.load_state_dict, sd)
    sd = a.state_dict()
    del sd["fc2.bias"]
    sd["extra"] = np.ones(2)
    assert_raises(KeyError, r"missing parameters \['fc2.bias'\], unexpected names \['extra'\]", b.load_state_dict, sd)
    b.load_state_dict({"fc2.bias": np.ones(3)}, strict=False)
    assert_close(b["fc2"].bias.data, np.ones(3), rtol=0, atol=0)
    sd = a.state_dict()
    sd["fc2.bias"] = np.array([1.0, np.nan, 0.0])
    assert_raises(ValueError, r"fc2.bias contains NaN", b.load_state_dict, sd)
    sd["fc2.bias"] = np.ones(3, np.int64)
    assert_raises(TypeError, r"fc2.bias must be a float array", b.load_state_dict, sd)
    assert_raises(TypeError, r"state must be a mapping", b.load_state_dict, [1, 2])
    # the state dict is a copy
    sd = a.state_dict()
    sd["fc2.bias"][:] = 7
    assert not np.any(a["fc2"].bias.data == 7)


def test_dtype_conversion(rng):
    m = small_net(np.float32)
    x = small_input(rng)
    y32 = m(x.astype(np.float32))
    m.double()
    assert m.dtype == np.float64 and all(p.dtype == np.float64 for p in m.parameters())
    assert_close(m(x), y32, rtol=1e-5, atol=1e-6)  # float32 vs float64 rounding
    assert_raises(TypeError, r"dtype must be float32 or float64, got int64", m.to, dtype=np.int64)


def test_on_device(device, rng):
    m = small_net(np.float32)
    x = small_input(rng, np.float32)
    dy = rng.standard_normal((3, 3)).astype(np.float32)
    y = m(x)
    dx = m.backward(dy)
    ref = {n: p.grad.copy() for n, p in m.named_parameters()}
    m.zero_grad()
    m.to(device)
    assert m.device == device
    yd = m(on(device, x))
    dxd = m.backward(on(device, dy))
    assert_close(yd, y, rtol=1e-5, atol=1e-5)  # CUDA sums in another order: float32 rounding
    assert_close(dxd, dx, rtol=1e-5, atol=1e-5)
    for n, p in m.named_parameters():
        assert p.device == device
        assert_close(p.grad, ref[n], rtol=1e-4, atol=1e-5, name=n)
    m.to("cpu")
    assert m.device == "cpu"


def test_shapes_and_macs():
    m = small_net()
    assert m.output_shape((3, 2, 5, 7)) == (3, 3)
    # conv1: 3*4*5*7 outputs x 2*9; conv2: 3*6*2*2 x (4/2)*2*3; fc1: 3*24*5; fc2: 3*5*3
    assert m.macs((3, 2, 5, 7)) == 3 * 4 * 35 * 18 + 3 * 6 * 4 * 12 + 3 * 24 * 5 + 3 * 5 * 3
    assert_raises(ValueError, r"Conv2d: input must have 2 channels", m.output_shape, (1, 3, 5, 7))


# ---- loss ---------------------------------------------------------------------------------------

def test_cross_entropy_hand_worked():
    # logits [0, ln 3] -> softmax [1/4, 3/4]; label 1 -> loss -ln(3/4); dlogits = p - onehot = [1/4, -1/4]
    logits = np.array([[0.0, np.log(3.0)]])
    loss, d = nn.cross_entropy(logits, [1])
    assert abs(loss - (-np.log(0.75))) < 1e-15
    assert_close(d, np.array([[0.25, -0.25]]), rtol=1e-15, atol=1e-16)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch(reduction, rng):
    torch = pytest.importorskip("torch")
    logits = rng.standard_normal((7, 5)) * 3
    labels = rng.integers(0, 5, 7)
    loss, d = nn.cross_entropy(logits, labels, reduction)
    t = torch.tensor(logits, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(t, torch.tensor(labels), reduction=reduction)
    tl.sum().backward()
    assert_close(np.asarray(loss), tl.detach().numpy(), rtol=1e-13, atol=1e-15)
    assert_close(d, t.grad.numpy(), rtol=1e-13, atol=1e-15)
    crit = nn.CrossEntropyLoss(reduction)
    assert_close(np.asarray(crit(logits, labels)), np.asarray(loss), rtol=0, atol=0)
    assert_close(crit.backward(), d, rtol=0, atol=0)


def test_cross_entropy_bad_input():
    assert_raises(ValueError, r"reduction must be one of", nn.cross_entropy, np.ones((2, 3)), [0, 1], "avg")
    assert_raises(ValueError, r"labels must lie in \[0, 3\)", nn.cross_entropy, np.ones((2, 3)), [0, 3])
    assert_raises(RuntimeError, r"call the loss on \(logits, labels\) first", nn.CrossEntropyLoss().backward)


def test_normalize_layer(rng):
    # (x - mean) / std per channel: channel 0: (1 - 0.5) / 2 = 0.25; channel 1: (1 - 1) / 4 = 0
    norm = nn.Normalize([0.5, 1.0], [2.0, 4.0])
    y = norm(np.ones((1, 2, 1, 1)))
    assert y.ravel().tolist() == [0.25, 0.0]
    # dx = dy / std
    assert norm.backward(np.ones((1, 2, 1, 1))).ravel().tolist() == [0.5, 0.25]
    assert nn.Normalize(0.5, 0.25)(np.ones((2, 3, 2, 2), np.float32)).dtype == np.float32
    m = nn.Sequential(OrderedDict([("normalize", nn.Normalize([0.2, 0.4], [0.3, 0.5])),
                                   ("conv", nn.Conv2d(2, 3, 3, rng=0, dtype=np.float64)),
                                   ("flat", nn.Flatten())]))
    x = rng.random((2, 2, 5, 5))
    check_gradients(lambda x: m(x), lambda dy, x: (m(x), m.backward(dy))[1], [x])
    torch, tm = _torch_twin(m)
    assert_close(m(x), tm(torch.from_numpy(x)).detach().numpy(), rtol=1e-13, atol=1e-14)
    assert_raises(ValueError, r"Normalize: mean must be finite and std finite and > 0", nn.Normalize, 0.5, 0.0)
    assert_raises(ValueError, r"Normalize: x has 3 channels but mean/std have 2", norm, np.ones((1, 3, 2, 2)))
