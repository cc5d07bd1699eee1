"""The native extension path end to end: build examples/custom_op against the installed convkit
(its headers and CMake package, nothing else), run the example's own tests, and hold the native
leaky ReLU to the same op written in Python with convkit.extend (identical values and gradients).

The build takes a minute; it is skipped, with the reason, when cmake, a C++ compiler,
scikit-build-core or pybind11 is missing. CUDA kernels are built when $CUSTOM_OP_CUDA says so
(AUTO/ON/OFF), else exactly when convkit itself was built with CUDA.
"""
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convkit
from convkit import _core, extend, nn
from convkit.testing import assert_raises

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_op"

pytestmark = pytest.mark.slow


def _missing_tools() -> str:
    missing = [t for t in ("cmake",) if shutil.which(t) is None]
    if not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++") or os.environ.get("CXX")):
        missing.append("a C++ compiler")
    for mod in ("scikit_build_core", "pybind11", "pip"):
        if importlib.util.find_spec(mod) is None:
            missing.append(mod)
    return ", ".join(missing)


def test_installed_api_is_there():
    inc = Path(convkit.get_include())
    for h in ("tensor.h", "parallel.h", "runtime.h", "cuda_check.h", "extension.h"):
        assert (inc / "convkit" / h).is_file(), h
    cmake_dir = Path(convkit.get_cmake_dir())
    assert (cmake_dir / "convkitConfig.cmake").is_file()
    assert (cmake_dir / "convkitConfigVersion.cmake").is_file()


@pytest.fixture(scope="module")
def example_dir(tmp_path_factory):
    """Build and install the example into a fresh target directory; returns that directory."""
    missing = _missing_tools()
    if missing:
        pytest.skip(f"cannot build the example extension: missing {missing}")
    target = tmp_path_factory.mktemp("custom_op_install")
    env = dict(os.environ)
    env.setdefault("CUSTOM_OP_CUDA", "AUTO" if _core.cuda_compiled() else "OFF")
    cmd = [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index",
           "--target", str(target), "-Cbuild-dir=" + str(tmp_path_factory.mktemp("custom_op_build")), str(EXAMPLE)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    if r.returncode != 0:
        pytest.fail(f"building examples/custom_op failed ({' '.join(cmd)}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return target


@pytest.fixture(scope="module")
def cop(example_dir):
    sys.path.insert(0, str(example_dir))
    try:
        import convkit_custom_op
        yield convkit_custom_op
    finally:
        sys.path.remove(str(example_dir))


def test_example_own_tests_pass(example_dir):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(example_dir)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
                       cwd=str(EXAMPLE), env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"example tests failed:\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}"
    assert " passed" in r.stdout


# ---- the same op in Python ---------------------------------------------------------------------------

@extend.op
def py_leaky_relu(x, slope=0.01):
    return np.where(x > 0, x, slope * x)


@py_leaky_relu.backward
def _(dy, x, y, slope=0.01):
    return np.where(x > 0, dy, slope * dy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_python_and_native_identical(cop, dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 9, 11)).astype(dtype)
    x.flat[:5] = 0  # the x == 0 case: both take the slope branch
    dy = rng.standard_normal(x.shape).astype(dtype)
    for slope in (0.01, 0.3, -1.5):
        # both compute one product slope * x in the array's dtype: bitwise identical
        np.testing.assert_array_equal(cop.leaky_relu(x, slope), py_leaky_relu(x, slope=slope))
        np.testing.assert_array_equal(cop.leaky_relu_backward(dy, x, slope), py_leaky_relu.grad(dy, x, slope=slope))


def test_python_and_native_identical_in_a_network(cop):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((16, 6)).astype(np.float32)
    labels = np.arange(16) % 3
    models = []
    for act in (cop.LeakyReLU(0.2), py_leaky_relu.module(slope=0.2)):
        nn.manual_seed(3)
        m = nn.Sequential(nn.Linear(6, 10), act, nn.Linear(10, 3))
        loss, d = nn.cross_entropy(m(x), labels)
        dx = m.backward(d)
        models.append((loss, dx, m))
    (la, dxa, ma), (lb, dxb, mb) = models
    assert la == lb
    np.testing.assert_array_equal(dxa, dxb)
    for (name, pa), (_, pb) in zip(ma.named_parameters(), mb.named_parameters()):
        np.testing.assert_array_equal(pa.grad, pb.grad, err_msg=name)


def test_python_and_native_same_kind_of_errors(cop):
    for bad, exc, pattern in [([1.0], TypeError, r"x must be a numpy array or convkit.DeviceArray, got list"),
                              (np.ones(2, np.int64), TypeError, r"x must have dtype float32 or float64, got int64"),
                              (np.ones((3, 3), np.float32)[:, :2], ValueError, r"x must be C-contiguous")]:
        assert_raises(exc, "leaky_relu: " + pattern, cop.leaky_relu, bad)
        assert_raises(exc, "leaky_relu: " + pattern, py_leaky_relu, bad)
