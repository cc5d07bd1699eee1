"""The analysis tools' pure parts against plain references, hand-worked cases, Captum, and bad input.

The network-level truth checks (trained LeNet, synthetic task, randomization) are in
test_analysis_truth.py; `convkit analyze` is tested in test_analysis_cli.py.
"""
import numpy as np
import pytest

from convkit import analysis as A
from convkit.analysis import _util as U
from convkit.analysis import sanity
from convkit.testing import assert_close, assert_raises
from reference import analysis as ref


def _linear_logits(x):  # a callable "model": logits [sum of all pixels, 0]
    x = np.asarray(x, np.float64)
    return np.stack([x.reshape(len(x), -1).sum(1), np.zeros(len(x))], axis=1)


# ---- argument conventions -------------------------------------------------------------------------

def test_as_images_converts_friendly_inputs():
    a = U.as_images([[[[1, 2], [3, 4]]]], "f")
    assert a.dtype == np.float32 and a.shape == (1, 1, 2, 2) and a.flags.c_contiguous
    u8 = np.arange(24, dtype=np.uint8).reshape(1, 2, 3, 4)
    assert U.as_images(u8, "f").dtype == np.float32  # ints become float32, values unchanged
    assert U.as_images(u8, "f")[0, 1, 2, 3] == 23.0
    nc = np.arange(48, dtype=np.float64).reshape(2, 2, 3, 4)[:, :, :, ::2]
    b = U.as_images(nc, "f")
    assert b.flags.c_contiguous and b.dtype == np.float64 and np.array_equal(b, nc)


def test_as_images_rejects_bad_input():
    assert_raises(ValueError, r"f: x must have shape \[N, C, H, W\], got shape \[1, 2, 2\].*x\[None\]",
                  U.as_images, np.ones((1, 2, 2)), "f")
    assert_raises(ValueError, "f: x contains NaN", U.as_images, np.full((1, 1, 2, 2), np.nan), "f")
    assert_raises(ValueError, "f: x is empty", U.as_images, np.ones((0, 1, 2, 2)), "f")
    assert_raises(TypeError, "f: x must hold real numbers", U.as_images, np.array([[[["a"]]]]), "f")
    assert_raises(TypeError, "f: x must be an array of images", U.as_images, None, "f")
    assert_raises(ValueError, "could not be read", U.as_images, [[[[1, 2]], [[3]]]], "f")


def test_resolve_target_conventions():
    pred = lambda: np.array([2, 0, 1])  # noqa: E731
    assert U.resolve_target(None, 3, 4, pred, "f").tolist() == [2, 0, 1]
    assert U.resolve_target(3, 3, 4, pred, "f").tolist() == [3, 3, 3]
    assert U.resolve_target(np.int64(1), 3, 4, pred, "f").tolist() == [1, 1, 1]
    assert U.resolve_target([0, 1, 3], 3, 4, pred, "f").tolist() == [0, 1, 3]
    assert U.resolve_target(np.array([3, 2, 1], np.uint8), 3, 4, pred, "f").tolist() == [3, 2, 1]
    assert_raises(ValueError, r"target must have one class per image \(3\), got shape \[2\]",
                  U.resolve_target, [0, 1], 3, 4, pred, "f")
    assert_raises(ValueError, "target class 4 is out of range for a model with 4 outputs",
                  U.resolve_target, [0, 4, 1], 3, 4, pred, "f")
    assert_raises(ValueError, "target class -1 is out of range", U.resolve_target, -1, 3, 4, pred, "f")
    assert_raises(TypeError, "target must be an int", U.resolve_target, 1.0, 3, 4, pred, "f")
    assert_raises(TypeError, "got bool", U.resolve_target, True, 3, 4, pred, "f")
    assert_raises(TypeError, "target must be an int", U.resolve_target, [0.5, 1, 2], 3, 4, pred, "f")


# ---- occlusion ------------------------------------------------------------------------------------

