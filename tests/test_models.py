"""The model zoo: architectures, the lecture's AlexNet table, PyTorch weight import, AlexNet gradients."""
import json
from collections import OrderedDict

import numpy as np
import pytest

import convkit.models as M
from convkit import io as cio
from convkit.cli import main
from convkit.summary import summary
from convkit.testing import assert_close, assert_raises, check_gradients


# ---- architectures -------------------------------------------------------------------------------

def test_lenet5_shape():
    m = M.lenet5()
    assert m.names == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten", "fc1", "relu3", "fc2",
                       "relu4", "fc3"]
    # conv 6x(1x5x5)+6, 16x(6x5x5)+16, fc 400x120+120, 120x84+84, 84x10+10
    assert m.num_parameters() == 156 + 2416 + 48120 + 10164 + 850 == 61706
    assert m.output_shape((2, 1, 28, 28)) == (2, 10)
    assert m.feature_layer == "relu4" and m.input_shape == (1, 28, 28)
    wide = M.lenet5(width=2, dropout=0.25)
    assert wide["conv1"].out_channels == 12 and "drop3" in wide and wide.output_shape((1, 1, 28, 28)) == (1, 10)


def test_alexnet_is_the_lecture_diagram():
    m = M.alexnet()
    shapes, s = {}, (1, 3, 227, 227)
    for name in m.names:
        s = m[name].output_shape(s)
        shapes[name] = s[1:]
    assert shapes["conv1"] == (96, 55, 55) and shapes["pool1"] == (96, 27, 27)
    assert shapes["conv2"] == (256, 27, 27) and shapes["pool2"] == (256, 13, 13)
    assert shapes["conv3"] == (384, 13, 13) and shapes["conv4"] == (384, 13, 13) and shapes["conv5"] == (256, 13, 13)
    assert shapes["pool5"] == (256, 6, 6) and shapes["fc6"] == (4096,) and shapes["fc8"] == (1000,)
    assert [m[c].groups for c in ("conv1", "conv2", "conv3", "conv4", "conv5")] == [1, 2, 1, 2, 2]
    assert m["norm1"].size == 5 and m["norm1"].k == 2.0 and m["norm1"].alpha == 1e-4 and m["norm1"].beta == 0.75
    assert m.num_parameters() == 60_965_224


def test_alexnet_torchvision_and_vgg19_shapes():
    a = M.alexnet_torchvision(num_classes=10)
    assert a.output_shape((1, 3, 224, 224)) == (1, 10) and a.num_parameters() == 57_044_810
    v = M.vgg19()
    assert v.names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"] and v.names[-1] == "pool5"
    assert v.output_shape((1, 3, 224, 224)) == (1, 512, 7, 7)
    assert v.num_parameters() == 20_024_384  # torchvision's vgg19().features
    assert_raises(ValueError, r"unknown model 'resnet'", M.get, "resnet")


# ---- summary -------------------------------------------------------------------------------------

def test_summary_reproduces_the_lecture_table():
    s = summary(M.alexnet(), (3, 227, 227))
    # the lecture: conv1 35K / 105M, conv2 307K / 223M, conv3 884K / 149M, conv5 442K / 74M, FC 37M, 16M, 4M
    expect = {"conv1": (34_944, 105_415_200), "conv2": (307_456, 223_948_800), "conv3": (885_120, 149_520_384),
              "conv4": (663_936, 112_140_288), "conv5": (442_624, 74_760_192), "fc6": (37_752_832, 37_748_736),
              "fc7": (16_781_312, 16_777_216), "fc8": (4_097_000, 4_096_000)}
    for name, (params, macs) in expect.items():
        r = s.row(name)
        assert (r.params, r.macs) == (params, macs), name
    assert s.total_params == 60_965_224 and s.total_macs == 724_406_816
    text = str(s)
    assert "conv4: the lecture lists 1.3M parameters and 112M MACs, which disagree" in text.replace("\n      ", " ")
    assert len(s.notes) == 2  # the rounding note and conv4; every other layer agrees
    # batch: MACs scale with N
    assert summary(M.alexnet(), (4, 3, 227, 227)).total_macs == 4 * 724_406_816
    assert_raises(ValueError, r"input_shape must be a tuple of positive ints", summary, M.lenet5(), (1, 0, 28))


