"""Style transfer: each loss and its gradient, the backbones (random filters, any convkit network, VGG-19
imported from a PyTorch state dict), the optimizers, the CLI, and a run on real photographs."""
import json
import os

import numpy as np
import pytest

import convkit
import convkit.style as S
from convkit.testing import assert_close, assert_raises, check_gradients
from conftest import on


def _small_net(dtype=np.float64, filters=4, sizes=(3, 5), seed=0):
    return S.RandomFilterNet(sizes=sizes, filters=filters, seed=seed, dtype=dtype)


def _nchw(img, dtype=np.float64):
    return np.ascontiguousarray(np.transpose(img, (2, 0, 1))[None], dtype=dtype)


# ---- the losses on their own ---------------------------------------------------------------------

def test_gram_hand_worked():
    # F = [[1, 2], [3, 4]] (C = 2 channels, M = 2 positions):
    # F F^T = [[1*1 + 2*2, 1*3 + 2*4], [.., 3*3 + 4*4]] = [[5, 11], [11, 25]]; divided by M = 2.
    f = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert S.gram_matrix(f).tolist() == [[2.5, 5.5], [5.5, 12.5]]
    # the same as features [1, C, H, W] = [1, 2, 1, 2]
    assert S.gram_matrix(f.reshape(1, 2, 1, 2)).tolist() == [[2.5, 5.5], [5.5, 12.5]]


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_gram_matches_numpy(device, rng, dt):
    f = rng.standard_normal((1, 7, 9, 11)).astype(dt)
    f2 = f.reshape(7, 99).astype(np.float64)
    # float32: a sum of 99 products of O(1) numbers, rounding ~ 99 * 6e-8 relative to the row norms
    tol = 1e-5 if dt == np.float32 else 1e-13
    g = S.gram_matrix(on(device, f))
    assert_close(g, f2 @ f2.T / 99, rtol=tol, atol=tol)
    assert np.array_equal(g, g.T)


def test_content_loss_hand_worked():
    # F - P = [1, -2, 0, 3] (C = 1, M = 4): 1/2 * mean(d^2) = 1/2 * (1 + 4 + 0 + 9) / 4 = 1.75; grad = d / 4
    f = np.array([[2.0, 0.0, 5.0, 3.0]])
    p = np.array([[1.0, 2.0, 5.0, 0.0]])
    loss, g = S.content_loss(f, p, weight=2.0)
    assert loss == 3.5
    assert g.tolist() == [[0.5, -1.0, 0.0, 1.5]]


def test_style_layer_loss_hand_worked():
    # F = [[1, 2], [3, 4]] -> G = [[2.5, 5.5], [5.5, 12.5]]; A = [[2.5, 5.5], [5.5, 10.5]]
    # G - A = [[0, 0], [0, 2]]: E = 1/(4 N^2) * 2^2 = 4 / 16 = 0.25 (N = 2)
    # dE/dF = (G - A) F / (N^2 M) = [[0, 0], [6, 8]] / 8
    f = np.array([[1.0, 2.0], [3.0, 4.0]])
    a = np.array([[2.5, 5.5], [5.5, 10.5]])
    loss, g = S.style_layer_loss(f, a)
    assert loss == 0.25
    assert g.tolist() == [[0.0, 0.0], [0.75, 1.0]]


def test_tv_loss_hand_worked():
    # one channel [[0, 1], [3, 2]]: vertical differences 3, 1; horizontal 1, -1
    # sum of squares 9 + 1 + 1 + 1 = 12, divided by C*H*W = 4 -> 3
    x = np.array([[[[0.0, 1.0], [3.0, 2.0]]]])
    loss, g = S.tv_loss(x)
    assert loss == 3.0
    # d/dx00 = 2/4 * (-(x10 - x00) - (x01 - x00)) = 0.5 * (-3 - 1) = -2
    assert g[0, 0, 0, 0] == -2.0