def test_occlusion_hand_worked():
    x = np.ones((1, 1, 2, 2))
    # logits [sum, 0]; each 1x1 window removes one pixel of 1: logit drop 1 everywhere
    assert_close(A.occlusion(_linear_logits, x, 0, window=1, stride=1, output="logit"), np.ones((1, 2, 2)),
                 rtol=1e-15, atol=0)
    # probability: sigmoid(4) - sigmoid(3) = 0.982014 - 0.952574 = 0.029440
    p = A.occlusion(_linear_logits, x, 0, window=1, stride=1)
    assert_close(p, np.full((1, 2, 2), 1 / (1 + np.exp(-4)) - 1 / (1 + np.exp(-3))), rtol=1e-12, atol=0)
    # a 2x1 window (2 rows, 1 column) at stride 1: two windows (columns), each removes 2 -> logit drop 2
    assert_close(A.occlusion(_linear_logits, x, 0, window=(2, 1), stride=1, output="logit"), np.full((1, 2, 2), 2.0),
                 rtol=1e-15, atol=0)
    # windows overlap: 3x3 image of ones, 2x2 window, stride 1: every window drops 4 -> mean 4 everywhere
    assert_close(A.occlusion(_linear_logits, np.ones((1, 1, 3, 3)), 0, window=2, stride=1, output="logit"),
                 np.full((1, 3, 3), 4.0), rtol=1e-15, atol=0)


@pytest.mark.parametrize("window,stride,cover", [((3, 2), (2, 3), True), ((3, 2), (2, 3), False),
                                                 ((1, 1), (1, 1), True), ((7, 9), (1, 1), True),
                                                 ((4, 4), (5, 5), True)])
@pytest.mark.parametrize("baseline", [0.0, -0.7, "mean", "blur", "array"])
def test_occlusion_matches_plain_loop(window, stride, cover, baseline):
    rng = np.random.default_rng(7)
    net = ref.TinyNet(2, 7, 9, k=4, seed=3)
    x = rng.standard_normal((3, 2, 7, 9))
    target = [0, 3, 1]
    if baseline == "array":
        b = rng.standard_normal(x.shape)
    elif baseline == "mean":
        b = np.broadcast_to(x.mean(axis=(2, 3), keepdims=True), x.shape)
    elif baseline == "blur":
        from convkit.analysis.occlusion import gaussian_blur
        b = gaussian_blur(x, max(window) / 2.0)
    else:
        b = baseline
    got = A.occlusion(net, x, target, window=window, stride=stride, cover_edges=cover,
                      baseline=b if baseline == "array" else baseline, batch_size=5)
    want = ref.occlusion(net.forward, x, target, window, stride, b, cover)
    assert got.shape == (3, 7, 9) and got.dtype == np.float64
    # float64 throughout; the only differences are summation order in softmax and the mean: ~1e-16
    assert_close(got, want, rtol=1e-10, atol=1e-13)


def test_gaussian_blur_against_scipy():
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    from convkit.analysis.occlusion import gaussian_blur
    x = np.random.default_rng(0).standard_normal((2, 3, 11, 13))
    # scipy's 'mirror' mode is numpy's 'reflect'; truncate=3 matches our radius ceil(3 sigma) for sigma=2
    want = scipy_ndimage.gaussian_filter(x, sigma=(0, 0, 2.0, 2.0), mode="mirror", truncate=3.0)
    assert_close(gaussian_blur(x, 2.0), want, rtol=1e-12, atol=1e-12)


