"""`convkit analyze`: writes PNGs that decode and a report whose numbers are in range."""
import json
from collections import OrderedDict

import numpy as np
import pytest

import convkit.nn as nn
from convkit import cli
from convkit.analysis import report
from convkit.testing import assert_raises


def _check_outputs(out, num):
    import matplotlib.image as mpimg
    md = (out / "report.md").read_text()
    for key, name in num["images"].items():
        assert (out / name).is_file(), key
        assert f"({name})" in md, f"{name} not referenced in report.md"
        im = mpimg.imread(out / name)
        assert im.ndim == 3 and min(im.shape[:2]) > 50, name
    saved = json.loads((out / "report.json").read_text())
    assert saved["precision_at_10"] == num["precision_at_10"]


def test_analyze_on_a_given_model_and_images(tmp_path):
    """Works on any convkit network and labelled images (no shipped assets needed)."""
    rng = np.random.default_rng(0)
    net = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 4, 3, padding=1, rng=1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(4, 4, 3, padding=1, rng=2)), ("relu2", nn.ReLU()),
        ("flatten", nn.Flatten()), ("fc1", nn.Linear(4 * 6 * 6, 8, rng=3)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(8, 3, rng=4)),
    ]))
    y = rng.integers(0, 3, 120)
    x = rng.random((120, 3, 12, 12)).astype(np.float32) + y[:, None, None, None] * 0.3
    num = report.analyze(tmp_path, net, x, y, ["a", "b", "c"], quick=True, fmt="both", run_tsne=False)
    _check_outputs(tmp_path, num)
    assert num["feature_layer"] == "relu3" and num["feature_dim"] == 8
    assert set(num["images"]) >= {"filters_conv1", "filters_conv2", "activations_relu1", "neighbors", "pca_features",
                                  "attributions", "randomization"}
    for v in num["precision_at_10"].values():
        assert 0 <= v <= 120
    assert -1 <= num["sanity"]["saliency_vs_occlusion_rank_correlation"] <= 1


def test_analyze_command_on_the_shipped_lenet(tmp_path, capsys):
    import convkit.models as M
    try:
        M.lenet5_fashion_mnist()
    except FileNotFoundError as e:
        pytest.skip(f"the shipped LeNet-5 weights are not there yet: {e}")
    out = tmp_path / "report"
    assert cli.main(["analyze", "--quick", "--out", str(out), "--format", "both"]) == 0
    text = capsys.readouterr().out
    assert "precision@10" in text and str(out) in text
    num = json.loads((out / "report.json").read_text())
    _check_outputs(out, num)
    assert num["accuracy"] > 0.85
    p = num["precision_at_10"]
    assert p["features"] > p["pixels"]
    sc = num["embedding"]["knn5_accuracy_2d"]
    assert sc["pca_features"] > sc["pca_pixels"]
    assert "tsne_features" in sc  # scikit-learn is a test dependency
    s = num["sanity"]
    assert s["saliency_vs_occlusion_rank_correlation"] > s["saliency_vs_occlusion_chance"]


def test_analyze_bad_arguments(tmp_path, capsys):
    assert_raises(ValueError, "format must be 'md', 'json' or 'both'", report.analyze, tmp_path, fmt="html")
    assert_raises(ValueError, "data must be 'auto', 'fashion-mnist' or 'samples'", report.load_default_data, "cifar")
    x = np.random.default_rng(0).random((4, 1, 8, 8))
    assert_raises(ValueError, "labels are needed", report.analyze, tmp_path, object(), x)
    with pytest.raises(SystemExit):
        cli.main(["analyze", "--format", "html"])
    # an explicit data folder without the data: a clear error and exit code 2, not a traceback
    rc = cli.main(["analyze", "--data", "fashion-mnist", "--data-path", str(tmp_path / "nothing"),
                   "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "convkit analyze: error:" in err
