"""convkit.attacks on the shipped Fashion-MNIST LeNet-5 and its sample images: PyTorch equivalence,
PGD against FGSM over an eps sweep, the fooling-image rate, class visualization, patches, the CLI."""
import json

import numpy as np
import pytest

from convkit import attacks as A
from convkit import data, io, models
from convkit.testing import assert_close


@pytest.fixture(scope="module")
def lenet():
    return models.lenet5_fashion_mnist()


@pytest.fixture(scope="module")
def lenet64():
    return models.lenet5_fashion_mnist(dtype=np.float64)


@pytest.fixture(scope="module")
def samples():
    imgs, labels = data.load_samples()
    return data.to_float(imgs), labels


# ---- the same attacks written with torch autograd ----------------------------------------------------

@pytest.fixture(scope="module")
def torch_ref():
    pytest.importorskip("torch")
    from reference import attacks_torch

    return attacks_torch


FGSM_CASES = [("ce", False, None), ("score", True, "next"), ("ce", True, "next"), ("margin", False, None),
              ("score", False, None)]


@pytest.mark.torch
@pytest.mark.parametrize("loss,targeted,target", FGSM_CASES)
def test_fgsm_equals_torch_float64(lenet64, samples, torch_ref, loss, targeted, target):
    import torch

    x = samples[0][:100].astype(np.float64)
    y = samples[1][:100]
    tgt = (y + 1) % 10 if target == "next" else None
    x_adv, res = A.fgsm(lenet64, x, y, eps=0.1, loss=loss, targeted=targeted, target=tgt)
    tm = io.to_torch(lenet64)
    c = torch.from_numpy(tgt if targeted else y)
    want = torch_ref.fgsm(tm, torch.from_numpy(x), c, 0.1, loss=loss, targeted=targeted).numpy()
    # float64 on both sides: the gradients agree to ~1e-15 relative, so every sign agrees and the
    # images are equal up to the last bit of x +- eps
    assert_close(x_adv, want, rtol=0, atol=1e-15, name=f"fgsm {loss} targeted={targeted}")
    pred, conf = torch_ref.predict(tm, torch.from_numpy(x_adv))
    assert np.array_equal(res.adv_pred, pred.numpy())
    assert_close(res.adv_conf, conf.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.torch
def test_fgsm_equals_torch_float32(lenet, samples, torch_ref):
    import torch

    x, y = samples
    x_adv, _ = A.fgsm(lenet, x, y, eps=0.1)
    tm = io.to_torch(lenet)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    want = torch_ref.fgsm(tm, tx, ty, 0.1).numpy()
    g = torch_ref.input_grad(tm, tx, ty, "ce", False).numpy()
    diff = np.abs(x_adv.astype(np.float64) - want)
    # float32: a pixel may step the other way only where the gradient is at rounding level (its sign is
    # noise): |g| <= 1e-6 max |g|. Everywhere else the images agree to one float32 ulp at 1.0 (1.2e-7;
    # convkit rounds the eps box inward, torch rounds x + eps to nearest).
    # (Measured: 0.56% of the pixels flip, all with |g| <= 7.3e-8 against max |g| = 4.5, most of them in
    # one image classified with probability ~1, whose whole gradient is rounding noise.)
    flipped = diff > 1.2e-7
    assert np.all(np.abs(g[flipped]) <= 1e-6 * np.abs(g).max())
    assert flipped.mean() < 0.02


@pytest.mark.torch
@pytest.mark.parametrize("norm,eps,step", [("linf", 0.05, 0.02), ("l2", 1.0, 0.4)])
@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_first_steps_equal_torch_float64(lenet64, samples, torch_ref, norm, eps, step, targeted):
    import torch

    x = samples[0][:60].astype(np.float64)
    y = samples[1][:60]
    tgt = (y + 3) % 10 if targeted else None
    rng = np.random.default_rng(0)
    start = np.clip(x + rng.uniform(-eps / 2, eps / 2, x.shape) / (28.0 if norm == "l2" else 1.0), 0, 1)
    x_adv, res = A.pgd(lenet64, x, y, eps=eps, norm=norm, steps=3, step_size=step, random_start=False,
                       x_init=start, early_stop=False, targeted=targeted, target=tgt)
    tx = torch.from_numpy(x)
    want = torch_ref.pgd(io.to_torch(lenet64), tx, torch.from_numpy(tgt if targeted else y), eps, 3, step,
                         torch.from_numpy(start), norm=norm, targeted=targeted).numpy()
    # float64: three steps of (gradient, sign or normalization, projection) agree to rounding. For a
    # confidently classified image dJ/dz = softmax - onehot cancels (1 - p_c ~ 1e-10 carries ~1e-6
    # relative error on both sides, computed in different orders), and the L2 step g / ||g|| passes that
    # on: 1e-9 absolute leaves three orders of margin over the 1e-11 seen
    assert_close(x_adv, want, rtol=0, atol=1e-9, name=f"pgd-{norm}")
    assert np.all(res.iterations == 3)


# ---- robustness ------------------------------------------------------------------------------------

def test_pgd_never_weaker_than_fgsm_and_accuracy_falls(lenet, samples):
    x, y = samples
    sw = A.robustness_sweep(lenet, x, y, A.DEFAULT_EPS)
    fg, pg = sw.accuracy["fgsm"], sw.accuracy["pgd"]
    assert fg[0] == pg[0] == sw.clean_accuracy > 0.85
    for i in range(len(sw.eps)):
        assert pg[i] <= fg[i], f"PGD weaker than FGSM at eps={sw.eps[i]}: {pg[i]} > {fg[i]}"
    for acc in (fg, pg):
        assert all(a >= b for a, b in zip(acc, acc[1:])), f"accuracy not monotone over eps: {acc}"
    assert pg[sw.eps.index(0.1)] < 0.2  # the lecture's point: a LeNet is fragile


@pytest.mark.slow
def test_fooling_images_reach_99_percent_of_targets(lenet, samples):
    x, y = samples
    xr, yr, tr = A.every_target(x, y, 10)  # every shipped image toward each of the 9 other classes
    x_f, res = A.fooling_images(lenet, xr, tr, steps=100, labels=yr)
    assert res.success_rate >= 0.99, res.summary()
    assert res.iterations.max() <= 100
    assert x_f.min() >= 0 and x_f.max() <= 1


def test_class_visualization_lenet(lenet):
    imgs, res = A.class_visualization(lenet, list(range(10)), shape=(1, 28, 28), seed=0)
    assert res.success_rate == 1.0  # every image is classified as the class it was grown for
    # confidently: 0.83 for "sneaker" (close to sandal and ankle boot), >= 0.99 for the others
    assert np.all(res.adv_conf > 0.6) and res.adv_conf.mean() > 0.9


def test_patch_attacks_lenet(lenet, samples):
    x, y = samples[0][:100], samples[1][:100]
    x_adv, res = A.patch_attack(lenet, x, y, size=8, location="random", steps=50, step_size=0.1)
    assert res.success_rate_on_correct > 0.5
    outside = ~np.broadcast_to(res.extras["mask"], x.shape)
    assert np.array_equal(x_adv[outside], x[outside])
    # a universal patch, optimized on the first 250 sample images and pasted at random places on the
    # other 250. LeNet's fully connected layers are not translation invariant, so a 14x14 patch (a quarter
    # of the image) wins only part of the time (30% toward "sandal"); a random patch of the same size
    # (8%) is the baseline it must clearly beat
    xa, ya, xb, yb = samples[0][:250], samples[1][:250], samples[0][250:], samples[1][250:]
    _, uni = A.universal_patch(lenet, xa, ya, size=14, steps=100, step_size=0.05, batch_size=50, targeted=True,
                               target=5, seed=0)
    _, held = A.evaluate_patch(lenet, xb, yb, uni.extras["patch"], seed=3, targeted=True, target=5)
    noise = np.random.default_rng(0).uniform(0, 1, (1, 14, 14))
    _, base = A.evaluate_patch(lenet, xb, yb, noise, seed=3, targeted=True, target=5)
    assert held.success_rate > 0.2 and held.success_rate > 3 * base.success_rate, (held.success_rate,
                                                                                     base.success_rate)


# ---- CLI -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,picture", [
    (["fgsm", "--n", "6", "--eps", "0.1"], "fgsm.png"),
    (["pgd", "--n", "6", "--steps", "5", "--norm", "l2", "--eps", "1.5"], "pgd.png"),
    (["fooling", "--n", "2"], "fooling.png"),
    (["fooling", "--n", "3", "--target", "8"], "fooling.png"),
    (["visualize", "--steps", "10"], "class_visualization.png"),
    (["patch", "--n", "6", "--steps", "10"], "patch.png"),
    (["universal-patch", "--n", "20", "--steps", "5", "--target", "1"], "universal-patch.png"),
    (["fooling", "--n", "2", "--target", "3", "--min-confidence", "0.9"], "fooling.png"),
    (["sweep", "--n", "40", "--eps-list", "0,0.1"], "robustness.png"),
])
def test_cli(tmp_path, argv, picture, capsys):
    import matplotlib.image as mpimg

    from convkit.cli import main

    out = tmp_path / "out"
    assert main(["attack"] + argv + ["--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == argv[0] and picture in report["pictures"]
    assert mpimg.imread(out / picture).shape[0] > 50
    assert (out / "report.md").read_text().startswith(f"# convkit attack {argv[0]}")
    if argv[0] == "sweep":
        assert report["sweep"]["eps"] == [0.0, 0.1]
        assert "| 0.1 |" in capsys.readouterr().out
    elif argv[0] != "visualize":
        assert report["n"] > 0 and 0 <= report["result"]["success_rate"] <= 1


def test_cli_on_the_test_set(tmp_path):
    try:
        data.find_dataset("fashion-mnist")
    except ValueError:
        pytest.skip("the Fashion-MNIST IDX files are not installed (Debian package dataset-fashion-mnist)")
    from convkit.cli import main

    assert main(["attack", "sweep", "--data", "fashion-mnist", "--n", "200", "--eps-list", "0,0.05",
                 "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["n"] == 200 and report["data"] == "Fashion-MNIST test set"
    acc = report["sweep"]["accuracy"]
    assert acc["pgd"][1] <= acc["fgsm"][1] < acc["fgsm"][0]


def test_cli_errors(tmp_path, capsys):
    from convkit.cli import main

    assert main(["attack", "fgsm", "--eps", "-1", "--out", str(tmp_path)]) == 2
    assert "eps must be >= 0" in capsys.readouterr().err
    assert main(["attack", "fgsm", "--weights", "w.npz", "--out", str(tmp_path)]) == 2
    assert "--weights needs --model" in capsys.readouterr().err