def test_normalization_is_size_independent(rng):
    """Weights transfer between sizes: an image tiled 2x2 (4x the positions) has the same content and style
    losses as the tile itself -- exactly, with 1x1 random filters, where the features tile too. Unnormalized
    sums (F F^T, sum (F - P)^2) would grow 4x."""
    net = S.RandomFilterNet(sizes=(1,), filters=6, seed=0, dtype=np.float64, content_layers=("relu1x1",))
    tile, target, style = (rng.uniform(0, 1, (12, 10, 3)) for _ in range(3))
    two = lambda a: np.tile(a, (2, 2, 1))  # noqa: E731
    small = S.StyleObjective(net, target, style, alpha=1.0, beta=10.0)
    big = S.StyleObjective(net, two(target), style, alpha=1.0, beta=10.0)
    ls = small(_nchw(tile), need_grad=False)[2]
    lb = big(_nchw(two(tile)), need_grad=False)[2]
    for k in ("content", "style"):
        assert_close(np.array(lb[k]), np.array(ls[k]), rtol=1e-12, atol=0, name=k)
    f = net.features(_nchw(tile), net.layers)["relu1x1"]
    f2 = net.features(_nchw(two(tile)), net.layers)["relu1x1"]
    assert_close(S.gram_matrix(f2), S.gram_matrix(f), rtol=1e-12, atol=1e-15)


def test_loss_gradients_match_finite_differences(rng):
    f = rng.standard_normal((1, 5, 4, 3))
    p = rng.standard_normal((1, 5, 4, 3))
    s = rng.standard_normal((1, 5, 6, 2))
    a = S.gram_matrix(s)
    x = rng.uniform(0, 1, (1, 3, 6, 5))
    # check_gradients perturbs each input by +-1e-6 (central differences, error O(eps^2) ~ 1e-12 relative);
    # the losses are smooth polynomials, so 1e-7 is far above the rounding and far below any real error.
    for name, loss_fn, inp in (("content", lambda v: S.content_loss(v, p, 0.7), f),
                               ("style", lambda v: S.style_layer_loss(v, a, 1.3), f),
                               ("tv", lambda v: S.tv_loss(v, 0.9), x)):
        check_gradients(lambda v: np.array(loss_fn(v)[0]), lambda dy, v: dy * loss_fn(v)[1], [inp],
                        rtol=1e-7, names=[name])


# ---- through the random-filter backbone ---------------------------------------------------------

@pytest.fixture(scope="module")
def photos():
    pytest.importorskip("skimage")
    return S.load_image("skimage:astronaut", 16), S.load_image("skimage:gravel", 20)


@pytest.mark.parametrize("which", ["content", "style", "tv", "total"])
def test_objective_gradient_random_filters(photos, rng, which):
    content, style = photos
    net = _small_net()
    w = {"content": (0.7, 0.0, 0.0), "style": (0.0, 2.0, 0.0), "tv": (0.0, 0.0, 0.3), "total": (0.8, 3e2, 0.05)}
    alpha, beta, tv = w[which]
    obj = S.StyleObjective(net, content if alpha else None, style if beta else None, alpha=alpha, beta=beta,
                           tv_weight=tv, content_layers=("relu3x3", "relu5x5"))
    x = rng.uniform(0.1, 0.9, (1, 3, 16, 16))
    total, g, parts = obj(x)
    assert g.shape == x.shape and g.dtype == np.float64
    assert total > 0 and parts["total"] == total
    # float64 end to end through the real conv2d/relu kernels; ReLU kinks are not hit by +-1e-6 steps
    # at these random points (a pre-activation within 1e-6 of 0 has probability ~1e-5 per element).
    check_gradients(lambda v: np.array(obj(v, need_grad=False)[0]), lambda dy, v: dy * obj(v)[1], [x],
                    rtol=1e-6, max_points=40, names=[which])


def test_objective_on_device_matches_cpu(photos, device, rng):
    """The same objective on `device` (CUDA: the network on the GPU, Gram/loss via a host round trip)."""
    content, style = photos
    cpu = S.StyleObjective(_small_net(np.float32), content, style, alpha=1.0, beta=100.0, tv_weight=0.1)
    dev = S.StyleObjective(S.RandomFilterNet(sizes=(3, 5), filters=4, seed=0, dtype=np.float32, device=device),
                           content, style, alpha=1.0, beta=100.0, tv_weight=0.1)
    x = rng.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)
    l1, g1, p1 = cpu(x)
    l2, g2, p2 = dev(x)
    assert isinstance(g2, np.ndarray) and g2.dtype == np.float32
    # float32 kernels on two devices: different summation orders, ~1e-6 relative
    assert_close(np.array(l2), np.array(l1), rtol=1e-5, atol=0)
    assert_close(g2, g1, rtol=1e-4, atol=1e-5 * np.abs(g1).max())


