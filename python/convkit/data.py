"""convkit.data: Fashion-MNIST/MNIST (IDX files), scikit-learn's digits, the shipped samples, batches.

Finding Fashion-MNIST (``load_fashion_mnist``), in order:
  1. an explicit ``path`` (a folder holding the four IDX files, gzipped or raw);
  2. ``$CONVKIT_DATA`` (the folder itself, or its ``fashion-mnist`` subfolder);
  3. ``/usr/share/datasets/fashion-mnist`` (Debian/Ubuntu: ``apt install dataset-fashion-mnist``);
  4. with ``download=True``: downloaded into the first writable of those (``~/.cache/convkit`` when
     none is given), each file checked against its SHA-256 and never left half-written.
A missing, truncated or corrupt file raises DataError, which says how to get the data.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import math
import os
import struct
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# plain http (the bucket serves no https); every file is checked against FASHION_MNIST_SHA256
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# SHA-256 of each file's IDX bytes (after gunzip), so a re-compressed copy (Debian ships one) is
# recognized as the same data. Computed from Debian's dataset-fashion-mnist package.
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
DEBIAN_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist"), "mnist": Path("/usr/share/datasets/mnist")}
SAMPLES = Path(__file__).resolve().parent / "_assets" / "fashion_mnist_samples.npz"

_HOW_TO_GET = ("get it with `sudo apt install dataset-fashion-mnist` (Debian/Ubuntu), or call "
               "convkit.data.load_fashion_mnist(download=True), or put the four IDX files "
               "(train-images-idx3-ubyte.gz, ...) in a folder and pass path=FOLDER or set $CONVKIT_DATA")


class DataError(ValueError):
    """A data file is missing, truncated or corrupt; the message says which and how to get it."""


# ---- IDX ------------------------------------------------------------------------------------------

_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with gzip's magic number (whatever its name)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; {_HOW_TO_GET}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip data ({e}); delete it and get it again: "
                            f"{_HOW_TO_GET}") from None
    return raw


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes: 2 zero bytes, a type byte, the number of dimensions, big-endian int32 sizes,
    then the data (big-endian). Returns a native-endian array."""
    if len(data) < 4:
        raise DataError(f"{source}: too short for an IDX file ({len(data)} bytes)")
    zero, tcode, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or tcode not in _IDX_TYPES or ndim == 0:
        raise DataError(f"{source}: not an IDX file (header bytes {data[:4].hex()}); expected 0000 followed by a "
                        f"type code in {sorted(hex(t) for t in _IDX_TYPES)} and the number of dimensions")
    head = 4 + 4 * ndim
    if len(data) < head:
        raise DataError(f"{source}: truncated IDX header ({len(data)} bytes, need {head})")
    dims = struct.unpack(f">{ndim}i", data[4:head])
    if any(d < 0 for d in dims):
        raise DataError(f"{source}: negative dimension in IDX header {dims}")
    dt = _IDX_TYPES[tcode]
    need = math.prod(dims) * dt.itemsize  # exact (np.prod in int64 wraps for crafted headers)
    have = len(data) - head
    if have != need:
        what = "truncated" if have < need else "has trailing bytes"
        raise DataError(f"{source}: {what}: the header says {'x'.join(map(str, dims))} {dt.name} "
                        f"({need} bytes) but {have} data bytes follow; {_HOW_TO_GET}")
    a = np.frombuffer(data, dtype=dt, offset=head).reshape(dims)
    return a.astype(dt.newbyteorder("="), copy=True)


def read_idx(path) -> np.ndarray:
    """Read an IDX file (MNIST's format), gzipped or raw."""
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