def test_occlusion_chunking_target_and_dtype():
    rng = np.random.default_rng(1)
    net = ref.TinyNet(1, 6, 6, k=3, seed=1, dtype=np.float32)
    x = rng.standard_normal((4, 1, 6, 6)).astype(np.float32)
    a = A.occlusion(net, x, None, window=3, stride=1, batch_size=1)
    b = A.occlusion(net, x, None, window=3, stride=1, batch_size=10_000)
    assert a.dtype == np.float32
    # the same copies; only the model's float32 matmul may block differently for another batch size
    assert_close(a, b, rtol=1e-5, atol=1e-7)
    pred = net.forward(x).argmax(1)
    assert_close(a, A.occlusion(net, x, pred.tolist(), window=3, stride=1, batch_size=1), rtol=0, atol=0)
    # integer images and lists are accepted
    xi = (rng.random((2, 1, 6, 6)) * 255).astype(np.uint8)
    assert A.occlusion(net, xi, 0, window=2).shape == (2, 6, 6)


def test_occlusion_restores_train_mode():
    net = ref.TinyNet(1, 4, 4, seed=0)
    assert net.training
    A.occlusion(net, np.random.default_rng(0).standard_normal((1, 1, 4, 4)), 0, window=2)
    assert net.training


def test_occlusion_captum_aliases():
    rng = np.random.default_rng(2)
    net = ref.TinyNet(3, 8, 8, seed=2)
    x = rng.standard_normal((2, 3, 8, 8))
    want = A.occlusion(net, x, 1, window=(3, 3), stride=(2, 2), baseline=0.5)
    got = A.occlusion(net, x, 1, sliding_window_shapes=(3, 3, 3), strides=(3, 2, 2), baselines=0.5)
    assert_close(got, want, rtol=0, atol=0)
    assert_raises(ValueError, "not both", A.occlusion, net, x, 1, window=3, sliding_window_shapes=(3, 3))
    assert_raises(ValueError, "not both", A.occlusion, net, x, 1, stride=3, strides=2)
    assert_raises(ValueError, "not both", A.occlusion, net, x, 1, baseline=0.1, baselines=0.2)
    assert_raises(ValueError, "masks 1 of 3 channels", A.occlusion, net, x, 1, sliding_window_shapes=(1, 3, 3))


def test_occlusion_against_captum():
    torch = pytest.importorskip("torch")
    captum_attr = pytest.importorskip("captum.attr")
    rng = np.random.default_rng(4)
    net = ref.TinyNet(2, 10, 10, k=5, seed=4)
    x = rng.standard_normal((3, 2, 10, 10))
    tnet = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(200, 16), torch.nn.Tanh(),
                               torch.nn.Linear(16, 5)).double()
    with torch.no_grad():
        tnet[1].weight.copy_(torch.from_numpy(net.w1))
        tnet[1].bias.copy_(torch.from_numpy(net.b1))
        tnet[3].weight.copy_(torch.from_numpy(net.w2))
        tnet[3].bias.copy_(torch.from_numpy(net.b2))
    occ = captum_attr.Occlusion(lambda t: torch.softmax(tnet(t), dim=1))
    # 10 = 4 + 3 * 2: the windows tile the image exactly, so Captum covers every pixel too
    want = occ.attribute(torch.from_numpy(x), sliding_window_shapes=(2, 4, 4), strides=(2, 2, 2), target=[0, 2, 4],
                         baselines=0.25).numpy().max(axis=1)  # Captum repeats the map over the channels
    got = A.occlusion(net, x, [0, 2, 4], sliding_window_shapes=(2, 4, 4), strides=(2, 2, 2), baselines=0.25)
    # Captum 0.9 hands back float32 attributions even for float64 inputs: float32 rounding (6e-8 relative)
    assert_close(got, want, rtol=2e-7, atol=1e-9)


