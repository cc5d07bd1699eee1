"""convkit.io: save and load weights (npz, safetensors) and bring them from / take them to PyTorch.

- ``save_npz(path, model_or_state, meta=None)`` / ``load_npz(path)``: numpy's npz, one array per
  parameter (dotted names), plus optional JSON metadata under ``__meta__``.
- ``save_safetensors`` / ``load_safetensors``: the safetensors format (an 8-byte little-endian
  header length, a JSON header of dtype/shape/offsets, then the raw little-endian data), written and
  read by convkit itself, so the ``safetensors`` package is not needed (it reads convkit's files
  and convkit reads its files; the tests check both ways).
- ``load_torch_state_dict(model, source)``: weights from a PyTorch state dict (a dict of tensors, a
  ``torch.nn.Module``, or a file torch.save wrote, read with ``weights_only=True``).
- ``to_torch(model)``: an equivalent ``torch.nn.Sequential`` holding a copy of the weights, for
  cross-checks against PyTorch (Captum, autograd).
Every writer writes a temporary file next to the target and renames it into place: a crash never
leaves a half-written weights file.
"""
from __future__ import annotations

import io as _io
import json
import math
import os
import struct
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .device import DeviceArray, to_numpy
from .nn import (Conv2d, Dropout, Flatten, Linear, LocalResponseNorm, MaxPool2d, Module, Normalize, ReLU,
                 Sequential)

META_KEY = "__meta__"


class WeightsError(ValueError):
    """A weights file or state dict that cannot be used (corrupt, truncated, wrong names or shapes)."""


def _state_of(obj) -> "OrderedDict[str, np.ndarray]":
    if isinstance(obj, Module):
        return obj.state_dict()
    if hasattr(obj, "items"):
        out = OrderedDict()
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"state dict keys must be strings, got {type(k).__name__}")
            out[k] = np.asarray(to_numpy(v) if isinstance(v, DeviceArray) else v)
        return out
    raise TypeError(f"expected a convkit.nn.Module or a mapping of name -> array, got {type(obj).__name__}")


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write data to path through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ---- npz ------------------------------------------------------------------------------------------

