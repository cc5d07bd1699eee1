"""The analysis tools tell the truth, on real convkit networks (issue 6):

- saliency gradients through a convkit network match finite differences and torch autograd;
  occlusion on a convkit network matches the plain loop of tests/reference/analysis.py;
- on a synthetic task whose decisive pixels are known (a class is a bright patch at a fixed place,
  with a look-alike patch placed at random as a distractor), a tiny convkit net trained here in
  seconds gets occlusion and saliency maps that peak on that place;
- on the shipped Fashion-MNIST LeNet-5: feature retrieval beats pixel retrieval at precision@10
  (the whole Fashion-MNIST test set when installed, else the shipped samples), a 2-D embedding of
  the features keeps classes apart better than one of the pixels, saliency and occlusion agree more
  than chance, and both change when the weights are re-randomized (Adebayo et al. 2018).
The numbers measured are printed (run with -s to see them).
"""
from collections import OrderedDict

import numpy as np
import pytest

import convkit
import convkit.nn as nn
from convkit import analysis as A
from convkit.analysis import sanity
from convkit.testing import assert_close
from conftest import on  # noqa: F401
from reference import analysis as ref


def small_convnet(dtype=np.float64, seed=0, c=2, classes=3):
    """conv -> relu -> maxpool -> conv -> relu -> flatten -> fc -> relu -> fc, for 8x8 inputs."""
    rng = np.random.default_rng(seed)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(c, 4, 3, padding=1, rng=rng, dtype=dtype)), ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(4, 6, 3, rng=rng, dtype=dtype)), ("relu2", nn.ReLU()),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(6 * 2 * 2, 10, rng=rng, dtype=dtype)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(10, classes, rng=rng, dtype=dtype)),
    ]))


# ---- exactness on a real convkit network ----------------------------------------------------------

def test_saliency_of_convkit_net_matches_finite_differences(device):
    net = small_convnet(np.float64, seed=1).to(device)
    x = np.random.default_rng(2).standard_normal((3, 2, 8, 8))
    t = [0, 2, 1]
    g = A.input_gradients(net, x, t)
    assert g.shape == x.shape and g.dtype == np.float64

    def logit(xi, i):
        with nn.no_grad():
            return float(convkit.to_numpy(net(convkit.asarray(xi[None], device=device)))[0, t[i]])
    rng = np.random.default_rng(3)
    eps = 1e-6
    for i in range(3):
        for _ in range(25):
            c, yy, xx = rng.integers(0, 2), rng.integers(0, 8), rng.integers(0, 8)
            xp, xm = x[i].copy(), x[i].copy()
            xp[c, yy, xx] += eps
            xm[c, yy, xx] -= eps
            fd = (logit(xp, i) - logit(xm, i)) / (2 * eps)
            # float64, central differences: error ~eps^2 away from kinks (a ReLU or max-pool switch
            # within 1e-6 of a random normal input is improbable); 1e-7 absolute covers rounding 1e-16/eps
            assert abs(g[i, c, yy, xx] - fd) <= 1e-7 + 1e-6 * abs(fd), (i, c, yy, xx, g[i, c, yy, xx], fd)
    assert_close(A.saliency(net, x, t), np.abs(g).max(axis=1), rtol=0, atol=0)


def test_saliency_of_lenet_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    import convkit.models as M
    net = M.lenet5(seed=4, dtype=np.float64)
    tm = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                             torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                             torch.nn.Linear(400, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(),
                             torch.nn.Linear(84, 10)).double()
    with torch.no_grad():
        for name, i in (("conv1", 0), ("conv2", 3), ("fc1", 7), ("fc2", 9), ("fc3", 11)):
            tm[i].weight.copy_(torch.from_numpy(net[name].weight.data))
            tm[i].bias.copy_(torch.from_numpy(net[name].bias.data))
    x = np.random.default_rng(5).random((6, 1, 28, 28))
    tx = torch.from_numpy(x).requires_grad_(True)
    z = tm(tx)
    target = z.argmax(1)
    z.gather(1, target[:, None]).sum().backward()
    want = tx.grad.abs().amax(1).numpy()
    # float64 both sides; the kernels' summation orders differ: ~1e-15 relative
    assert_close(A.saliency(net, x, None, batch_size=4), want, rtol=1e-10, atol=1e-14)