def test_occlusion_bad_input():
    net = ref.TinyNet(1, 9, 9, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 1, 9, 9))
    assert_raises(TypeError, "model must be a convkit network or a callable", A.occlusion, 3, x)
    assert_raises(ValueError, r"occlusion: x must have shape \[N, C, H, W\]", A.occlusion, net, x[0])
    assert_raises(ValueError, "window 10x10 is larger than the image 9x9", A.occlusion, net, x, 0, window=10)
    assert_raises(ValueError, "window must be >= 1", A.occlusion, net, x, 0, window=0)
    assert_raises(TypeError, "window must be an int", A.occlusion, net, x, 0, window=2.5)
    assert_raises(ValueError, r"window must be an int or a pair", A.occlusion, net, x, 0, window=(1, 2, 3))
    assert_raises(ValueError, "stride must be >= 1", A.occlusion, net, x, 0, window=2, stride=0)
    assert_raises(ValueError, "baseline must be a number, an array, 'mean' or 'blur'", A.occlusion, net, x, 0,
                  baseline="zero")
    assert_raises(TypeError, "baseline must be", A.occlusion, net, x, 0, baseline=True)
    assert_raises(ValueError, r"an array baseline must have shape", A.occlusion, net, x, 0, baseline=np.ones((2, 2)))
    assert_raises(ValueError, "baseline contains NaN", A.occlusion, net, x, 0, baseline=np.full((1, 9, 9), np.nan))
    assert_raises(ValueError, "baseline must be finite", A.occlusion, net, x, 0, baseline=float("inf"))
    assert_raises(ValueError, "output must be one of", A.occlusion, net, x, 0, output="softmax")
    assert_raises(ValueError, "batch_size must be >= 1", A.occlusion, net, x, 0, batch_size=0)
    assert_raises(ValueError, "target must have one class per image", A.occlusion, net, x, [0, 1, 2])
    assert_raises(ValueError, "out of range", A.occlusion, net, x, 3)
    assert_raises(ValueError, "blur_sigma must be >= 0", A.occlusion, net, x, 0, baseline="blur", blur_sigma=-1)
    assert_raises(ValueError, r"logits of shape \[N, classes\]", A.occlusion, lambda t: np.ones(len(t)), x)


# ---- saliency -------------------------------------------------------------------------------------

def test_saliency_matches_finite_differences():
    rng = np.random.default_rng(5)
    net = ref.TinyNet(3, 5, 4, k=4, seed=5)
    x = rng.standard_normal((2, 3, 5, 4))
    got = A.saliency(net, x, [1, 3])
    want = ref.saliency_fd(net.forward, x, [1, 3])
    assert got.shape == (2, 5, 4)
    # central differences with eps 1e-6 on a smooth (tanh) net: truncation ~eps^2, rounding ~1e-16/eps = 1e-10
    assert_close(got, want, rtol=1e-7, atol=1e-9)


def test_saliency_is_the_logit_gradient_not_the_softmax():
    x = np.array([[[[1.0, -2.0], [0.5, 3.0]]]])
    # logits [sum(x), 0]: d logit_0 / dx = 1 at every pixel (the softmax gradient would be p(1-p) < 1)
    class Lin:
        def forward(self, t):
            return _linear_logits(t)

        def backward(self, dy, param_grads=True):
            return np.broadcast_to(dy[:, 0, None, None, None], (1, 1, 2, 2)).copy()
    assert_close(A.saliency(Lin(), x, 0), np.ones((1, 2, 2)), rtol=0, atol=0)


def test_saliency_reductions_and_signed_gradients():
    rng = np.random.default_rng(6)
    net = ref.TinyNet(2, 3, 3, k=3, seed=6)
    x = rng.standard_normal((3, 2, 3, 3))
    g = A.input_gradients(net, x, 2)
    net.forward(x)
    dy = np.zeros((3, 3))
    dy[:, 2] = 1
    assert_close(g, net.backward(dy), rtol=1e-15, atol=0)  # BLAS may round differently per call
    assert_close(A.saliency(net, x, 2), np.abs(g).max(1), rtol=1e-15, atol=0)
    assert_close(A.saliency(net, x, 2, reduce="mean"), np.abs(g).mean(1), rtol=1e-15, atol=0)
    assert_close(A.saliency(net, x, 2, reduce=None), np.abs(g), rtol=1e-15, atol=0)
    signed = A.saliency(net, x, 2, abs=False)
    assert_close(np.abs(signed), np.abs(g).max(1), rtol=1e-15, atol=0)
    # None = the predicted class, batch by batch
    pred = net.forward(x).argmax(1)
    assert_close(A.saliency(net, x, None, batch_size=1), A.saliency(net, x, pred, batch_size=1), rtol=0, atol=0)


