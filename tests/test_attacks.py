"""convkit.attacks on small random convkit networks: objectives against the float64 reference and
finite differences, a hand-worked FGSM, eps = 0, the eps ball and the bounds, normalization inside
the wrapper, patches, the result record, pictures, and bad input.

The tests on the shipped Fashion-MNIST LeNet-5 (fooling rate, PGD vs FGSM, PyTorch equivalence, the
CLI) are in test_attacks_lenet.py.
"""
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convkit import attacks as A
from convkit import nn
from convkit.testing import assert_close, assert_raises, check_gradients
from reference import attacks as ref


def small_net(dtype=np.float32, seed=0, classes=5, channels=1, size=8):
    """conv 3x3 (4 maps) - relu - max pool 2 - linear -> classes, random weights (a real convkit network)."""
    rng = np.random.default_rng(seed)
    layers = OrderedDict([
        ("conv1", nn.Conv2d(channels, 4, 3, padding=1, rng=rng, dtype=dtype)),
        ("relu1", nn.ReLU()),
        ("pool1", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(4 * (size // 2) ** 2, classes, rng=rng, dtype=dtype)),
    ])
    net = nn.Sequential(layers)
    # larger weights than the default init so that small perturbations change predictions
    for p in net.parameters():
        p.data *= 3
    return net.eval()


def images(n=12, channels=1, size=8, seed=1, dtype=np.float32):
    return np.random.default_rng(seed).uniform(0.05, 0.95, (n, channels, size, size)).astype(dtype)


@pytest.fixture(scope="module")
def net():
    return small_net()


@pytest.fixture(scope="module")
def xy(net):
    x = images()
    y = A.AttackModel(net).predict(x)[0]
    return x, y


# ---- objectives ------------------------------------------------------------------------------------

@given(n=st.integers(1, 5), k=st.integers(2, 7), loss=st.sampled_from(A.LOSSES), targeted=st.booleans(),
       scale=st.sampled_from([1.0, 30.0, 1e4]), dt=st.sampled_from([np.float32, np.float64]))
def test_objective_matches_reference(n, k, loss, targeted, scale, dt):
    rng = np.random.default_rng(n * 100 + k)
    z = (rng.standard_normal((n, k)) * scale).astype(dt)
    c = rng.integers(0, k, n)
    v, g = A.objective(z, c, loss, targeted)
    rv, rg = ref.objective(z, c, loss, targeted)
    assert g.dtype == dt and np.isfinite(g).all() and np.isfinite(v).all()
    # float32 log-softmax of logits up to 1e4: the row max is subtracted first, so the error is a few
    # ulps of |z| (1e4 * 6e-8 = 6e-4); gradients (probabilities) are within 1e-6 absolute
    tol = 1e-12 if dt == np.float64 else 4e-7 * scale
    assert_close(v, rv, rtol=1e-6 if dt == np.float32 else 1e-12, atol=tol, name="J")
    assert_close(g, rg, rtol=0, atol=1e-12 if dt == np.float64 else 1e-6, name="dJ/dz")


@pytest.mark.parametrize("loss", A.LOSSES)
@pytest.mark.parametrize("targeted", [False, True])
def test_objective_gradient_finite_differences(loss, targeted):
    rng = np.random.default_rng(3)
    z = rng.standard_normal((4, 6))
    c = np.array([0, 5, 2, 2])
    check_gradients(lambda z: A.objective(z, c, loss, targeted)[0],
                    lambda dy, z: dy[:, None] * A.objective(z, c, loss, targeted)[1], [z])


def test_input_gradient_finite_differences_with_normalization():
    """value_and_grad through a real float64 network, with bounds (0, 255) and mean/std inside."""
    net64 = small_net(np.float64, channels=3)
    am = A.AttackModel(net64, bounds=(0.0, 255.0), mean=[120.0, 110.0, 100.0], std=[60.0, 50.0, 70.0])
    x = images(3, channels=3, dtype=np.float64) * 255
    check_gradients(lambda x: am.logits(x), lambda dy, x: am.value_and_grad(x, lambda z, rows: dy[rows])[1], [x],
                    eps=1e-4)
    # the chain rule by hand: the same network fed (x - mean) / std directly
    plain = A.AttackModel(net64, bounds=(-10.0, 10.0))
    xm = (x - np.array([120.0, 110.0, 100.0]).reshape(1, 3, 1, 1)) / np.array([60.0, 50.0, 70.0]).reshape(1, 3, 1, 1)
    dy = np.random.default_rng(0).standard_normal((3, 5))
    g_norm = plain.value_and_grad(xm, lambda z, rows: dy[rows])[1]
    g_pix = am.value_and_grad(x, lambda z, rows: dy[rows])[1]
    assert_close(g_pix, g_norm / np.array([60.0, 50.0, 70.0]).reshape(1, 3, 1, 1), rtol=1e-12, atol=1e-15)


# ---- FGSM ------------------------------------------------------------------------------------------

def linear_net(w):
    net = nn.Sequential(OrderedDict([("flatten", nn.Flatten()), ("fc", nn.Linear(2, 2, dtype=np.float64))]))
    net["fc"].weight.data[...] = w
    net["fc"].bias.data[...] = 0
    return net


def test_fgsm_hand_worked():
    # z = W x with W = [[1, -2], [0.5, 1]] on the 1x2 image x = (0.5, 0.5), true class 0:
    # z = (0.5 - 1, 0.25 + 0.5) = (-0.5, 0.75); softmax p = (0.2227, 0.7773) (p0 = 1 / (1 + e^1.25)).
    # Untargeted cross-entropy: dJ/dz = p - onehot(0) = (-0.7773, 0.7773);
    # dJ/dx = W^T dJ/dz = (1 * -0.7773 + 0.5 * 0.7773, -2 * -0.7773 + 1 * 0.7773) = (-0.389, 2.332),
    # sign (-1, +1): with eps = 0.1, x_adv = (0.4, 0.6).
    w = np.array([[1.0, -2.0], [0.5, 1.0]])
    x = np.array([[[[0.5, 0.5]]]])
    x_adv, res = A.fgsm(linear_net(w), x, [0], eps=0.1)
    assert_close(x_adv.ravel(), np.array([0.4, 0.6]), rtol=0, atol=1e-15)
    assert res.orig_pred.tolist() == [1] and res.adv_pred.tolist() == [1]
    # targeted, lecture loss (Score_target): dScore_1/dx = W[1] = (0.5, 1) -> both pixels up
    x_adv, _ = A.fgsm(linear_net(w), x, eps=0.1, targeted=True, target=1)
    assert_close(x_adv.ravel(), np.array([0.6, 0.6]), rtol=0, atol=1e-15)
    # toward class 0: W[0] = (1, -2), signs (+1, -1): eps = 0.1 gives (0.6, 0.4), z = (-0.2, 0.7), still class 1;
    # eps = 0.4 gives (0.9, 0.1), z = (0.9 - 0.2, 0.45 + 0.1) = (0.7, 0.55): class 0, the target
    x_adv, res = A.fgsm(linear_net(w), x, eps=0.1, targeted=True, target=0)
    assert_close(x_adv.ravel(), np.array([0.6, 0.4]), rtol=0, atol=1e-15)
    assert res.success.tolist() == [False]
    x_adv, res = A.fgsm(linear_net(w), x, eps=0.4, targeted=True, target=0)
    assert_close(x_adv.ravel(), np.array([0.9, 0.1]), rtol=0, atol=1e-15)
    assert res.success.tolist() == [True] and res.adv_pred.tolist() == [0]
    # clipping: x = (0.95, 0.02) with the untargeted signs (-1, +1) for class 1 ... computed as above with
    # label 1: dJ/dz = p - onehot(1) -> dJ/dx = W^T (p0, p1 - 1) has signs (+, -): (1.0 clipped, 0.0 clipped)
    x2 = np.array([[[[0.95, 0.02]]]])
    z = w @ x2.ravel()
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    expect = np.clip(x2.ravel() + 0.1 * np.sign(w.T @ (p - [0, 1])), 0, 1)
    x_adv, _ = A.fgsm(linear_net(w), x2, [1], eps=0.1)
    assert_close(x_adv.ravel(), expect, rtol=0, atol=1e-15)
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_fgsm_matches_reference_step(net, xy):
    x, y = xy
    am = A.AttackModel(net)
    g = am.value_and_grad(x, lambda z, rows: A.objective(z, y[rows], "ce", False)[1])[1]
    x_adv, res = A.fgsm(am, x, y, eps=0.07)
    # the float64 reference step; the only differences are float32 rounding and the exact eps box
    assert_close(x_adv, ref.fgsm_step(x, g, 0.07, (0, 1)), rtol=0, atol=2e-7)
    assert res.iterations.tolist() == [1] * len(x)


# ---- eps = 0, the ball, the bounds -----------------------------------------------------------------

@pytest.mark.parametrize("attack", ["fgsm", "pgd-linf", "pgd-l2", "pgd-linf-random", "pgd-l2-random",
                                    "patch-eps0", "fgsm-targeted", "pgd-targeted"])
def test_eps_zero_changes_nothing(net, xy, attack):
    x, y = xy
    if attack == "fgsm":
        x_adv, res = A.fgsm(net, x, y, eps=0)
    elif attack == "fgsm-targeted":
        x_adv, res = A.fgsm(net, x, y, eps=0.0, targeted=True, target=(y + 1) % 5)
    elif attack == "pgd-targeted":
        x_adv, res = A.pgd(net, x, y, eps=0, steps=3, step_size=0.1, targeted=True, target=2)
    elif attack == "patch-eps0":
        x_adv, res = A.patch_attack(net, x, y, size=3, eps=0.0, steps=3)
    else:
        norm = attack.split("-")[1]
        x_adv, res = A.pgd(net, x, y, eps=0, norm=norm, steps=4, step_size=0.2,
                           random_start=attack.endswith("random"), early_stop=False)
    assert np.array_equal(x_adv, x)  # bit for bit
    assert np.all(res.linf == 0) and np.all(res.l2 == 0)
    assert np.array_equal(res.adv_pred, res.orig_pred)
    if not res.targeted:
        assert not res.success.any()  # y are the predictions: nothing is fooled


@given(eps=st.floats(0.0, 0.6), norm=st.sampled_from(["linf", "l2"]), steps=st.integers(1, 6),
       random_start=st.booleans(), bounds=st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (0.0, 255.0)]),
       seed=st.integers(0, 3))
def test_pgd_stays_in_ball_and_bounds(net, eps, norm, steps, random_start, bounds, seed):
    lo, hi = bounds
    x = lo + (hi - lo) * images(6, seed=seed)
    x[0, 0, :2] = lo  # pixels on the bounds
    x[1, 0, :2] = hi
    scale = hi - lo
    am = A.AttackModel(net, bounds=bounds, mean=(lo + hi) / 2, std=scale / 2)
    y = am.predict(x)[0]
    e = eps * scale * (3.0 if norm == "l2" else 1.0)
    x_adv, res = A.pgd(am, x, y, eps=e, norm=norm, steps=steps, step_size=e / 2 + 1e-3 * scale,
                       random_start=random_start, seed=seed, early_stop=False)
    d = x_adv.astype(np.float64) - x.astype(np.float64)
    # exact containment, measured in float64 (the attacks round their boxes inward)
    if norm == "linf":
        assert np.abs(d).max() <= e
    else:
        assert np.sqrt((d.reshape(len(d), -1) ** 2).sum(1)).max() <= e
    assert x_adv.min() >= lo and x_adv.max() <= hi
    assert x_adv.dtype == np.float32 and x_adv.flags.c_contiguous
    x_f, res_f = A.fgsm(am, x, y, eps=eps * scale)
    assert np.abs(x_f.astype(np.float64) - x).max() <= eps * scale
    assert x_f.min() >= lo and x_f.max() <= hi


def test_pgd_matches_reference_without_early_stop():
    net64 = small_net(np.float64)
    am = A.AttackModel(net64)
    x = images(5, dtype=np.float64)
    y = am.predict(x)[0]
    start = np.clip(x + np.random.default_rng(0).uniform(-0.05, 0.05, x.shape), 0, 1)

    def grad(xa):
        return am.value_and_grad(xa, lambda z, rows: A.objective(z, y[rows], "ce", False)[1])[1]

    for norm, eps, a in (("linf", 0.1, 0.03), ("l2", 0.5, 0.2)):
        x_adv, res = A.pgd(am, x, y, eps=eps, norm=norm, steps=5, step_size=a, random_start=False, x_init=start,
                           early_stop=False)
        want = ref.pgd(grad, x, ref.project_linf(start, x, eps, (0, 1)) if norm == "linf" else
                       ref.project_l2(start, x, eps, (0, 1)), eps, norm, 5, a, (0, 1))
        assert_close(x_adv, want, rtol=0, atol=1e-12, name=f"pgd-{norm}")
        assert res.iterations.tolist() == [5] * 5


def test_pgd_early_stop_keeps_first_fooling_iterate(net, xy):
    x, y = xy
    x_adv, res = A.pgd(net, x, y, eps=0.3, steps=20, step_size=0.03, random_start=False)
    assert res.success_rate >= 0.5
    assert np.all(res.iterations[res.success] < 20)
    # an image fooled at iterate t equals the no-early-stop run's iterate t: rerun with steps=t
    i = int(np.flatnonzero(res.success & (res.iterations > 0))[0])
    t = int(res.iterations[i])
    x_t, _ = A.pgd(net, x[i:i + 1], y[i:i + 1], eps=0.3, steps=t, step_size=0.03, random_start=False,
                   early_stop=False)
    assert np.array_equal(x_adv[i], x_t[0])


def test_random_start_is_seeded_and_in_ball(net, xy):
    x, y = xy
    a, _ = A.pgd(net, x, y, eps=0.1, steps=1, step_size=1e-9, seed=5, early_stop=False)
    b, _ = A.pgd(net, x, y, eps=0.1, steps=1, step_size=1e-9, seed=5, early_stop=False)
    c, _ = A.pgd(net, x, y, eps=0.1, steps=1, step_size=1e-9, seed=6, early_stop=False)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    rng = np.random.default_rng(0)
    for norm, eps in (("linf", 0.1), ("l2", 0.7)):
        p = A.random_point(x.astype(np.float64), eps, norm, (0, 1), rng)
        d = (p - x).reshape(len(x), -1)
        size = np.abs(d).max(1) if norm == "linf" else np.sqrt((d ** 2).sum(1))
        assert size.max() <= eps + 1e-12 and size.min() > 0


# ---- targets, labels and the record ----------------------------------------------------------------

def test_target_forms_agree(net, xy):
    x, y = xy
    n = len(x)
    runs = [A.fgsm(net, x, y, eps=0.1, targeted=True, target=t)[0]
            for t in (3, [3] * n, tuple([3] * n), np.full(n, 3, np.int32), np.full(n, 3.0))]
    for r in runs[1:]:
        assert np.array_equal(r, runs[0])
    a, _ = A.fgsm(net, x, y.tolist(), eps=0.1)
    b, _ = A.fgsm(net, x, "predicted", eps=0.1)
    assert np.array_equal(a, b)  # y are the predictions


def test_record_is_repredicted(net, xy):
    x, y = xy
    for x_adv, res in (A.fgsm(net, x, y, eps=0.2), A.pgd(net, x, y, eps=0.2, steps=5),
                       A.fooling_images(net, x, 1, steps=20), A.patch_attack(net, x, y, box=(2, 2, 3, 3), steps=10)):
        z = net.forward(x_adv)
        pred = z.argmax(1)
        assert np.array_equal(res.adv_pred, pred)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        assert_close(res.adv_conf, p[np.arange(len(x)), pred], rtol=1e-5, atol=1e-7)
        want = pred == res.target if res.targeted else pred != res.labels
        assert np.array_equal(res.success, want)
        d = (x_adv.astype(np.float64) - x).reshape(len(x), -1)
        assert_close(res.linf, np.abs(d).max(1), rtol=0, atol=0)
        assert_close(res.l2, np.sqrt((d ** 2).sum(1)), rtol=1e-12, atol=0)
        assert res.to_dict(per_image=True)["n"] == len(x)
        assert res.attack in res.summary()


def test_integer_and_noncontiguous_images_are_converted(net):
    x8 = np.random.default_rng(0).integers(0, 2, (4, 1, 8, 8)).astype(np.uint8)  # 0/1 integer images
    x_adv, res = A.fgsm(net, x8, "predicted", eps=0.1)
    assert x_adv.dtype == np.float32
    xt = np.asfortranarray(images(4))
    a, _ = A.fgsm(net, xt, "predicted", eps=0.1)
    b, _ = A.fgsm(net, np.ascontiguousarray(xt), "predicted", eps=0.1)
    assert np.array_equal(a, b)
    a, _ = A.fgsm(net, images(4).tolist(), "predicted", eps=0.1)  # nested lists


def test_train_mode_is_restored_and_attack_runs_in_eval():
    rng = np.random.default_rng(0)
    net = nn.Sequential(OrderedDict([("flatten", nn.Flatten()), ("fc1", nn.Linear(64, 32, rng=rng)),
                                     ("relu", nn.ReLU()), ("drop", nn.Dropout(0.5, rng=rng)),
                                     ("fc2", nn.Linear(32, 5, rng=rng))]))
    net.train()
    x = images(6)
    a, _ = A.fgsm(net, x, [0] * 6, eps=0.1)
    b, _ = A.fgsm(net, x, [0] * 6, eps=0.1)
    assert np.array_equal(a, b)  # no dropout noise: eval mode inside
    assert net.training


# ---- fooling images and class visualization ---------------------------------------------------------

def test_fooling_images_reach_targets_and_stop(net, xy):
    x, y = xy
    xr, yr, tr = A.every_target(x, y, 5)
    assert len(xr) == 4 * len(x) and np.all(tr != yr)
    x_f, res = A.fooling_images(net, xr, tr, steps=100, step_size=0.1, labels=yr)
    assert res.success_rate >= 0.99
    # stopped at the first iterate predicted as the target: fewer steps than the limit, small changes
    assert np.all(res.iterations[res.success] < 100)
    assert x_f.min() >= 0 and x_f.max() <= 1
    # L2 steps of 0.1: the perturbation is at most 0.1 per step taken
    assert np.all(res.l2 <= 0.1 * res.iterations + 1e-6)


def test_fooling_min_confidence(net, xy):
    x, y = xy
    _, loose = A.fooling_images(net, x, 2, steps=200, step_size=0.05)
    _, strict = A.fooling_images(net, x, 2, steps=200, step_size=0.05, min_confidence=0.9)
    stopped = strict.iterations < 200  # stopped early: predicted as the target with >= 0.9 probability
    assert stopped.mean() > 0.5
    assert np.all(strict.success[stopped]) and np.all(strict.adv_conf[stopped] >= 0.9)
    assert np.all(strict.iterations >= loose.iterations)


def test_class_visualization_raises_the_score(net):
    am = A.AttackModel(net)
    # no jitter or blur: on an 8x8 image a 2-pixel shift is a quarter of the picture (they are for real images)
    imgs, res = A.class_visualization(am, [0, 1, 2, 3, 4], shape=(1, 8, 8), steps=60, step_size=0.1, seed=0,
                                      jitter=0, blur_every=0)
    assert imgs.shape == (5, 1, 8, 8) and imgs.min() >= 0 and imgs.max() <= 1
    start = A.class_visualization(am, [0, 1, 2, 3, 4], shape=(1, 8, 8), steps=1, step_size=1e-9, seed=0)[0]
    z0, z1 = am.logits(start), am.logits(imgs)
    rows = np.arange(5)
    assert np.all(z1[rows, rows] > z0[rows, rows])
    assert res.success_rate >= 0.8  # predicted as the class it visualizes


def test_gaussian_blur_preserves_constants_and_mean():
    x = np.full((1, 2, 9, 7), 0.3)
    assert_close(A.gaussian_blur(x, 1.0), x, rtol=1e-12, atol=0)
    r = np.random.default_rng(0).uniform(0, 1, (2, 1, 16, 16))
    b = A.gaussian_blur(r, 1.0)
    assert b.std() < r.std()
    assert abs(b.mean() - r.mean()) < 0.02


# ---- patches ---------------------------------------------------------------------------------------

def test_patch_changes_only_the_region(net, xy):
    x, y = xy
    x_adv, res = A.patch_attack(net, x, y, box=(1, 2, 3, 4), steps=30, step_size=0.1, init="random")
    out = np.ones(x.shape, bool)
    out[:, :, 1:4, 2:6] = False
    assert np.array_equal(x_adv[out], x[out])  # bit for bit outside the box
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert res.extras["mask"].shape == (len(x), 1, 8, 8)
    # the same box given as a mask array gives the same result
    m = np.zeros((8, 8), bool)
    m[1:4, 2:6] = True
    x_m, _ = A.patch_attack(net, x, y, mask=m, steps=30, step_size=0.1, init="random")
    assert np.array_equal(x_m, x_adv)


def test_patch_random_locations(net, xy):
    x, y = xy
    x_adv, res = A.patch_attack(net, x, y, size=(3, 2), location="random", seed=4, steps=20, step_size=0.2)
    masks = res.extras["mask"][:, 0]
    assert np.all(masks.reshape(len(x), -1).sum(1) == 6)
    assert len({tuple(np.argwhere(m)[0]) for m in masks}) > 1  # different places per image
    assert np.array_equal(x_adv[~np.broadcast_to(res.extras["mask"], x.shape)],
                          x[~np.broadcast_to(res.extras["mask"], x.shape)])
    again, _ = A.patch_attack(net, x, y, size=(3, 2), location="random", seed=4, steps=20, step_size=0.2)
    assert np.array_equal(again, x_adv)
    assert res.success_rate > 0.3


def test_patch_eps_bounds_change(net, xy):
    x, y = xy
    x_adv, res = A.patch_attack(net, x, y, size=4, location="center", eps=0.05, steps=10, step_size=0.02)
    assert res.linf.max() <= 0.05


def test_universal_patch_and_apply(net, xy):
    x, y = xy
    x_adv, res = A.universal_patch(net, x, y, size=4, steps=40, step_size=0.05, batch_size=8, seed=0)
    patch, locs = res.extras["patch"], res.extras["locations"]
    assert patch.shape == (1, 4, 4) and patch.min() >= 0 and patch.max() <= 1
    for i, (t, le) in enumerate(locs):
        assert np.array_equal(x_adv[i, :, t:t + 4, le:le + 4], patch)
        rest = np.ones((8, 8), bool)
        rest[t:t + 4, le:le + 4] = False
        assert np.array_equal(x_adv[i, 0][rest], x[i, 0][rest])
    # the record is the patch re-evaluated: same numbers from evaluate_patch at the same places
    x2, res2 = A.evaluate_patch(net, x, y, patch, locations=locs)
    assert np.array_equal(x2, x_adv) and np.array_equal(res2.adv_pred, res.adv_pred)
    # evaluate_patch needs no gradient: any callable returning logits works
    _, res3 = A.evaluate_patch(lambda a: net.forward(a), x, y, patch, locations=locs)
    assert np.array_equal(res3.adv_pred, res.adv_pred)


# ---- sweep and pictures ----------------------------------------------------------------------------

def test_sweep_and_pictures(net, xy, tmp_path):
    import matplotlib.image as mpimg

    x, y = xy
    sw = A.robustness_sweep(net, x, y, eps=(0.1, 0, 0.3))
    assert sw.eps == [0.0, 0.1, 0.3]
    assert sw.accuracy["fgsm"][0] == sw.clean_accuracy == 1.0
    assert sw.table().count("\n") == 4 and "| 0.3 |" in sw.table()
    x_adv, res = A.pgd(net, x, y, eps=0.2, steps=5)
    paths = [A.plots.plot_adversarial(x, x_adv, res, str(tmp_path / "adv.png"), class_names=list("abcde")),
             A.plots.plot_robustness(sw, str(tmp_path / "sub" / "curve.png")),
             A.plots.plot_images(x_adv[:5], str(tmp_path / "grid.png"), titles=list("abcde"))]
    rgb = images(2, channels=3)
    _, r3 = A.fgsm(small_net(channels=3), rgb, "predicted", eps=0.1)
    paths.append(A.plots.plot_adversarial(rgb, rgb, r3, str(tmp_path / "rgb.png")))
    for p in paths:
        img = mpimg.imread(p)
        assert img.shape[0] > 50 and img.shape[1] > 50


# ---- devices ---------------------------------------------------------------------------------------

def test_attacks_on_device(device, xy):
    x, y = xy
    cpu = small_net()
    dev = small_net().to(device)
    a, ra = A.fgsm(cpu, x, y, eps=0.1)
    b, rb = A.fgsm(dev, x, y, eps=0.1)
    assert A.AttackModel(dev).device == device
    # same signs except where the gradient is at float32 rounding level
    assert np.mean(a != b) < 0.01
    pa, _ = A.pgd(cpu, x, y, eps=0.1, steps=3, random_start=False, early_stop=False)
    pb, _ = A.pgd(dev, x, y, eps=0.1, steps=3, random_start=False, early_stop=False)
    assert np.mean(np.abs(pa - pb) > 1e-5) < 0.02


# ---- bad input -------------------------------------------------------------------------------------

def _bad_cases(net, x, y):
    nan = x.copy()
    nan[0, 0, 0, 0] = np.nan
    return [
        (TypeError, r"fgsm: eps must be a number", lambda: A.fgsm(net, x, y, eps="0.1")),
        (ValueError, r"fgsm: eps must be >= 0, got -0.1", lambda: A.fgsm(net, x, y, eps=-0.1)),
        (ValueError, r"fgsm: eps must be finite", lambda: A.fgsm(net, x, y, eps=float("inf"))),
        (ValueError, r"fgsm: x contains 1 NaN", lambda: A.fgsm(net, nan, y, eps=0.1)),
        (ValueError, r"fgsm: x must have shape \[N, C, H, W\], got \[1, 8, 8\] \(add a batch axis",
         lambda: A.fgsm(net, x[0], y[:1], eps=0.1)),
        (ValueError, r"fgsm: x is empty", lambda: A.fgsm(net, x[:0], [], eps=0.1)),
        (ValueError, r"outside the model's pixel bounds \[0, 1\] \(8-bit images\? divide by 255\)",
         lambda: A.fgsm(net, x * 255, y, eps=0.1)),
        (TypeError, r"fgsm: x must hold numbers", lambda: A.fgsm(net, np.full((1, 1, 8, 8), "a"), [0], eps=0.1)),
        (ValueError, r"fgsm: labels has 3 entries but x has 12 images", lambda: A.fgsm(net, x, [0, 1, 2], eps=0.1)),
        (ValueError, r"fgsm: labels must lie in \[0, 5\)", lambda: A.fgsm(net, x, 5, eps=0.1)),
        (ValueError, r"labels must lie in \[0, 5\) .* got values in \[-1,", lambda: A.fgsm(net, x, -1, eps=0.1)),
        (TypeError, r"fgsm: labels must hold ints, got dtype float64", lambda: A.fgsm(net, x, y + 0.5, eps=0.1)),
        (TypeError, r"fgsm: labels must be an int or a sequence", lambda: A.fgsm(net, x, True, eps=0.1)),
        (ValueError, r"fgsm: labels must be ints or 'predicted'", lambda: A.fgsm(net, x, "true", eps=0.1)),
        (ValueError, r"an untargeted attack needs labels=", lambda: A.fgsm(net, x, eps=0.1)),
        (ValueError, r"targeted=True needs target=", lambda: A.fgsm(net, x, y, eps=0.1, targeted=True)),
        (ValueError, r"target= was given but targeted=False", lambda: A.fgsm(net, x, y, eps=0.1, target=1)),
        (ValueError, r"fgsm: target has 2 entries but x has 12 images",
         lambda: A.fgsm(net, x, eps=0.1, targeted=True, target=[1, 2])),
        (ValueError, r"fgsm: target must be an int or a 1-D sequence of 12 ints, got shape \[12, 1\]",
         lambda: A.fgsm(net, x, eps=0.1, targeted=True, target=np.zeros((12, 1), int))),
        (TypeError, r"fgsm: targeted must be True or False", lambda: A.fgsm(net, x, y, eps=0.1, targeted="yes")),
        (ValueError, r"fgsm: loss must be one of 'ce', 'score', 'margin', got 'mse'",
         lambda: A.fgsm(net, x, y, eps=0.1, loss="mse")),
        (ValueError, r"pgd: norm must be 'linf' or 'l2', got 'l1'", lambda: A.pgd(net, x, y, eps=0.1, norm="l1")),
        (ValueError, r"pgd: steps must be >= 1, got 0", lambda: A.pgd(net, x, y, eps=0.1, steps=0)),
        (TypeError, r"pgd: steps must be an int", lambda: A.pgd(net, x, y, eps=0.1, steps=2.5)),
        (ValueError, r"pgd: step_size must be >= 0", lambda: A.pgd(net, x, y, eps=0.1, step_size=-1)),
        (ValueError, r"pgd: give x_init or random_start=True, not both",
         lambda: A.pgd(net, x, y, eps=0.1, x_init=x)),
        (ValueError, r"pgd: x_init must have the shape of x",
         lambda: A.pgd(net, x, y, eps=0.1, x_init=x[:2], random_start=False)),
        (ValueError, r"pgd: x_init contains 1 NaN", lambda: A.pgd(net, x, y, eps=0.1, x_init=nan, random_start=False)),
        (ValueError, r"AttackModel: bounds must have lo < hi, got \(1, 0\)", lambda: A.AttackModel(net, bounds=(1, 0))),
        (ValueError, r"AttackModel: bounds must have lo < hi, got \(0.5, 0.5\)",
         lambda: A.AttackModel(net, bounds=(0.5, 0.5))),
        (ValueError, r"AttackModel: bounds must be a pair", lambda: A.AttackModel(net, bounds=(0, 1, 2))),
        (ValueError, r"AttackModel: bounds\[1\] must be finite", lambda: A.AttackModel(net, bounds=(0, np.inf))),
        (ValueError, r"AttackModel: std must be > 0", lambda: A.AttackModel(net, std=[0.5, 0.0])),
        (ValueError, r"AttackModel: mean has 2 values but the images have 1 channels",
         lambda: A.fgsm(A.AttackModel(net, mean=[0.1, 0.2]), x, y, eps=0.1)),
        (TypeError, r"AttackModel: model must be a convkit network", lambda: A.AttackModel(42)),
        (TypeError, r"fgsm: this attack needs input gradients",
         lambda: A.fgsm(lambda a: net.forward(a), x, y, eps=0.1)),
        (ValueError, r"the model must return logits of shape \[N, K\]",
         lambda: A.evaluate_patch(lambda a: a, x, y, np.zeros((1, 2, 2)))),
        (ValueError, r"fooling_images: min_confidence must be < 1",
         lambda: A.fooling_images(net, x, 1, min_confidence=1.0)),
        (ValueError, r"fooling_images: step_size must be > 0", lambda: A.fooling_images(net, x, 1, step_size=0)),
        (ValueError, r"class_visualization: shape must be \(C, H, W\)",
         lambda: A.class_visualization(net, 1, shape=(8, 8))),
        (ValueError, r"patch_attack: give exactly one of mask=, box= or size= \(got none\)",
         lambda: A.patch_attack(net, x, y)),
        (ValueError, r"patch_attack: give exactly one of mask=, box= or size= \(got box, size\)",
         lambda: A.patch_attack(net, x, y, box=(0, 0, 2, 2), size=2)),
        (ValueError, r"patch_attack: box \(top=6, left=0, height=4, width=2\) must be non-empty and inside",
         lambda: A.patch_attack(net, x, y, box=(6, 0, 4, 2))),
        (ValueError, r"patch_attack: patch size \(9, 9\) does not fit", lambda: A.patch_attack(net, x, y, size=9)),
        (ValueError, r"patch_attack: mask must hold only 0 and 1",
         lambda: A.patch_attack(net, x, y, mask=np.full((8, 8), 0.5))),
        (ValueError, r"patch_attack: mask is empty", lambda: A.patch_attack(net, x, y, mask=np.zeros((8, 8)))),
        (ValueError, r"patch_attack: mask must have shape", lambda: A.patch_attack(net, x, y, mask=np.ones((7, 8)))),
        (ValueError, r"patch_attack: location must be 'random' or 'center'",
         lambda: A.patch_attack(net, x, y, size=2, location="left")),
        (ValueError, r"patch_attack: init must be 'original' or 'random'",
         lambda: A.patch_attack(net, x, y, size=2, init="zeros")),
        (ValueError, r"apply_patch: every 4x4 patch must lie inside the 8x8 image",
         lambda: A.apply_patch(x, np.zeros((1, 4, 4)), np.full((12, 2), 5))),
        (ValueError, r"apply_patch: patch must have shape \[C, h, w\] with C=1",
         lambda: A.apply_patch(x, np.zeros((3, 4, 4)), np.zeros((12, 2)))),
        (ValueError, r"evaluate_patch: patch has values in \[2, 2\], outside",
         lambda: A.evaluate_patch(net, x, y, np.full((1, 2, 2), 2.0))),
        (ValueError, r"robustness_sweep: FGSM is an L-inf attack",
         lambda: A.robustness_sweep(net, x, y, norm="l2")),
        (ValueError, r"robustness_sweep: eps must be >= 0", lambda: A.robustness_sweep(net, x, y, eps=(0.1, -0.1))),
        (ValueError, r"robustness_sweep: attacks must be drawn from",
         lambda: A.robustness_sweep(net, x, y, attacks=("cw",))),
    ]


_BAD = _bad_cases(small_net(), images(), np.arange(12) % 5)


@pytest.mark.parametrize("exc,pattern,call", _BAD, ids=[f"{i}-{c[1][:40]}" for i, c in enumerate(_BAD)])
def test_bad_input(exc, pattern, call):
    assert_raises(exc, pattern, call)
