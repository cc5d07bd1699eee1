"""convkit.data: IDX files (hand-made, corrupt, truncated), the finder, the downloader against a local
HTTP server, batches, digits, and the real Fashion-MNIST when Debian's package is installed."""
import gzip
import hashlib
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import convkit.data as D
from convkit.testing import assert_raises


def idx_bytes(a: np.ndarray, code: int) -> bytes:
    """IDX by hand: 0x0000, type code, ndim, big-endian int32 dims, big-endian data."""
    head = bytes([0, 0, code, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return head + a.astype(a.dtype.newbyteorder(">")).tobytes()


def test_parse_hand_made_idx():
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(D.parse_idx(idx_bytes(a, 0x08)), a)
    # labels: 1-D; header 00 00 08 01 00 00 00 03, then the bytes 7 0 9
    assert D.parse_idx(bytes.fromhex("0000080100000003070009")).tolist() == [7, 0, 9]
    i = np.array([[-5, 70000], [3, -1]], np.int32)
    got = D.parse_idx(idx_bytes(i, 0x0C))
    np.testing.assert_array_equal(got, i)
    assert got.dtype == np.int32 and got.dtype.isnative
    f = np.array([0.5, -2.25, 1e30], np.float64)
    np.testing.assert_array_equal(D.parse_idx(idx_bytes(f, 0x0E)), f)


def test_read_idx_gz_and_raw(tmp_path, rng):
    a = rng.integers(0, 256, (5, 28, 28)).astype(np.uint8)
    (tmp_path / "raw-idx3-ubyte").write_bytes(idx_bytes(a, 0x08))
    (tmp_path / "z-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(a, 0x08)))
    (tmp_path / "misnamed").write_bytes(gzip.compress(idx_bytes(a, 0x08)))  # detected by magic, not name
    for name in ("raw-idx3-ubyte", "z-idx3-ubyte.gz", "misnamed"):
        np.testing.assert_array_equal(D.read_idx(tmp_path / name), a)
    D.write_idx(tmp_path / "w.gz", a)
    np.testing.assert_array_equal(D.read_idx(tmp_path / "w.gz"), a)
    assert (tmp_path / "w.gz").read_bytes()[:2] == b"\x1f\x8b"


def test_corrupt_and_truncated_idx(tmp_path):
    a = np.arange(60, dtype=np.uint8).reshape(3, 4, 5)
    good = idx_bytes(a, 0x08)
    cases = {
        "short": (good[:3], r"too short for an IDX file \(3 bytes\)"),
        "magic": (b"\x08\x03" + good[2:], r"not an IDX file \(header bytes 08030803\)"),
        "type": (b"\x00\x00\x07\x03" + good[4:], r"not an IDX file"),
        "header": (good[:10], r"truncated IDX header \(10 bytes, need 16\)"),
        "data": (good[:-7], r"truncated: the header says 3x4x5 uint8 \(60 bytes\) but 53 data bytes follow"),
        "trailing": (good + b"xx", r"has trailing bytes"),
    }
    for name, (data, pattern) in cases.items():
        (tmp_path / name).write_bytes(data)
        e = assert_raises(D.DataError, pattern, D.read_idx, tmp_path / name)
        assert str(tmp_path / name) in str(e)
    z = gzip.compress(good)
    (tmp_path / "trunc.gz").write_bytes(z[: len(z) // 2])
    assert_raises(D.DataError, r"corrupt or truncated gzip data.*apt install dataset-fashion-mnist", D.read_idx,
                  tmp_path / "trunc.gz")
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 30)
    assert_raises(D.DataError, r"corrupt or truncated gzip", D.read_idx, tmp_path / "bad.gz")
    assert_raises(D.DataError, r"no such file; get it with `sudo apt install dataset-fashion-mnist`", D.read_idx,
                  tmp_path / "missing.gz")
    assert isinstance(D.DataError("x"), ValueError)


def fake_fashion(folder: Path, n_train=12, n_test=6, gz=True, rng=None) -> dict:
    rng = rng or np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train_images": rng.integers(0, 256, (n_train, 28, 28)).astype(np.uint8),
              "train_labels": rng.integers(0, 10, n_train).astype(np.uint8),
              "test_images": rng.integers(0, 256, (n_test, 28, 28)).astype(np.uint8),
              "test_labels": rng.integers(0, 10, n_test).astype(np.uint8)}
    for key, a in arrays.items():
        data = idx_bytes(a, 0x08)
        name = D.FASHION_MNIST_FILES[key] + (".gz" if gz else "")
        (folder / name).write_bytes(gzip.compress(data) if gz else data)
    return arrays


def test_finder_order(tmp_path, monkeypatch):
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    a = fake_fashion(explicit, gz=False)
    b = fake_fashion(env / "fashion-mnist", n_train=7, rng=np.random.default_rng(1))
    monkeypatch.setitem(D.DEBIAN_DIRS, "fashion-mnist", tmp_path / "debian")  # not there
    monkeypatch.setenv("CONVKIT_DATA", str(env))
    ds = D.load_fashion_mnist(explicit)  # 1. the explicit path wins
    np.testing.assert_array_equal(ds.x_train, a["train_images"])
    assert ds.y_train.dtype == np.int64 and ds.classes[9] == "Ankle boot"
    assert D.load_fashion_mnist().x_train.shape[0] == 7  # 2. $CONVKIT_DATA/fashion-mnist
    monkeypatch.delenv("CONVKIT_DATA")
    assert_raises(D.DataError, r"fashion-mnist not found; looked in: .*debian.*apt install dataset-fashion-mnist",
                  D.load_fashion_mnist)
    monkeypatch.setitem(D.DEBIAN_DIRS, "fashion-mnist", explicit)  # 3. the Debian folder
    assert D.load_fashion_mnist().x_train.shape[0] == 12
    (explicit / "t10k-labels-idx1-ubyte").unlink()
    assert_raises(D.DataError, r"does not hold the data set: missing t10k-labels-idx1-ubyte", D.load_fashion_mnist,
                  explicit)


def test_inconsistent_files_are_reported(tmp_path):
    fake_fashion(tmp_path)
    D.write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))  # 6 images, 5 labels
    assert_raises(D.DataError, r"6 test images but 5 labels", D.load_fashion_mnist, tmp_path)
    D.write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(6, 12, np.uint8))
    assert_raises(D.DataError, r"labels outside \[0, 10\)", D.load_fashion_mnist, tmp_path)