def test_saliency_against_captum():
    torch = pytest.importorskip("torch")
    captum_attr = pytest.importorskip("captum.attr")
    rng = np.random.default_rng(8)
    net = ref.TinyNet(3, 6, 6, k=4, seed=8)
    x = rng.standard_normal((5, 3, 6, 6))
    tnet = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(108, 16), torch.nn.Tanh(),
                               torch.nn.Linear(16, 4)).double()
    with torch.no_grad():
        for i, (w, b) in ((1, (net.w1, net.b1)), (3, (net.w2, net.b2))):
            tnet[i].weight.copy_(torch.from_numpy(w))
            tnet[i].bias.copy_(torch.from_numpy(b))
    t = [0, 1, 2, 3, 0]
    want = captum_attr.Saliency(tnet).attribute(torch.from_numpy(x), target=t, abs=True).numpy().max(axis=1)
    assert_close(A.saliency(net, x, t), want, rtol=1e-12, atol=1e-15)


def test_saliency_bad_input():
    net = ref.TinyNet(1, 3, 3, seed=0)
    x = np.random.default_rng(0).standard_normal((2, 1, 3, 3))
    assert_raises(TypeError, "model must be a convkit network with forward and backward", A.saliency, _linear_logits, x)
    assert_raises(ValueError, "reduce must be one of", A.saliency, net, x, reduce="min")
    assert_raises(ValueError, r"saliency|input_gradients: x must have shape", A.saliency, net, x[0])
    assert_raises(ValueError, "target must have one class per image", A.saliency, net, x, [1])
    assert_raises(ValueError, "out of range", A.saliency, net, x, 7)
    assert_raises(ValueError, "contains NaN", A.saliency, net, np.full((1, 1, 3, 3), np.nan))


# ---- neighbours and precision@k -------------------------------------------------------------------

def test_precision_at_k_hand_worked():
    v = np.array([[0.0], [1.0], [10.0], [11.0]])
    y = [0, 0, 1, 1]
    # k=1: every point's nearest other point has its label
    assert A.precision_at_k(v, y, 1) == 1.0
    # k=2: 0 -> {1 (same), 10 (other)}; 1 -> {0, 10}; 10 -> {11, 1}; 11 -> {10, 1}: 4 of 8 = 0.5
    assert A.precision_at_k(v, y, 2) == 0.5


def test_precision_and_neighbors_match_reference():
    rng = np.random.default_rng(9)
    v = rng.standard_normal((60, 1, 3, 3))
    y = rng.integers(0, 3, 60)
    for k in (1, 5, 10):
        assert abs(A.precision_at_k(v, y, k, block=7) - ref.precision_at_k(v, y, k)) < 1e-12
        # float32 inputs take the float32 product path: same neighbours when there are no near-ties
        assert abs(A.precision_at_k(v.astype(np.float32), y, k) - ref.precision_at_k(v, y, k)) < 1e-12
    idx, dist = A.nearest_neighbors(v[:4], v, 3, query_indices=[0, 1, 2, 3])
    for q in range(4):
        d = np.sum((v.reshape(60, -1) - v[q].reshape(1, -1)) ** 2, axis=1)
        d[q] = np.inf
        assert idx[q].tolist() == np.argsort(d, kind="stable")[:3].tolist()
        assert_close(dist[q], np.sqrt(np.sort(d)[:3]), rtol=1e-10, atol=1e-12)