def test_summary_command(capsys):
    assert main(["summary", "alexnet"]) == 0
    out = capsys.readouterr().out
    assert "conv4" in out and "lecture params" in out and "724.4M" in out
    assert main(["summary", "lenet5", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["total_params"] == 61706 and d["layers"][0]["output_shape"] == [1, 6, 28, 28]
    assert main(["summary", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


# ---- PyTorch import (random weights; outputs equal to 1e-5) ---------------------------------------

def _torch():
    return pytest.importorskip("torch")


def torch_lenet5(torch):
    """A PyTorch LeNet-5 with its own names (matched by position)."""
    class LeNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(1, 6, 5, padding=2)
            self.c3 = torch.nn.Conv2d(6, 16, 5)
            self.f5 = torch.nn.Linear(400, 120)
            self.f6 = torch.nn.Linear(120, 84)
            self.out = torch.nn.Linear(84, 10)

        def forward(self, x):
            F = torch.nn.functional
            x = F.max_pool2d(F.relu(self.c1(x)), 2)
            x = F.max_pool2d(F.relu(self.c3(x)), 2).flatten(1)
            return self.out(F.relu(self.f6(F.relu(self.f5(x)))))
    return LeNet()


def torch_alexnet_lecture(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, 4), nn.ReLU(), nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(), nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0),
        nn.MaxPool2d(3, 2), nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1, groups=2),
        nn.ReLU(), nn.MaxPool2d(3, 2), nn.Flatten(), nn.Dropout(), nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))


def torch_alexnet_torchvision(torch, num_classes=1000):
    """torchvision.models.AlexNet's module tree (same state-dict keys), written out."""
    nn = torch.nn

    class AlexNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
                nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
                nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(384, 256, 3, padding=1),
                nn.ReLU(inplace=True), nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(
                nn.Dropout(), nn.Linear(9216, 4096), nn.ReLU(inplace=True), nn.Dropout(), nn.Linear(4096, 4096),
                nn.ReLU(inplace=True), nn.Linear(4096, num_classes))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
    return AlexNet()