def save_npz(path, model_or_state, meta: dict | None = None) -> Path:
    """Save parameters (and JSON-serializable `meta`) to a compressed npz file, atomically."""
    state = _state_of(model_or_state)
    if META_KEY in state:
        raise ValueError(f"save_npz: {META_KEY!r} is reserved for the metadata")
    arrays = dict(state)
    if meta is not None:
        arrays[META_KEY] = np.array(json.dumps(meta))
    buf = _io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def load_npz(path, return_meta: bool = False):
    """Load an npz written by save_npz: an OrderedDict name -> array (and the metadata dict if asked)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    try:
        with np.load(path, allow_pickle=False) as f:
            state = OrderedDict((k, f[k]) for k in f.files if k != META_KEY)
            meta = json.loads(str(f[META_KEY])) if META_KEY in f.files else {}
    except Exception as e:  # zipfile.BadZipFile, ValueError, EOFError, zlib.error, ...
        raise WeightsError(f"{path}: not a readable npz weights file ({type(e).__name__}: {e})") from None
    return (state, meta) if return_meta else state


# ---- safetensors ----------------------------------------------------------------------------------

_ST_DTYPES = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "I64": np.dtype("<i8"),
              "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"),
              "BOOL": np.dtype("?")}
_ST_CODES = {v.newbyteorder("=") if v.itemsize > 1 else v: k for k, v in _ST_DTYPES.items()}


def save_safetensors(path, model_or_state, metadata: dict | None = None) -> Path:
    """Save parameters in the safetensors format, atomically. metadata: str -> str."""
    state = _state_of(model_or_state)
    header, chunks, offset = {}, [], 0
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("save_safetensors: metadata must map str -> str")
        header["__metadata__"] = dict(metadata)
    for name, a in state.items():
        a = np.ascontiguousarray(a)
        key = a.dtype.newbyteorder("=") if a.dtype.itemsize > 1 else a.dtype
        if key not in _ST_CODES:
            raise TypeError(f"save_safetensors: {name} has dtype {a.dtype}, which safetensors cannot store")
        data = a.astype(_ST_DTYPES[_ST_CODES[key]], copy=False).tobytes()
        header[name] = {"dtype": _ST_CODES[key], "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)  # the data starts 8-byte aligned
    return atomic_write_bytes(path, struct.pack("<Q", len(h)) + h + b"".join(chunks))


def load_safetensors(path, return_metadata: bool = False):
    """Load a safetensors file: OrderedDict name -> array (bf16 is widened to float32)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file")
    raw = path.read_bytes()

    def bad(msg):
        return WeightsError(f"{path}: not a valid safetensors file: {msg}")

    if len(raw) < 8:
        raise bad(f"{len(raw)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise bad(f"header length {n} exceeds the file ({len(raw)} bytes): truncated or corrupt")
    try:
        header = json.loads(raw[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    data = memoryview(raw)[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    entries = []
    for name, info in header.items():
        try:
            dt, shape, (b, e) = info["dtype"], [int(s) for s in info["shape"]], [int(o) for o in info["data_offsets"]]
        except (KeyError, TypeError, ValueError):
            raise bad(f"entry {name!r} lacks a valid dtype/shape/data_offsets") from None
        entries.append((b, e, name, dt, shape))
    out = OrderedDict()
    for b, e, name, dt, shape in sorted(entries):  # file order
        if dt == "BF16":
            itemsize = 2
        elif dt in _ST_DTYPES:
            itemsize = _ST_DTYPES[dt].itemsize
        else:
            raise bad(f"entry {name!r} has unsupported dtype {dt!r}")
        if any(s < 0 for s in shape) or not (0 <= b <= e <= len(data)):
            raise bad(f"entry {name!r} has offsets [{b}, {e}] outside the {len(data)}-byte data (truncated?)")
        if e - b != math.prod(shape) * itemsize:  # exact: np.prod in int64 wraps for crafted shapes
            raise bad(f"entry {name!r}: {e - b} bytes for shape {shape} of {dt}")
        chunk = bytes(data[b:e])
        if dt == "BF16":
            a = (np.frombuffer(chunk, "<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
        else:
            a = np.frombuffer(chunk, _ST_DTYPES[dt]).reshape(shape).astype(_ST_DTYPES[dt].newbyteorder("="))
        out[name] = a
    return (out, meta) if return_metadata else out


# ---- generic -------------------------------------------------------------------------------------

def save(path, model_or_state, meta: dict | None = None) -> Path:
    """Save by extension: .npz or .safetensors (meta values stored as JSON strings there)."""
    suffix = Path(path).suffix
    if suffix == ".npz":
        return save_npz(path, model_or_state, meta)
    if suffix == ".safetensors":
        return save_safetensors(path, model_or_state, {k: json.dumps(v) for k, v in (meta or {}).items()})
    raise ValueError(f"save: unknown weights format {suffix!r} (use .npz or .safetensors)")


def load(path, model: Module | None = None):
    """Load .npz or .safetensors weights; into `model` (returned) when given, else return the state dict."""
    suffix = Path(path).suffix
    if suffix == ".npz":
        state = load_npz(path)
    elif suffix == ".safetensors":
        state = load_safetensors(path)
    else:
        raise ValueError(f"load: unknown weights format {suffix!r} (use .npz or .safetensors)")
    return model.load_state_dict(state) if model is not None else state


# ---- PyTorch --------------------------------------------------------------------------------------

_TORCH_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _torch_state(source) -> "OrderedDict[str, np.ndarray]":
    if isinstance(source, (str, os.PathLike)):
        try:
            import torch
        except ImportError:
            raise ImportError("reading a PyTorch checkpoint file needs torch (pip install torch); or pass a dict of "
                              "numpy arrays") from None
        obj = torch.load(os.fspath(source), map_location="cpu", weights_only=True)
        if isinstance(obj, dict) and "state_dict" in obj and hasattr(obj["state_dict"], "items"):
            obj = obj["state_dict"]
        source = obj
    if hasattr(source, "state_dict") and callable(source.state_dict):
        source = source.state_dict()
    if not hasattr(source, "items"):
        raise TypeError(f"load_torch_state_dict: expected a state dict, a torch module or a path, "
                        f"got {type(source).__name__}")
    out = OrderedDict()
    for k, v in source.items():
        if hasattr(v, "detach"):
            v = v.detach().cpu()
            if str(v.dtype) == "torch.bfloat16":
                v = v.float()
            v = v.numpy()
        out[k] = np.asarray(v)
    return out


def load_torch_state_dict(model: Module, source, strict: bool = True) -> Module:
    """Copy weights from a PyTorch state dict into model (returned). Names are matched by:
    1. identical dotted names (what to_torch(model) produces);
    2. the model's ``torch_keys`` table (the zoo's torchvision layouts: alexnet_torchvision, vgg19);
    3. otherwise position: the state dict's float tensors in order against the model's parameters
       in order (how a PyTorch twin of lenet5()/alexnet() defines them), every shape checked.
    strict: every convkit parameter must be matched. Source keys left unused are reported with a
    warning (except torchvision VGG's classifier when the model stops at pool5)."""
    sd = _torch_state(source)
    params = OrderedDict(model.named_parameters())
    if all(n in sd for n in params):
        mapping = {n: n for n in params}
    elif getattr(model, "torch_keys", None) and any(v in sd for v in model.torch_keys.values()):
        mapping = {n: model.torch_keys[n] for n in params if n in model.torch_keys and model.torch_keys[n] in sd}
    else:
        buffers = [k for k in sd if k.endswith(_TORCH_BUFFERS)]
        if buffers:
            raise WeightsError(f"load_torch_state_dict: the state dict has batch-norm buffers ({buffers[:3]}), "
                               f"but the model has no batch norm")
        tensors = [k for k, v in sd.items() if np.issubdtype(v.dtype, np.floating)]
        if len(tensors) != len(params):
            raise WeightsError(f"load_torch_state_dict: matching by position needs as many tensors as parameters: "
                               f"the state dict has {len(tensors)} ({', '.join(tensors[:6])}...), the model "
                               f"{len(params)} ({', '.join(list(params)[:6])}...)")
        mapping = dict(zip(params, tensors))
    missing = [n for n in params if n not in mapping]
    if strict and missing:
        raise WeightsError(f"load_torch_state_dict: no weights for {missing}; state dict keys: "
                           f"{', '.join(list(sd)[:12])}{'...' if len(sd) > 12 else ''}")
    state = OrderedDict()
    for n, k in mapping.items():
        a = sd[k]
        if tuple(a.shape) != params[n].shape:
            raise WeightsError(f"load_torch_state_dict: {k} has shape {list(a.shape)} but {n} needs "
                               f"{list(params[n].shape)}")
        state[n] = a
    model.load_state_dict(state, strict=False)
    used = set(mapping.values())
    unused = [k for k in sd if k not in used and not k.endswith(_TORCH_BUFFERS)]
    if getattr(model, "arch", None) == "vgg19" and "fc8.weight" not in params:
        unused = [k for k in unused if not k.startswith("classifier.")]
    if unused:
        warnings.warn(f"load_torch_state_dict: {len(unused)} state dict entries were not used: {unused[:8]}",
                      stacklevel=2)
    return model


def _torch_normalize(torch, m: Normalize):
    class Normalize(torch.nn.Module):
        """(x - mean[c]) / std[c]; mean and std are non-persistent buffers (not in the state dict)."""

        def __init__(self, mean, std):
            super().__init__()
            self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

        def forward(self, x):
            return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    return Normalize(m.mean, m.std)


def to_torch(model: Module):
    """A torch.nn.Sequential equivalent to a convkit Sequential (same layer names, a copy of the
    weights, same dtype, train/eval mode copied). Needs torch; for cross-checks and baselines."""
    import torch

    if not isinstance(model, Sequential):
        raise TypeError(f"to_torch: model must be a convkit.nn.Sequential, got {type(model).__name__}")
    dtype = torch.float64 if model.dtype == np.float64 else torch.float32
    layers = OrderedDict()
    for name, m in model._modules.items():
        if isinstance(m, Conv2d):
            t = torch.nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                                m.groups, bias=m.bias is not None)
        elif isinstance(m, Linear):
            t = torch.nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        elif isinstance(m, MaxPool2d):
            t = torch.nn.MaxPool2d(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode)
        elif isinstance(m, LocalResponseNorm):
            t = torch.nn.LocalResponseNorm(m.size, m.alpha, m.beta, m.k)
        elif isinstance(m, ReLU):
            t = torch.nn.ReLU()
        elif isinstance(m, Dropout):
            t = torch.nn.Dropout(m.p)
        elif isinstance(m, Flatten):
            t = torch.nn.Flatten()
        elif isinstance(m, Normalize):
            t = _torch_normalize(torch, m)
        elif isinstance(m, Sequential):
            t = to_torch(m)
        else:
            raise TypeError(f"to_torch: no PyTorch equivalent for layer {name!r} ({type(m).__name__})")
        layers[name] = t
    tm = torch.nn.Sequential(layers).to(dtype)
    with torch.no_grad():
        tsd = tm.state_dict()
        for n, a in model.state_dict().items():
            tsd[n].copy_(torch.from_numpy(a))
    tm.train(model.training)
    return tm


__all__ = ["WeightsError", "atomic_write_bytes", "load", "load_npz", "load_safetensors", "load_torch_state_dict",
           "save", "save_npz", "save_safetensors", "to_torch"]