def test_nearest_neighbors_ties_and_cosine():
    db = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    # the query at the origin is equally far from all four: ties go to the lower index
    assert A.nearest_neighbors([[0.0, 0.0]], db, 4)[0].tolist() == [[0, 1, 2, 3]]
    # cosine ignores length: [5, 0.1] points along db[0]
    assert A.nearest_neighbors([[5.0, 0.1]], db, 1, metric="cosine")[0].tolist() == [[0]]
    assert_raises(ValueError, "metric must be one of", A.nearest_neighbors, db, db, 1, metric="l1")
    assert_raises(ValueError, "queries have 3 values per row but database rows have 2", A.nearest_neighbors,
                  np.ones((1, 3)), db, 1)
    assert_raises(ValueError, "k must be <= 3", A.nearest_neighbors, db, db, 4, query_indices=[0, 1, 2, 3])


def test_knn_accuracy_hand_worked():
    v = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [0.15]])
    y = [0, 0, 0, 1, 1, 1]
    # leave-one-out 1-NN: 0.0->0.1 (0 ok), 0.1->0.15 (1: wrong), 0.2->0.15 (1: wrong), 5.0->5.1 ok, 5.1->5.0 ok,
    # 0.15->0.1 or 0.2 (both 0.05 away; tie -> lower index 1, label 0: wrong): 3 of 6
    assert A.knn_accuracy(v, y, 1) == 0.5


def test_precision_bad_input():
    v = np.ones((4, 2))
    assert_raises(ValueError, r"labels must have shape \[4\]", A.precision_at_k, v, [0, 1], 1)
    assert_raises(TypeError, "labels must be integer class labels", A.precision_at_k, v, [0.5, 1, 1, 1], 1)
    assert_raises(ValueError, "k must be >= 1", A.precision_at_k, v, [0, 1, 0, 1], 0)
    assert_raises(ValueError, "k must be <= 3", A.precision_at_k, v, [0, 1, 0, 1], 4)
    assert_raises(ValueError, "contains NaN", A.precision_at_k, np.full((4, 2), np.nan), [0, 1, 0, 1], 1)
    assert_raises(ValueError, "queries must be non-empty indices", A.precision_at_k, v, [0, 1, 0, 1], 1, queries=[9])


# ---- PCA and t-SNE --------------------------------------------------------------------------------

def test_pca_matches_covariance_eigendecomposition():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((50, 6)) @ rng.standard_normal((6, 6))
    emb, p = A.pca(x, 3)
    var, ratio, comps = ref.pca(x, 3)
    assert_close(p.explained_variance_, var, rtol=1e-10, atol=1e-12)
    assert_close(p.explained_variance_ratio_, ratio, rtol=1e-10, atol=1e-12)
    # components agree up to sign; ours have their largest-magnitude entry positive
    assert_close(np.abs(np.sum(p.components_ * comps, axis=1)), np.ones(3), rtol=1e-9, atol=0)
    assert np.all(p.components_[np.arange(3), np.abs(p.components_).argmax(1)] > 0)
    assert_close(emb, (x - x.mean(0)) @ p.components_.T, rtol=1e-12, atol=1e-12)
    assert_close(np.var(emb, axis=0, ddof=1), var, rtol=1e-10, atol=1e-12)


def test_pca_hand_worked():
    # points on the line y = 2x: all variance on one axis, direction (1, 2)/sqrt(5)
    x = np.array([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]])
    emb, p = A.pca(x, 2)
    assert_close(p.explained_variance_ratio_, np.array([1.0, 0.0]), rtol=0, atol=1e-15)
    assert_close(p.components_[0], np.array([1.0, 2.0]) / np.sqrt(5), rtol=1e-14, atol=0)
    # variance along it: distances -sqrt5, 0, sqrt5 -> (5 + 0 + 5) / (3 - 1) = 5
    assert_close(p.explained_variance_[0:1], np.array([5.0]), rtol=1e-14, atol=0)
    assert_raises(ValueError, "n_components=3 exceeds", A.PCA(3).fit, x)
    assert_raises(RuntimeError, "call fit first", A.PCA(1).transform, x)
    assert_raises(ValueError, "fitted on 2", p.transform, np.ones((1, 3)))
    assert_raises(ValueError, "need at least 2 rows", A.PCA(1).fit, np.ones((1, 2)))