def test_occlusion_of_convkit_net_matches_plain_loop(device):
    net = small_convnet(np.float64, seed=6).to(device)
    x = np.random.default_rng(7).standard_normal((2, 2, 8, 8))

    def f(xi):
        with nn.no_grad():
            return convkit.to_numpy(net(convkit.asarray(np.ascontiguousarray(xi), device=device)))
    for window, stride, base in (((3, 3), (2, 2), 0.0), ((2, 5), (3, 1), -0.5), ((8, 8), (1, 1), 1.0)):
        got = A.occlusion(net, x, [1, 2], window=window, stride=stride, baseline=base, batch_size=7)
        want = ref.occlusion(f, x, [1, 2], window, stride, base)
        # float64 throughout; batched vs one-image forwards differ only in rounding (~1e-16)
        assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_occlusion_keeps_no_cache_and_saliency_no_param_grads():
    net = small_convnet(np.float32, seed=8)
    x = np.random.default_rng(9).standard_normal((2, 2, 8, 8)).astype(np.float32)
    A.occlusion(net, x, 0, window=4, stride=4)
    for m in (net["conv1"], net["conv2"], net["fc1"]):
        assert m._cache is None  # forward ran under no_grad: nothing kept for backward
    A.saliency(net, x, 0)
    assert all(p.grad is None for p in net.parameters())  # param_grads=False: no weight gradients


# ---- synthetic task with known decisive pixels ----------------------------------------------------

PATCH = (slice(2, 6), slice(9, 13))  # the decisive 4x4 place in a 16x16 image


def synthetic(n, rng):
    """Class 1 iff the 4x4 patch at PATCH is bright. Every image (both classes) also gets a bright
    distractor patch at a random place that does not touch PATCH, so brightness alone does not decide."""
    x = rng.random((n, 1, 16, 16)) * 0.5
    y = rng.integers(0, 2, n)
    # distractor corners (r, c) whose 4x4 square stays clear of rows 1..6 x cols 8..13 (PATCH plus a margin)
    cand = np.array([(r, c) for r in range(13) for c in range(13)
                     if r + 4 <= 1 or r >= 7 or c + 4 <= 8 or c >= 14])
    rows = np.arange(16)
    rc = cand[rng.integers(0, len(cand), n)]
    m = (((rows >= rc[:, :1]) & (rows < rc[:, :1] + 4))[:, :, None]
         & ((rows >= rc[:, 1:]) & (rows < rc[:, 1:] + 4))[:, None, :])
    x[:, 0] += 0.8 * m
    x[y == 1, 0, PATCH[0], PATCH[1]] += 0.8
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def synthetic_model():
    import convkit.optim as optim
    rng = np.random.default_rng(10)
    net = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 8, 3, padding=1, rng=11)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()), ("fc1", nn.Linear(8 * 8 * 8, 32, rng=12)), ("relu2", nn.ReLU()),
        ("fc2", nn.Linear(32, 2, rng=13)),
    ]))
    x, y = synthetic(1024, rng)
    opt = optim.Adam(net.parameters(), lr=3e-3)
    for epoch in range(5):
        perm = rng.permutation(len(x))
        for s in range(0, len(x), 64):
            idx = perm[s:s + 64]
            net.zero_grad()
            _, dlogits = nn.cross_entropy(net(x[idx]), y[idx])
            net.backward(dlogits, input_grad=False)
            opt.step()
    xt, yt = synthetic(400, np.random.default_rng(14))
    with nn.no_grad():
        acc = float(np.mean(net(xt).argmax(1) == yt))
    return net.eval(), xt[yt == 1][:40], acc


def _mass_and_peak(maps):
    inside = np.zeros(maps.shape[1:], bool)
    inside[PATCH] = True
    pos = np.clip(maps, 0, None)
    mass = pos[:, inside].sum(1) / np.maximum(pos.reshape(len(maps), -1).sum(1), 1e-30)
    grown = np.zeros_like(inside)
    grown[1:7, 8:14] = True  # the patch grown by one pixel (maps are blurred by the window/receptive field)
    peak = np.array([grown.flat[int(np.argmax(m))] for m in maps])
    return mass, peak


def test_maps_peak_on_the_decisive_pixels(synthetic_model):
    net, x1, acc = synthetic_model
    assert acc > 0.95, f"the synthetic task was not learned (test accuracy {acc:.3f})"
    occ = A.occlusion(net, x1, 1, window=4, stride=1, baseline="mean")
    sal = A.saliency(net, x1, 1)
    area = 16 / 256  # the patch is 6.25% of the image
    for name, m in (("occlusion", occ), ("saliency", sal)):
        mass, peak = _mass_and_peak(m)
        print(f"\nsynthetic task (accuracy {acc:.3f}): {name}: mean share of the map in the 4x4 patch "
              f"{mass.mean():.3f} (area share {area:.3f}); peak on the patch in {peak.mean():.0%} of images")
        assert mass.mean() > 5 * area and peak.mean() >= 0.8, (name, mass.mean(), peak.mean())


# ---- the shipped Fashion-MNIST LeNet-5 ------------------------------------------------------------

@pytest.fixture(scope="module")
def lenet():
    import convkit.models as M
    try:
        return M.lenet5_fashion_mnist()
    except FileNotFoundError as e:
        pytest.skip(f"the shipped LeNet-5 weights are not there yet: {e}")