def test_random_filters_seeded():
    a, b, c = S.RandomFilterNet(filters=3, seed=1), S.RandomFilterNet(filters=3, seed=1), S.RandomFilterNet(filters=3, seed=2)
    for ln in a.layers:
        assert np.array_equal(a.weights[ln][1], b.weights[ln][1])
        assert not np.array_equal(a.weights[ln][1], c.weights[ln][1])
    assert a.layers == ("relu3x3", "relu5x5", "relu7x7", "relu11x11", "relu15x15", "relu23x23")
    assert a.content_layers == ("relu3x3", "relu11x11")


def test_random_filters_against_torch(rng):
    torch = pytest.importorskip("torch")
    net = _small_net(filters=6, sizes=(3, 7))
    x = rng.uniform(0, 1, (1, 3, 13, 11))
    feats = net.features(x, net.layers)
    g = {ln: rng.standard_normal(f.shape) for ln, f in feats.items()}
    dx = net.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    tot = 0
    for ln in net.layers:
        k, w = net.weights[ln]
        tf = torch.relu(torch.nn.functional.conv2d(tx - 0.5, torch.tensor(w)))
        assert_close(feats[ln], tf.detach().numpy(), rtol=1e-12, atol=1e-12, name=ln)
        tot = tot + (tf * torch.tensor(g[ln])).sum()
    tot.backward()
    assert_close(dx, tx.grad.numpy(), rtol=1e-11, atol=1e-12)


# ---- any convkit network; VGG-19 from a PyTorch state dict ---------------------------------------

def _tiny_sequential(dtype=np.float64):
    from collections import OrderedDict

    from convkit import nn

    rng = np.random.default_rng(3)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 5, 3, padding=1, rng=rng, dtype=dtype)), ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2, 2)),
        ("conv2", nn.Conv2d(5, 6, 3, padding=1, rng=rng, dtype=dtype)), ("relu2", nn.ReLU()),
    ]))


def test_objective_gradient_sequential(photos, rng):
    content, style = photos
    bb = S.NetworkBackbone(_tiny_sequential(), content_layers=("relu2",), style_layers=("relu1", "relu2"))
    assert bb.dtype == np.float64
    obj = S.StyleObjective(bb, content, style, alpha=1.0, beta=50.0, tv_weight=0.01)
    x = rng.uniform(0.1, 0.9, (1, 3, 16, 16))
    check_gradients(lambda v: np.array(obj(v, need_grad=False)[0]), lambda dy, v: dy * obj(v)[1], [x],
                    rtol=1e-6, max_points=40)


def _torch_vgg19_features(torch, dtype):
    """torchvision's vgg19().features layout, built by hand (torchvision is not needed)."""
    layers, cin = [], 3
    for widths in ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4):
        for w in widths:
            layers += [torch.nn.Conv2d(cin, w, 3, padding=1), torch.nn.ReLU(inplace=False)]
            cin = w
        layers.append(torch.nn.MaxPool2d(2, 2))
    m = torch.nn.Module()
    m.features = torch.nn.Sequential(*layers)
    return m.to(dtype)