def test_tsne_runs_and_is_deterministic():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.standard_normal((20, 5)), rng.standard_normal((20, 5)) + 8])
    a = A.tsne(x, perplexity=5, backend="sklearn", max_iter=400)
    b = A.tsne(x, perplexity=5, backend="sklearn", max_iter=400)
    assert a.shape == (40, 2) and np.array_equal(a, b)
    # two far-apart blobs stay apart (a short run: 400 steps; at most one stray point)
    assert A.knn_accuracy(a, [0] * 20 + [1] * 20, 1) >= 0.95


def test_tsne_missing_backend_message(monkeypatch):
    import builtins
    real = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith(("openTSNE", "sklearn")):
            raise ImportError(name)
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", fake)
    assert_raises(ImportError, r"t-SNE needs openTSNE or scikit-learn.*pip install", A.tsne, np.ones((10, 3)))
    assert_raises(ImportError, "pip install 'convkit\\[tsne\\]'", A.tsne, np.ones((10, 3)), backend="opentsne")
    assert_raises(ValueError, "backend must be", A.tsne, np.ones((10, 3)), backend="umap")
    assert_raises(ValueError, "max_iter must be >= 250", A.tsne, np.ones((10, 3)), max_iter=10)


# ---- rank correlation and randomization -----------------------------------------------------------

def test_rank_correlation_matches_reference_with_ties():
    rng = np.random.default_rng(12)
    a = rng.integers(0, 4, (3, 5, 5)).astype(float)  # many ties
    b = rng.standard_normal((3, 5, 5))
    got = sanity.rank_correlation(a, b)
    for i in range(3):
        assert abs(got[i] - ref.spearman(a[i], b[i])) < 1e-12
    assert_close(sanity.rank_correlation(b, b), np.ones(3), rtol=1e-15, atol=0)
    assert_close(sanity.rank_correlation(b, -b), -np.ones(3), rtol=1e-15, atol=0)
    assert sanity.rank_correlation(np.ones((1, 4)), b[:1, 0, :4])[0] == 0.0  # constant map: 0
    assert_raises(ValueError, "same shape", sanity.rank_correlation, a, b[:2])


def test_window_smooth_is_occlusion_of_a_linear_model():
    # For a model whose logit is sum(a * x), occluding a window with baseline 0 drops the logit by the
    # window's sum of a * x: the occlusion map of that model IS window_smooth(a * x) times the window area.
    rng = np.random.default_rng(16)
    a = rng.standard_normal((1, 7, 9))
    x = rng.standard_normal((2, 1, 7, 9))
    f = lambda t: np.stack([(np.asarray(t)[:, 0] * a).reshape(len(t), -1).sum(1), np.zeros(len(t))], 1)  # noqa: E731
    occ = A.occlusion(f, x, 0, window=(3, 2), stride=(2, 3), output="logit")
    assert_close(sanity.window_smooth(x[:, 0] * a, (3, 2), (2, 3)) * 6, occ, rtol=1e-12, atol=1e-14)
    assert_raises(ValueError, "larger than the maps", sanity.window_smooth, x[:, 0], 8)


# ---- pictures -------------------------------------------------------------------------------------