@pytest.fixture(scope="module")
def fmnist():
    """(images float [N, 1, 28, 28], labels, where from): the real test set when installed."""
    import convkit.data as D
    try:
        ds = D.load_fashion_mnist()
        return D.to_float(ds.x_test), ds.y_test, "Fashion-MNIST test set (10,000 images)"
    except (FileNotFoundError, D.DataError):
        pass
    try:
        imgs, labels = D.load_samples()
    except FileNotFoundError as e:
        pytest.skip(f"neither the Fashion-MNIST test set nor the shipped samples are available: {e}")
    return D.to_float(imgs), labels, f"the {len(labels)} shipped sample images"


def test_feature_retrieval_beats_pixel_retrieval(lenet, fmnist):
    x, y, where = fmnist
    feats = A.extract_features(lenet, x, progress=False)
    p_pix = A.precision_at_k(x, y, 10)
    p_feat = A.precision_at_k(feats, y, 10)
    print(f"\nprecision@10 on {where}: pixels {p_pix:.4f}, {A.penultimate_layer(lenet)} features {p_feat:.4f}")
    assert p_feat > p_pix + 0.03, (p_pix, p_feat)


def test_feature_embedding_separates_classes_better_than_pixels(lenet, fmnist):
    x, y, where = fmnist
    idx = np.random.default_rng(15).choice(len(y), min(len(y), 600), replace=False)
    xs, ys = x[idx], y[idx]
    feats = A.extract_features(lenet, xs, progress=False)
    scores = {"pca pixels": A.knn_accuracy(A.pca(xs, 2)[0], ys, 5),
              "pca features": A.knn_accuracy(A.pca(feats, 2)[0], ys, 5)}
    try:
        scores["tsne pixels"] = A.knn_accuracy(A.tsne(xs), ys, 5)
        scores["tsne features"] = A.knn_accuracy(A.tsne(feats), ys, 5)
    except ImportError:
        pass
    print(f"\n2-D 5-NN accuracy on {len(idx)} images of {where}: "
          + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    assert scores["pca features"] > scores["pca pixels"] + 0.05
    if "tsne features" in scores:
        assert scores["tsne features"] > scores["tsne pixels"] + 0.03


@pytest.fixture(scope="module")
def lenet_maps(lenet, fmnist):
    x, y, _ = fmnist
    idx = np.random.default_rng(16).choice(len(y), 48, replace=False)
    xs = x[idx]
    # baseline 'blur': on Fashion-MNIST's black background a 0 baseline changes nothing, so occlusion
    # would be blind there while the gradient is not; a blurred window removes detail everywhere
    occ = A.occlusion(lenet, xs, None, window=7, stride=1, baseline="blur")
    sal = A.saliency(lenet, xs, None)
    return xs, occ, sal


def test_saliency_and_occlusion_agree_more_than_chance(lenet_maps):
    xs, occ, sal = lenet_maps
    smooth = sanity.window_smooth(sal, 7, 1)  # saliency at the occlusion map's resolution
    matched = sanity.rank_correlation(smooth, occ)
    chance = sanity.chance_rank_correlation(smooth, occ)
    raw, raw_chance = sanity.rank_correlation(sal, occ).mean(), sanity.chance_rank_correlation(sal, occ)
    print(f"\nsaliency vs occlusion (LeNet, {len(xs)} images), mean Spearman: window-smoothed saliency "
          f"{matched.mean():.3f} (other images' maps, chance: {chance:.3f}); pixel-sharp saliency {raw:.3f} "
          f"(chance {raw_chance:.3f})")
    assert matched.mean() > chance + 0.1 and matched.mean() > 0.2
    assert raw > raw_chance


def test_model_randomization_changes_the_maps(lenet, lenet_maps):
    xs, occ, sal = lenet_maps
    with nn.no_grad():
        target = lenet(xs).argmax(1)
    rnd = sanity.randomize_weights(lenet, seed=17)
    assert not np.array_equal(rnd["conv1"].weight.data, lenet["conv1"].weight.data)
    sal_r = A.saliency(rnd, xs, target)
    occ_r = A.occlusion(rnd, xs, target, window=7, stride=1, baseline="blur")
    # the reference point: the same trained model's maps under a tiny input change stay put
    xn = xs + np.random.default_rng(18).normal(0, 1e-3, xs.shape).astype(xs.dtype)
    same = sanity.rank_correlation(sal, A.saliency(lenet, xn, target)).mean()
    r_sal = sanity.rank_correlation(sal, sal_r).mean()
    r_occ = sanity.rank_correlation(occ, occ_r).mean()
    print(f"\nmodel randomization (LeNet, {len(xs)} images), mean Spearman trained vs random weights: saliency "
          f"{r_sal:.3f}, occlusion {r_occ:.3f}; trained vs trained on inputs + N(0, 1e-3): saliency {same:.3f}")
    # raw gradients of a ReLU net are jumpy (a 1e-3 nudge flips some units), hence ~0.8, not 1
    assert same > 0.6
    assert r_sal < 0.5 and r_sal < same - 0.3 and r_occ < 0.5