@pytest.mark.torch
def test_vgg19_import_and_gradient_against_torch(rng):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tv = _torch_vgg19_features(torch, torch.float64)
    bb = S.vgg19_backbone(weights=tv.state_dict(), dtype=np.float64)
    # images enter as float32 [H, W, 3] (load_image's format), so these are exact in both
    content = rng.uniform(0, 1, (32, 32, 3)).astype(np.float32)
    style = rng.uniform(0, 1, (40, 40, 3)).astype(np.float32)
    obj = S.StyleObjective(bb, content, style, alpha=1.0, beta=1e3, tv_weight=0.1)
    x = rng.uniform(0, 1, (1, 3, 32, 32))
    total, g, parts = obj(x)

    # the same objective written with torch autograd on torch's VGG-19
    idx = {"relu1_1": 1, "relu2_1": 6, "relu3_1": 11, "relu4_1": 20, "relu4_2": 22, "relu5_1": 29}
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)

    def feats(t):
        out, h = {}, (t - mean) / std
        for i, layer in enumerate(tv.features[:30]):
            h = layer(h)
            for n, j in idx.items():
                if i == j:
                    out[n] = h
        return out

    def gram(f):
        f2 = f.reshape(f.shape[1], -1)
        return f2 @ f2.T / f2.shape[1]

    with torch.no_grad():
        p = feats(torch.tensor(_nchw(content)))["relu4_2"]
        fs = feats(torch.tensor(_nchw(style)))
        a = {n: gram(fs[n]) for n in S.VGG19_STYLE_LAYERS}
    tx = torch.tensor(x, requires_grad=True)
    f = feats(tx)
    lc = 0.5 * ((f["relu4_2"] - p) ** 2).mean()
    ls = sum(((gram(f[n]) - a[n]) ** 2).sum() / (4 * f[n].shape[1] ** 2) for n in S.VGG19_STYLE_LAYERS) / 5
    ltv = (((tx[:, :, 1:] - tx[:, :, :-1]) ** 2).sum() + ((tx[..., 1:] - tx[..., :-1]) ** 2).sum()) / tx[0].numel()
    tt = 1.0 * lc + 1e3 * ls + 0.1 * ltv
    tt.backward()
    # float64 on both sides: agreement to ~1e-10 relative (different summation orders only)
    assert_close(np.array([parts["content"], parts["style"], parts["tv"]]),
                 np.array([lc.item(), ls.item(), ltv.item()]), rtol=1e-9, atol=0)
    assert_close(np.array(total), np.array(tt.item()), rtol=1e-9, atol=0)
    assert_close(g, tx.grad.numpy(), rtol=1e-8, atol=1e-9 * np.abs(tx.grad.numpy()).max())


def test_vgg19_backbone_layers():
    bb = S.vgg19_backbone(dtype=np.float32)
    assert bb.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert bb.content_layers == ("relu4_2",)
    assert "conv5_4" in bb.layers


# ---- optimizers, snapshots, textures ------------------------------------------------------------

def test_lbfgs_and_adam_reduce_the_loss(photos, tmp_path):
    content, style = photos
    for opt, lr in (("lbfgs", 0.0), ("adam", 0.02)):
        seen = []
        r = S.style_transfer(content, style, _small_net(np.float32), alpha=1.0, beta=1e3, optimizer=opt,
                             iterations=12, lr=lr or 0.02, progress=False, snapshot_every=5,
                             snapshot_dir=tmp_path / opt, callback=lambda it, img, parts: seen.append(it))
        assert r.image.shape == (16, 16, 3) and r.image.dtype == np.float32
        assert 0.0 <= r.image.min() and r.image.max() <= 1.0
        assert r.final["total"] < r.start["total"]
        assert r.iterations == len(r.history) == len(seen) and seen[:3] == [1, 2, 3]
        assert [it for it, _ in r.snapshots] == [5, 10]
        assert sorted(os.listdir(tmp_path / opt)) == ["step_00005.png", "step_00010.png"]


def test_lecture_figure(tmp_path):
    pytest.importorskip("skimage")
    out = S.lecture_figure(tmp_path / "fig.png", size=24, iterations=3, progress=False,
                           backbone=S.RandomFilterNet(sizes=(3, 5), filters=4, content_layers="relu5x5"))
    n = out["numbers"]
    assert [r["beta"] for r in n["runs"]] == [1e3, 1e5] and n["size"] == [24, 24]
    assert n["mean_abs_difference"] > 0 and all(r["style_drop"] > 1 for r in n["runs"])
    assert S.load_image(tmp_path / "fig.png").shape[2] == 3


def test_texture_from_noise(photos):
    _, style = photos
    r = S.synthesize_texture(style, size=(16, 18), backbone=_small_net(np.float32), iterations=30, progress=False)
    assert r.image.shape == (16, 18, 3)
    assert r.start["content"] == 0.0
    # from uniform noise the style loss falls by orders of magnitude on this tiny problem
    assert r.final["style"] < r.start["style"] / 100