# ---- downloader, against a local HTTP server ------------------------------------------------------

class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/truncated"):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            lambda *a, **k: _Handler(*a, directory=str(root), **k))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_and_never_leaves_partial_files(server, tmp_path):
    root, url = server
    payload = os.urandom(300_000)
    (root / "blob.bin").write_bytes(payload)
    dest_dir = tmp_path / "dl"
    good = hashlib.sha256(payload).hexdigest()
    got = D.download(url + "blob.bin", dest_dir / "blob.bin", sha256=good)
    assert got.read_bytes() == payload
    # a wrong hash: the file is discarded, nothing is left behind (not even the temporary)
    assert_raises(D.DataError, r"SHA-256 mismatch .* the file was discarded", D.download, url + "blob.bin",
                  dest_dir / "bad.bin", sha256="0" * 64)
    assert_raises(D.DataError, r"download of .*missing.bin failed: HTTP Error 404", D.download, url + "missing.bin",
                  dest_dir / "missing.bin")
    assert_raises(D.DataError, r"download of .*truncated.* (failed|is incomplete)", D.download, url + "truncated",
                  dest_dir / "trunc.bin")
    assert sorted(p.name for p in dest_dir.iterdir()) == ["blob.bin"]
    # an existing good file is only replaced when the new one verifies
    assert_raises(D.DataError, r"SHA-256 mismatch", D.download, url + "blob.bin", dest_dir / "blob.bin",
                  sha256="1" * 64)
    assert (dest_dir / "blob.bin").read_bytes() == payload


