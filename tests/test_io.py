"""convkit.io: npz and safetensors round trips, interoperability with the safetensors package,
corrupt files, atomic writes, and the PyTorch bridge (to_torch)."""
import os
import struct

import numpy as np
import pytest

import convkit.io as cio
import convkit.models as M
from convkit.testing import assert_close, assert_raises


def _state(rng):
    return {"a.weight": rng.standard_normal((3, 4)).astype(np.float32), "a.bias": rng.standard_normal(3),
            "idx": np.arange(5, dtype=np.int64), "flag": np.array([1, 0], np.uint8)}


@pytest.mark.parametrize("ext", ["npz", "safetensors"])
def test_round_trip(ext, tmp_path, rng):
    state = _state(rng)
    path = cio.save(tmp_path / f"w.{ext}", state, meta={"epochs": 3})
    back = cio.load(path)
    assert list(back) == list(state)
    for k in state:
        assert back[k].dtype == state[k].dtype
        np.testing.assert_array_equal(back[k], state[k])
    m = M.lenet5(seed=1)
    cio.save(tmp_path / f"m.{ext}", m)
    m2 = cio.load(tmp_path / f"m.{ext}", M.lenet5(seed=2))
    x = rng.random((2, 1, 28, 28)).astype(np.float32)
    assert_close(m2.forward(x, until="conv1"), m.forward(x, until="conv1"), rtol=0, atol=0)
    assert sorted(os.listdir(tmp_path)) == [f"m.{ext}", f"w.{ext}"]  # no temporaries left


def test_npz_meta(tmp_path, rng):
    cio.save_npz(tmp_path / "w.npz", _state(rng), meta={"acc": 0.91, "cfg": {"lr": 1e-3}})
    state, meta = cio.load_npz(tmp_path / "w.npz", return_meta=True)
    assert meta == {"acc": 0.91, "cfg": {"lr": 1e-3}} and "__meta__" not in state


def test_safetensors_interoperates_with_the_package(tmp_path, rng):
    st = pytest.importorskip("safetensors.numpy")
    state = _state(rng)
    cio.save_safetensors(tmp_path / "ours.safetensors", state, metadata={"who": "convkit"})
    theirs = st.load_file(str(tmp_path / "ours.safetensors"))
    for k in state:
        np.testing.assert_array_equal(theirs[k], state[k])
    st.save_file({k: v for k, v in state.items()}, str(tmp_path / "theirs.safetensors"), metadata={"x": "y"})
    back, meta = cio.load_safetensors(tmp_path / "theirs.safetensors", return_metadata=True)
    assert meta == {"x": "y"}
    for k in state:
        np.testing.assert_array_equal(back[k], state[k])


def test_safetensors_bf16(tmp_path):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    t = torch.tensor([1.0, -2.5, 3.140625], dtype=torch.bfloat16)  # exactly representable in bf16
    st.save_file({"w": t}, str(tmp_path / "b.safetensors"))
    w = cio.load_safetensors(tmp_path / "b.safetensors")["w"]
    assert w.dtype == np.float32 and w.tolist() == [1.0, -2.5, 3.140625]


def test_corrupt_files(tmp_path, rng):
    cio.save_safetensors(tmp_path / "good.safetensors", _state(rng))
    raw = (tmp_path / "good.safetensors").read_bytes()
    cases = {
        "tiny": (raw[:5], r"5 bytes, shorter than the 8-byte header length"),
        "hdr": (struct.pack("<Q", 10**9) + raw[8:], r"header length 1000000000 exceeds the file"),
        "json": (struct.pack("<Q", 4) + b"{{{{", r"header is not JSON"),
        "cut": (raw[:-9], r"outside the .*-byte data \(truncated\?\)"),
    }
    for name, (data, pattern) in cases.items():
        p = tmp_path / f"{name}.safetensors"
        p.write_bytes(data)
        e = assert_raises(cio.WeightsError, pattern, cio.load_safetensors, p)
        assert str(p) in str(e)
    cio.save_npz(tmp_path / "good.npz", _state(rng))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "good.npz").read_bytes()[:100])
    assert_raises(cio.WeightsError, r"cut.npz: not a readable npz weights file", cio.load_npz, tmp_path / "cut.npz")
    assert_raises(FileNotFoundError, r"no such weights file", cio.load_npz, tmp_path / "none.npz")
    assert_raises(ValueError, r"unknown weights format '.pt'", cio.save, tmp_path / "w.pt", _state(rng))
    assert_raises(TypeError, r"expected a convkit.nn.Module or a mapping", cio.save_npz, tmp_path / "x.npz", 3)
    assert_raises(TypeError, r"save_safetensors: x has dtype complex128, which safetensors cannot store",
                  cio.save_safetensors,
                  tmp_path / "c.safetensors", {"x": np.ones(2, complex)})


def test_writes_are_atomic(tmp_path, rng, monkeypatch):
    """A failure while writing leaves the previous file intact and no temporary behind."""
    cio.save_npz(tmp_path / "w.npz", {"a": np.ones(3)})
    before = (tmp_path / "w.npz").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    for ext in ("npz", "safetensors"):
        with pytest.raises(OSError, match="disk full"):
            cio.save(tmp_path / f"w.{ext}", {"a": np.zeros(3)})
    assert (tmp_path / "w.npz").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["w.npz"]


def test_to_torch_is_equivalent(rng):
    torch = pytest.importorskip("torch")
    m = M.alexnet(num_classes=7, seed=3, dtype=np.float64).eval()
    t = cio.to_torch(m)
    assert [n for n, _ in t.named_children()] == m.names and not t.training
    x = rng.random((1, 3, 227, 227))
    with torch.no_grad():
        ty = t(torch.from_numpy(x)).numpy()
    assert_close(m(x), ty, rtol=1e-10, atol=1e-12)  # float64 both sides
    assert_raises(TypeError, r"to_torch: model must be a convkit.nn.Sequential", cio.to_torch, m["conv1"])