def torch_vgg19(torch, num_classes=1000):
    """torchvision.models.vgg19's module tree (configuration E), written out."""
    nn = torch.nn
    layers, cin = [], 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
            cin = v

    class VGG(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(nn.Linear(25088, 4096), nn.ReLU(True), nn.Dropout(),
                                            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                                            nn.Linear(4096, num_classes))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
    return VGG()


def _compare(torch, tmodel, model, x, rtol=1e-5, atol=1e-5):
    tmodel.eval()
    model.eval()
    with torch.no_grad():
        ty = tmodel(torch.from_numpy(x)).numpy()
    # float32 on both sides, summed in different orders: 1e-5 is the bar
    assert_close(model(x), ty, rtol=rtol, atol=atol)


def test_import_lenet5_from_torch(rng, tmp_path):
    torch = _torch()
    torch.manual_seed(0)
    t = torch_lenet5(torch)
    x = rng.random((8, 1, 28, 28)).astype(np.float32)
    _compare(torch, t, cio.load_torch_state_dict(M.lenet5(seed=1), t.state_dict()), x)
    # from a file torch.save wrote, and from the module itself
    torch.save(t.state_dict(), tmp_path / "lenet.pt")
    _compare(torch, t, cio.load_torch_state_dict(M.lenet5(seed=2), tmp_path / "lenet.pt"), x)
    _compare(torch, t, cio.load_torch_state_dict(M.lenet5(seed=3), t), x)


def test_import_alexnet_lecture_from_torch(rng):
    torch = _torch()
    torch.manual_seed(1)
    t = torch_alexnet_lecture(torch)
    x = rng.random((2, 3, 227, 227)).astype(np.float32)
    _compare(torch, t, cio.load_torch_state_dict(M.alexnet(seed=1), t.state_dict()), x)


def test_import_alexnet_torchvision(rng):
    torch = _torch()
    torch.manual_seed(2)
    t = torch_alexnet_torchvision(torch)
    x = rng.random((2, 3, 224, 224)).astype(np.float32)
    _compare(torch, t, cio.load_torch_state_dict(M.alexnet_torchvision(seed=1), t.state_dict()), x)


def test_import_vgg19_features(rng):
    """The features (all style transfer needs) at a small size; the classifier is ignored quietly."""
    torch = _torch()
    torch.manual_seed(3)
    t = torch_vgg19(torch, num_classes=10)
    m = cio.load_torch_state_dict(M.vgg19(seed=1), t.state_dict())
    x = rng.random((2, 3, 64, 48)).astype(np.float32)
    with torch.no_grad():
        ty = t.features(torch.from_numpy(x)).numpy()
    assert_close(m.eval()(x), ty, rtol=1e-5, atol=1e-5)
    # and intermediate layers by name, as style transfer reads them
    _, acts = m.forward(x, capture=("relu3_1",), until="relu3_1")
    with torch.no_grad():
        ta = t.features[:12](torch.from_numpy(x)).numpy()
    assert_close(acts["relu3_1"], ta, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_import_vgg19_with_classifier(rng):
    torch = _torch()
    torch.manual_seed(4)
    t = torch_vgg19(torch, num_classes=10)
    m = cio.load_torch_state_dict(M.vgg19(classifier=True, num_classes=10, seed=1), t.state_dict())
    _compare(torch, t, m, rng.random((1, 3, 224, 224)).astype(np.float32))


def test_import_errors(rng):
    torch = _torch()
    t = torch_lenet5(torch)
    sd = t.state_dict()
    sd["f5.weight"] = sd["f5.weight"][:, :399]
    assert_raises(ValueError, r"f5.weight has shape \[120, 399\] but fc1.weight needs \[120, 400\]",
                  cio.load_torch_state_dict, M.lenet5(), sd)
    sd = OrderedDict(list(t.state_dict().items())[:-1])
    assert_raises(ValueError, r"matching by position needs as many tensors as parameters: the state dict has 9",
                  cio.load_torch_state_dict, M.lenet5(), sd)
    bn = OrderedDict(t.state_dict())
    bn["bn.running_mean"] = torch.zeros(3)
    assert_raises(ValueError, r"batch-norm buffers", cio.load_torch_state_dict, M.lenet5(), bn)
    assert_raises(TypeError, r"expected a state dict, a torch module or a path", cio.load_torch_state_dict,
                  M.lenet5(), 42)
    tv = torch_alexnet_torchvision(torch, num_classes=10).state_dict()
    del tv["classifier.6.bias"]
    assert_raises(ValueError, r"no weights for \['fc8.bias'\]", cio.load_torch_state_dict,
                  M.alexnet_torchvision(num_classes=10), tv)


# ---- AlexNet forward and backward on the CPU -----------------------------------------------------

def test_alexnet_forward_backward_float32(rng):
    m = M.alexnet(num_classes=10, seed=0)
    x = rng.random((2, 3, 227, 227)).astype(np.float32)
    y = m(x)
    assert y.shape == (2, 10) and np.all(np.isfinite(y))
    dx = m.backward(np.ones((2, 10), np.float32))
    assert dx.shape == x.shape and np.all(np.isfinite(dx)) and np.abs(dx).max() > 0
    assert all(p.grad is not None and np.all(np.isfinite(p.grad)) for p in m.parameters())


@pytest.mark.slow
def test_alexnet_gradients_finite_differences(rng):
    """Float64 AlexNet (eval mode: dropout is the identity), 227x227, batch 2: the input gradient and
    the weights of a grouped conv, the first conv and two FC layers against central differences."""
    m = M.alexnet(num_classes=10, seed=0, dtype=np.float64).eval()
    x = rng.random((2, 3, 227, 227))
    dy = rng.standard_normal((2, 10))
    params = dict(m.named_parameters())

    def fwd(x):
        return m(x)

    def bwd(dy, x):
        m.zero_grad()
        m(x)
        return m.backward(dy)

    # eps 1e-6: a weight of conv1 touches every 55x55 position, and a larger step (1e-4 was tried) moves
    # enough pre-activations across ReLU's kink or a max-pool switch to bias the difference by ~1%;
    # float64 rounding of the loss (|L| ~ 0.1) costs only ~1e-17 / 1e-6 = 1e-11 at this eps
    check_gradients(fwd, bwd, [x], dy=dy, eps=1e-6, rtol=1e-5, max_points=6)
    for name in ("conv1.weight", "conv4.weight", "conv5.bias", "fc6.weight", "fc8.weight"):
        p = params[name]

        def fwd_p(w, p=p):
            p.data = w
            return m(x)

        def bwd_p(dy, w, p=p):
            p.data = w
            m.zero_grad()
            m(x)
            m.backward(dy)
            return p.grad

        check_gradients(fwd_p, bwd_p, [p.data.copy()], dy=dy, eps=1e-6, rtol=1e-5, max_points=4, names=[name])