def test_download_fashion_mnist_checks_content_hashes(server, tmp_path, monkeypatch):
    root, url = server
    arrays = fake_fashion(root)
    hashes = {D.FASHION_MNIST_FILES[k]: hashlib.sha256(idx_bytes(a, 0x08)).hexdigest() for k, a in arrays.items()}
    monkeypatch.setattr(D, "FASHION_MNIST_SHA256", hashes)
    folder = D.download_fashion_mnist(tmp_path / "fm", base_url=url, progress=False)
    ds = D.load_fashion_mnist(folder)
    np.testing.assert_array_equal(ds.x_test, arrays["test_images"])
    # load with download=True from an empty place
    monkeypatch.setattr(D, "FASHION_MNIST_URL", url)
    monkeypatch.setitem(D.DEBIAN_DIRS, "fashion-mnist", tmp_path / "nowhere")
    monkeypatch.setenv("CONVKIT_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(D.download_fashion_mnist, "__defaults__", (None, url, False))
    assert D.load_fashion_mnist(download=True).x_train.shape == (12, 28, 28)
    assert (tmp_path / "cache" / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file()
    # a server with different content is refused
    hashes["t10k-images-idx3-ubyte"] = "f" * 64
    assert_raises(D.DataError, r"SHA-256 of the content mismatch", D.download_fashion_mnist, tmp_path / "fm2",
                  base_url=url, progress=False)
    assert not (tmp_path / "fm2" / "t10k-images-idx3-ubyte.gz").exists()


# ---- batches, digits, samples --------------------------------------------------------------------

def test_batches(rng):
    x = np.arange(10 * 2).reshape(10, 2)
    y = np.arange(10)
    bs = list(D.batches(x, y, 4, shuffle=False))
    assert [len(b[1]) for b in bs] == [4, 4, 2] and bs[0][1].tolist() == [0, 1, 2, 3]
    assert all(b[0].flags.c_contiguous for b in bs)
    seen = np.concatenate([b[1] for b in D.batches(x, y, 3, rng=7)])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    again = np.concatenate([b[1] for b in D.batches(x, y, 3, rng=7)])
    np.testing.assert_array_equal(seen, again)  # seeded
    for xb, yb in D.batches(x, y, 3, rng=1):
        np.testing.assert_array_equal(xb[:, 0] // 2, yb)  # x and y stay paired
    assert [len(b) for b in D.batches(x, None, 4, drop_last=True)] == [4, 4]
    assert_raises(ValueError, r"batch_size must be an int >= 1", lambda: list(D.batches(x, y, 0)))
    assert_raises(ValueError, r"x has 10 items but y has 9", lambda: list(D.batches(x, y[:9], 2)))


def test_to_float():
    a = np.array([[[0, 255], [51, 102]]], np.uint8)
    f = D.to_float(a)
    assert f.shape == (1, 1, 2, 2) and f.dtype == np.float32
    assert f.ravel().tolist() == [0.0, 1.0, np.float32(0.2), np.float32(0.4)]
    assert_raises(ValueError, r"images must be \[N, H, W\] or \[N, C, H, W\]", D.to_float, np.zeros(3))


def test_digits():
    pytest.importorskip("sklearn")
    d = D.load_digits()
    assert d.x_train.shape[1:] == (8, 8) and len(d.y_train) + len(d.y_test) == 1797 and d.x_train.max() == 16
    d28 = D.load_digits(size=28)
    assert d28.x_train.shape[1:] == (28, 28) and d28.x_train.max() == 255
    np.testing.assert_array_equal(d28.y_test, d.y_test)
    assert_raises(ValueError, r"size must be 8 or 28", D.load_digits, size=16)


def test_real_fashion_mnist():
    try:
        ds = D.load_fashion_mnist()
    except D.DataError as e:
        pytest.skip(f"Fashion-MNIST is not installed here: {e}")
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.x_train.dtype == np.uint8
    # every class has 6,000 training and 1,000 test images
    assert np.bincount(ds.y_train).tolist() == [6000] * 10 and np.bincount(ds.y_test).tolist() == [1000] * 10
    # the files are the published data set
    folder = Path(ds.source)
    for stem, h in D.FASHION_MNIST_SHA256.items():
        assert hashlib.sha256(D._read_bytes(D._locate(folder, stem))).hexdigest() == h