@pytest.mark.slow
def test_real_photos_style_falls_content_bounded():
    """The README figure's setting at 96x96: the astronaut (content) and gravel (style), random multi-scale
    filters (32 per scale), L-BFGS from the content image, alpha = 1 and beta = 1e3 (more weight to content)
    or 1e5 (more weight to style). Measured here: style loss 1e3: ~120x lower, 1e5: ~4e4x lower; content loss
    ~0.4 and ~0.7 of the content loss of the style image itself; mean |difference| of the two results ~0.06."""
    pytest.importorskip("skimage")
    net = S.RandomFilterNet(filters=32, seed=0)
    content = S.load_image("skimage:astronaut", 96)
    runs = [S.style_transfer(content, "skimage:gravel", net, alpha=1.0, beta=beta, iterations=100, progress=False)
            for beta in (1e3, 1e5)]
    more_content, more_style = runs
    for r in runs:
        assert r.start["content"] == 0.0  # started from the content image
        assert r.final["style"] <= r.start["style"] / 100, r.start["style"] / r.final["style"]
    # The stated bound on the content loss: below 1/2 (more weight to content) and 4/5 (more weight to style)
    # of the content loss of the style image itself, i.e. of replacing the photo by the texture.
    gravel = S.load_image("skimage:gravel", (96, 96))
    obj = S.StyleObjective(net, content, None, alpha=1.0, beta=0.0)
    replaced = obj(_nchw(gravel, np.float32), need_grad=False)[2]["content"]
    assert more_content.final["content"] < 0.5 * replaced
    assert more_style.final["content"] < 0.8 * replaced
    # Visibly different: mean absolute pixel difference > 0.03 of the [0, 1] range; the content-heavy result
    # is closer to the photo, the style-heavy one has the lower style loss.
    diff = float(np.abs(more_content.image - more_style.image).mean())
    assert diff > 0.03, diff
    assert np.abs(more_content.image - content).mean() < np.abs(more_style.image - content).mean()
    assert more_style.final["style"] < more_content.final["style"]
    assert more_content.final["content"] < more_style.final["content"]


# ---- images, CLI, bad input ----------------------------------------------------------------------

def test_load_image_kinds(tmp_path):
    gray = (np.arange(12, dtype=np.uint8).reshape(3, 4) * 20)
    a = S.load_image(gray)
    assert a.shape == (3, 4, 3) and a.dtype == np.float32
    assert_close(a[..., 1], gray / 255.0, rtol=1e-6, atol=1e-7)
    rgba = np.ones((5, 6, 4), np.float64) * 0.25
    assert S.load_image(rgba).shape == (5, 6, 3)
    assert S.load_image(rgba, size=3).shape == (2, 3, 3)  # longest side 3, aspect kept
    assert S.load_image(rgba, size=(4, 7)).shape == (4, 7, 3)
    with pytest.warns(UserWarning, match="divide 0..255 images by 255"):
        assert S.load_image(np.full((2, 2, 3), 200.0)).max() == 1.0
    S.save_image(tmp_path / "a.png", a)
    b = S.load_image(tmp_path / "a.png")
    assert_close(b, a, rtol=0, atol=1 / 255 + 1e-6)  # PNG is 8 bits per channel