def test_filter_grid_layouts_and_normalization():
    rng = np.random.default_rng(13)
    w3 = rng.standard_normal((5, 3, 4, 4))
    g = A.filter_grid(w3, ncols=5, pad=1)
    assert g.shape == (1 + 4 + 1, 1 + 5 * 5, 3)  # one RGB tile per filter
    tile = g[1:5, 1:5]  # filter 0: min-max over its 3 channels -> spans exactly [0, 1]
    assert tile.min() == 0.0 and tile.max() == 1.0
    assert_close(tile, (w3[0].transpose(1, 2, 0) - w3[0].min()) / (w3[0].max() - w3[0].min()), rtol=1e-14, atol=0)
    g1 = A.filter_grid(rng.standard_normal((6, 1, 5, 5)), ncols=3)
    assert g1.shape == (2 * 5 + 3, 3 * 5 + 4)  # grey
    w16 = rng.standard_normal((4, 6, 3, 3))
    gh = A.filter_grid(w16)
    assert gh.shape == (4 * 3 + 5, 6 * 3 + 7)  # rows: filters, columns: input channels
    # per-filter normalization: a row's tiles share one scale (the filter's min and max)
    row = w16[2]
    t = gh[1 + 2 * 4:1 + 2 * 4 + 3, 1 + 4 * 4: 1 + 4 * 4 + 3]  # filter 2, input channel 4
    assert_close(t, (row[4] - row.min()) / (row.max() - row.min()), rtol=1e-14, atol=0)
    assert_raises(ValueError, "normalize must be", A.filter_grid, w3, normalize="none")
    assert_raises(ValueError, "rgb=True needs 3 input channels", A.filter_grid, w16, rgb=True)
    assert_raises(ValueError, r"weight must have shape \[N, C, H, W\]", A.filter_grid, w3[0])


def test_overlay_and_thumbnail_map():
    rng = np.random.default_rng(14)
    imgs = rng.random((3, 1, 8, 8))
    maps = rng.random((3, 8, 8))
    o = A.overlay(imgs, maps, alpha=0.4)
    assert o.shape == (3, 8, 8, 3) and o.min() >= 0 and o.max() <= 1
    assert_close(A.overlay(imgs, maps, alpha=0.0)[..., 0], (imgs[:, 0] - imgs.min((1, 2, 3))[:, None, None])
                 / np.ptp(imgs, axis=(1, 2, 3))[:, None, None], rtol=1e-12, atol=1e-15)
    assert_raises(ValueError, "maps must have shape", A.overlay, imgs, maps[:, :4])
    assert_raises(ValueError, "alpha must be <= 1", A.overlay, imgs, maps, alpha=2)
    t = A.thumbnail_map(rng.standard_normal((3, 2)), imgs, grid=4)
    assert t.shape == (32, 32, 3)
    assert_raises(ValueError, "embedding must have shape", A.thumbnail_map, np.ones((3, 3)), imgs)


def test_pngs_are_written_and_decode(tmp_path):
    import matplotlib.image as mpimg
    from convkit.analysis import plots
    rng = np.random.default_rng(15)
    imgs = rng.random((12, 1, 10, 10))
    labels = np.arange(12) % 3
    emb = rng.standard_normal((12, 2))
    paths = [
        A.plot_filters(rng.standard_normal((8, 3, 5, 5)), tmp_path / "f.png"),
        A.plot_filters(rng.standard_normal((4, 6, 3, 3)), tmp_path / "f2.png"),
        A.plot_neighbors(imgs, [0, 1], [[2, 3], [4, 5]], [[6, 7], [8, 9]], tmp_path / "nn.png", labels,
                         ["a", "b", "c"]),
        A.plot_embedding(emb, labels, tmp_path / "e.png", ["a", "b", "c"], "t", "kNN 0.5"),
        A.plot_attributions(imgs[:3], {"occlusion": rng.random((3, 10, 10)), "saliency": rng.random((3, 10, 10))},
                            tmp_path / "a.png", ["x", "y", "z"]),
        plots.plot_maps(rng.random((6, 5, 5)), tmp_path / "m.png", "maps"),
        plots.save_image(A.thumbnail_map(emb, imgs), tmp_path / "sub" / "t.png", "thumbs"),
    ]
    for p in paths:
        im = mpimg.imread(p)
        assert im.ndim == 3 and im.shape[0] > 50 and im.shape[1] > 50, p