def write_idx(path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write an IDX file (gzipped when compress, or when compress is None and the name ends in .gz)."""
    a = np.asarray(array)
    codes = {v.newbyteorder("=") if v.itemsize > 1 else v: k for k, v in _IDX_TYPES.items()}
    dt = a.dtype.newbyteorder("=") if a.dtype.itemsize > 1 else a.dtype
    if dt not in codes:
        raise TypeError(f"write_idx: dtype {a.dtype} has no IDX type code")
    data = struct.pack(">HBB", 0, codes[dt], a.ndim) + struct.pack(f">{a.ndim}i", *a.shape)
    data += a.astype(_IDX_TYPES[codes[dt]], copy=False).tobytes()
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    _atomic_write(path, gzip.compress(data, mtime=0) if compress else data)


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- finding and downloading ----------------------------------------------------------------------

def _locate(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def candidate_dirs(name: str = "fashion-mnist", path=None) -> list:
    """The folders searched for a data set, in order (see the module docstring)."""
    out = []
    if path is not None:
        out.append(Path(path))
    env = os.environ.get("CONVKIT_DATA")
    if env:
        out += [Path(env) / name, Path(env)]
    if name in DEBIAN_DIRS:
        out.append(DEBIAN_DIRS[name])
    return out


def find_dataset(name: str = "fashion-mnist", path=None, files=FASHION_MNIST_FILES) -> dict:
    """{key: file path} for the first searched folder holding all the files; DataError if none does."""
    tried = []
    for folder in candidate_dirs(name, path):
        found = {k: _locate(folder, stem) for k, stem in files.items()}
        if all(found.values()):
            return found
        tried.append(f"{folder} ({'missing ' + ', '.join(s for k, s in files.items() if not found[k])})")
        if path is not None and folder == Path(path):
            raise DataError(f"{name}: {folder} does not hold the data set: missing "
                            f"{', '.join(s for k, s in files.items() if not found[k])}; {_HOW_TO_GET}")
    raise DataError(f"{name} not found; looked in: {'; '.join(tried) or 'nowhere ($CONVKIT_DATA is unset)'}. "
                    f"{_HOW_TO_GET}")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(url: str, dest, sha256: str | None = None, content_sha256: str | None = None,
             timeout: float = 60.0, progress: bool = False) -> Path:
    """Download url to dest, verifying the SHA-256 of the file (sha256) and/or of its gunzipped
    content (content_sha256). The data goes to a temporary file next to dest, renamed into place
    only when complete and verified, so dest is never partial. Returns dest."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as f:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as r:
                    total = int(r.headers.get("Content-Length") or 0)
                    bar = _bar(total, dest.name) if progress else None
                    got = 0
                    while chunk := r.read(1 << 16):
                        f.write(chunk)
                        h.update(chunk)
                        got += len(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                    if bar is not None:
                        bar.close()
            except (OSError, http.client.HTTPException) as e:  # URLError, HTTPError, timeouts, IncompleteRead
                raise DataError(f"download of {url} failed: {e}") from None
        if total and got != total:
            raise DataError(f"download of {url} is incomplete: {got} of {total} bytes")
        if sha256 is not None and h.hexdigest() != sha256.lower():
            raise DataError(f"download of {url}: SHA-256 mismatch (got {h.hexdigest()}, expected {sha256}); "
                            f"the file was discarded")
        if content_sha256 is not None:
            content = _read_bytes(tmp)
            if sha256_of(content) != content_sha256.lower():
                raise DataError(f"download of {url}: SHA-256 of the content mismatch (got {sha256_of(content)}, "
                                f"expected {content_sha256}); the file was discarded")
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _bar(total: int, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total or None, unit="B", unit_scale=True, desc=desc)


def download_fashion_mnist(folder=None, base_url: str = FASHION_MNIST_URL, progress: bool = True) -> Path:
    """Fetch the four Fashion-MNIST files into folder (default $CONVKIT_DATA/fashion-mnist or
    ~/.cache/convkit/fashion-mnist), skipping files already there and verified. Returns the folder."""
    if folder is None:
        env = os.environ.get("CONVKIT_DATA")
        folder = Path(env) / "fashion-mnist" if env else Path.home() / ".cache" / "convkit" / "fashion-mnist"
    folder = Path(folder)
    for stem in FASHION_MNIST_FILES.values():
        dest = folder / (stem + ".gz")
        if dest.is_file():
            try:
                if sha256_of(_read_bytes(dest)) == FASHION_MNIST_SHA256[stem]:
                    continue
            except DataError:
                pass
        download(base_url.rstrip("/") + "/" + stem + ".gz", dest, content_sha256=FASHION_MNIST_SHA256[stem],
                 progress=progress)
    return folder


# ---- data sets --------------------------------------------------------------------------------------

@dataclass
class Dataset:
    """Images (uint8 [N, H, W] or float [N, C, H, W]) and int64 labels, train and test splits."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple
    source: str = ""


def _check_pair(images: np.ndarray, labels: np.ndarray, what: str, source: str) -> None:
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"{source}: {what} images must be [N, H, W] and labels [N], got {images.shape} and "
                        f"{labels.shape}; {_HOW_TO_GET}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{source}: {images.shape[0]} {what} images but {labels.shape[0]} labels; {_HOW_TO_GET}")


def load_idx_dataset(name: str = "fashion-mnist", path=None, download: bool = False, classes=None) -> Dataset:
    """An MNIST-format data set (images uint8 [N, 28, 28], labels int64 [N]) found as described above."""
    try:
        files = find_dataset(name, path)
    except DataError:
        if not download or name != "fashion-mnist":
            raise
        files = find_dataset(name, download_fashion_mnist(path))
    arrays = {k: read_idx(p) for k, p in files.items()}
    src = str(Path(files["train_images"]).parent)
    for split in ("train", "test"):
        _check_pair(arrays[f"{split}_images"], arrays[f"{split}_labels"], split, src)
    ys = [arrays["train_labels"], arrays["test_labels"]]
    if classes is None:
        classes = tuple(str(i) for i in range(int(max(y.max() for y in ys)) + 1))
    for y in ys:
        if y.min() < 0 or y.max() >= len(classes):
            raise DataError(f"{src}: labels outside [0, {len(classes)}); the files are corrupt; {_HOW_TO_GET}")
    return Dataset(arrays["train_images"], ys[0].astype(np.int64), arrays["test_images"], ys[1].astype(np.int64),
                   tuple(classes), src)


def load_fashion_mnist(path=None, download: bool = False) -> Dataset:
    """Fashion-MNIST: 60,000 training and 10,000 test images (uint8 [N, 28, 28]) with labels 0-9."""
    return load_idx_dataset("fashion-mnist", path, download, FASHION_MNIST_CLASSES)


def load_mnist(path=None) -> Dataset:
    """MNIST from a folder (path, $CONVKIT_DATA[/mnist] or /usr/share/datasets/mnist)."""
    return load_idx_dataset("mnist", path, False, tuple(str(i) for i in range(10)))


def load_digits(test_fraction: float = 0.2, seed: int = 0, size: int = 8) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download), split into train and test.

    size=8: uint8 images in [0, 16], shape [N, 8, 8]. size=28: each pixel repeated 3x3 and the
    24x24 result padded by 2 to 28x28, values scaled to [0, 255] (for lenet5; a quick offline data set).
    """
    if size not in (8, 28):
        raise ValueError(f"load_digits: size must be 8 or 28, got {size!r}")
    try:
        from sklearn.datasets import load_digits as _ld
    except ImportError:
        raise ImportError("load_digits needs scikit-learn: pip install scikit-learn") from None
    d = _ld()
    x = d.images.astype(np.uint8)
    if size == 28:
        x = np.pad(np.repeat(np.repeat(x, 3, axis=1), 3, axis=2), ((0, 0), (2, 2), (2, 2)))
        x = (x.astype(np.uint16) * 255 // 16).astype(np.uint8)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    return Dataset(x[tr], y[tr], x[te], y[te], tuple(str(i) for i in range(10)), "sklearn.datasets.load_digits")


def load_samples():
    """The Fashion-MNIST test images shipped with convkit: (images uint8 [N, 28, 28], labels int64 [N]).

    They are the first images of the official test split (none were seen in training)."""
    if not SAMPLES.exists():
        raise FileNotFoundError(f"the shipped sample images are missing ({SAMPLES}); reinstall convkit")
    with np.load(SAMPLES) as f:
        return f["images"].copy(), f["labels"].astype(np.int64)


sample_images = load_samples  # alias


def write_samples(path=SAMPLES, n: int = 500, dataset: Dataset | None = None) -> Path:
    """Write the first n Fashion-MNIST test images and labels as the shipped samples (uint8 npz)."""
    ds = dataset or load_fashion_mnist()
    buf = io.BytesIO()
    np.savez_compressed(buf, images=ds.x_test[:n], labels=ds.y_test[:n].astype(np.uint8))
    path = Path(path)
    _atomic_write(path, buf.getvalue())
    return path


def to_float(images: np.ndarray, dtype=np.float32, scale: float | None = None) -> np.ndarray:
    """uint8 images [N, H, W] (or [N, C, H, W]) -> float [N, C, H, W] in [0, 1] (divided by 255, or by
    `scale`), C-contiguous, ready for a network."""
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise ValueError(f"to_float: images must be [N, H, W] or [N, C, H, W], got shape {a.shape}")
    if scale is None:
        scale = 255.0 if a.dtype == np.uint8 else 1.0
    return np.ascontiguousarray(a, dtype=dtype) / np.asarray(scale, dtype=dtype)


# ---- batches ---------------------------------------------------------------------------------------

def batches(x, y=None, batch_size: int = 64, shuffle: bool = True, rng=None, drop_last: bool = False):
    """Yield (x[b], y[b]) (or x[b] when y is None) over mini-batches of the first axis; a new
    permutation per call when shuffle (rng: a seed or numpy Generator; None draws an unseeded one).
    Batches are C-contiguous copies."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batches: batch_size must be an int >= 1, got {batch_size!r}")
    n = len(x)
    if y is not None and len(y) != n:
        raise ValueError(f"batches: x has {n} items but y has {len(y)}")
    order = (rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)).permutation(n) \
        if shuffle else np.arange(n)
    end = n - n % batch_size if drop_last else n
    for i in range(0, end, batch_size):
        b = order[i:i + batch_size]
        if not shuffle:
            b = slice(i, min(i + batch_size, n))
        xb = np.ascontiguousarray(x[b])
        yield (xb, np.ascontiguousarray(y[b])) if y is not None else xb


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


__all__ = ["DataError", "Dataset", "FASHION_MNIST_CLASSES", "batches", "download", "download_fashion_mnist",
           "find_dataset", "load_digits", "load_fashion_mnist", "load_idx_dataset", "load_mnist", "load_samples",
           "parse_idx", "read_idx", "sample_images", "to_float", "write_idx", "write_samples"]