def test_cli_writes_png(tmp_path, capsys):
    pytest.importorskip("skimage")
    from convkit.cli import main

    out = tmp_path / "out.png"
    rc = main(["style", "skimage:astronaut", "skimage:gravel", "-o", str(out), "--size", "24", "--iterations", "3",
               "--filters", "4", "--scales", "3,5", "--no-progress", "--snapshot-every", "2",
               "--snapshot-dir", str(tmp_path / "snaps")])
    assert rc == 0
    img = S.load_image(out)
    assert img.shape == (24, 24, 3)
    assert os.listdir(tmp_path / "snaps") == ["step_00002.png"]
    text = capsys.readouterr().out
    assert "style loss" in text and str(out) in text
    # the lecture's figure: a second run with more weight to the style, both results and a figure
    fig = tmp_path / "fig.png"
    rc = main(["style", "skimage:astronaut", "skimage:gravel", "-o", str(out), "--size", "24", "--iterations", "2",
               "--filters", "4", "--scales", "3,5", "--no-progress", "--compare-beta", "1e6", "--figure", str(fig),
               "--json", str(tmp_path / "report.json")])
    assert rc == 0
    assert S.load_image(tmp_path / "out_beta1e+06.png").shape == (24, 24, 3)
    rep = json.loads((tmp_path / "report.json").read_text())
    assert [r["beta"] for r in rep["runs"]] == [1e4, 1e6]
    assert all(r["iterations"] <= 2 and r["style_drop"] > 1 for r in rep["runs"])
    # the reported difference is that of the two results; the PNGs hold them rounded to 1/255
    png_diff = float(np.abs(S.load_image(out) - S.load_image(tmp_path / "out_beta1e+06.png")).mean())
    assert rep["mean_abs_difference"] > 0 and abs(rep["mean_abs_difference"] - png_diff) <= 1 / 255
    assert rep["content_loss_of_style_image"] > rep["runs"][0]["final"]["content"]
    assert S.load_image(fig).shape[1] > 4 * S.load_image(fig).shape[0] // 2  # four panels side by side
    # texture synthesis: CONTENT only sets the size
    rc = main(["style", "skimage:chelsea", "skimage:brick", "-o", str(out), "--size", "30", "--iterations", "2",
               "--filters", "4", "--scales", "3", "--texture", "--no-progress"])
    assert rc == 0
    assert S.load_image(out).shape == (20, 30, 3)  # chelsea is 300x451: longest side 30
    text = capsys.readouterr().out
    texture_report = text[text.index("alpha 0,"):]
    assert "style loss" in texture_report and "content loss" not in texture_report
    rc = main(["style", "skimage:nope", "skimage:gravel", "-o", str(out)])
    assert rc == 2
    assert "no image 'nope'" in capsys.readouterr().err


def test_bad_input(photos):
    content, style = photos
    net = _small_net(np.float32)
    assert_raises(ValueError, "alpha > 0 needs a content image", S.StyleObjective, net, None, style)
    assert_raises(ValueError, "beta > 0 needs a style image", S.StyleObjective, net, content, None)
    assert_raises(ValueError, "layer 'relu9x9' is not a layer", S.StyleObjective, net, content, style,
                  style_layers=("relu9x9",))
    assert_raises(ValueError, "alpha must be >= 0", S.StyleObjective, net, content, style, alpha=-1)
    assert_raises(TypeError, "backbone must be a convkit.style.Backbone", S.StyleObjective, object(), content, style)
    assert_raises(ValueError, "style layer weights must have 2 entries", S.StyleObjective, net, content, style,
                  style_layer_weights=[1.0])
    obj = S.StyleObjective(net, content, style)
    assert_raises(ValueError, r"x must have the content image's size \(16, 16\)", obj, np.zeros((1, 3, 8, 8)) + 0.5)
    assert_raises(ValueError, r"x must have shape \[1, 3, H, W\]", obj, np.zeros((3, 16, 16)) + 0.5)
    bad = content.copy()
    bad[0, 0, 0] = np.nan
    assert_raises(ValueError, "content contains NaN", S.style_transfer, bad, style, net)
    assert_raises(ValueError, "optimizer must be 'lbfgs' or 'adam'", S.style_transfer, content, style, net,
                  optimizer="sgd")
    assert_raises(ValueError, "iterations must be >= 1", S.style_transfer, content, style, net, iterations=0)
    assert_raises(TypeError, "callback must be callable", S.style_transfer, content, style, net, callback=3)
    assert_raises(ValueError, "init must be 'content', 'noise' or an image", S.style_transfer, content, style, net,
                  init="zeros")
    assert_raises(ValueError, "needs at least 23x23", S.style_transfer, content, style, S.RandomFilterNet(filters=2))
    assert_raises(ValueError, "size=\\(height, width\\) is required", S.style_transfer, None, style, net, alpha=0.0)
    assert_raises(ValueError, "must have shape \\[H, W\\], \\[H, W, 3\\]", S.load_image, np.zeros((2, 3, 4, 5)))
    assert_raises(TypeError, "numeric dtype", S.load_image, np.array([["a"]]))
    assert_raises(FileNotFoundError, "no such file", S.load_image, "/nonexistent/x.png")
    assert_raises(ValueError, "distinct positive ints", S.RandomFilterNet, sizes=(3, 3))
    assert_raises(ValueError, "target_gram must have shape \\[2, 2\\]", S.style_layer_loss, np.ones((2, 3)),
                  np.ones((3, 3)))
    assert_raises(ValueError, "features of one image", S.gram_matrix, np.ones((2, 3, 4, 4)))
