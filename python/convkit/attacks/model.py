"""AttackModel: a network seen from the attacker's side, in pixel units.

The wrapper owns three things every attack needs and none should repeat:
- the pixel bounds (default [0, 1]): inputs must lie inside them and adversarial images are clipped
  to them, so `eps` is always measured in the same units as the pixels;
- an optional mean/std normalization applied inside, x_model = (x - mean) / std per channel, so that
  a network trained on normalized inputs is attacked in pixel space (the chain rule gives
  d loss / d x = (d loss / d x_model) / std);
- the device and batching: images stay numpy arrays on the host, chunks of `batch_size` go to the
  network's device, logits and input gradients come back.

Any convkit network works (forward + backward(dy, param_grads=False)); any callable returning logits
[N, K] works for the attacks that need no gradient (evaluation, the final re-prediction).
"""
from __future__ import annotations

import contextlib

import numpy as np

from .. import functional as F
from ..device import DeviceArray, asarray, to_numpy
from . import _checks as C


def _params_of(model):
    params = getattr(model, "parameters", None)
    if not callable(params):
        return []
    try:
        return list(params())
    except TypeError:
        return []


def _infer_device_dtype(model):
    for p in _params_of(model):
        a = getattr(p, "data", p)
        if isinstance(a, DeviceArray):
            return "cuda", np.dtype(a.dtype)
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            return "cpu", a.dtype
    return "cpu", np.dtype(np.float32)


def _no_grad():
    try:
        from ..nn import no_grad
    except ImportError:
        return contextlib.nullcontext()
    return no_grad()


def _channel_stats(v, fn, name, positive):
    if v is None:
        return None
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError(f"{fn}: {name} must be a finite number or one per channel, got {v!r}")
    if positive and np.any(a <= 0):
        raise ValueError(f"{fn}: {name} must be > 0, got {v!r}")
    return a


class AttackModel:
    """A network with pixel bounds and optional normalization inside.

    model:      a convkit network (forward + backward) or any callable x -> logits [N, K].
    bounds:     (lo, hi) pixel range of the inputs (default (0, 1)).
    mean, std:  None, a number, or one number per channel; the network sees (x - mean) / std.
    batch_size: images per forward/backward chunk (memory bound, not semantics).
    device:     'cpu' or 'cuda'; default: where the network's parameters live.
    eval_mode:  run the network in eval mode during attacks (dropout off), restoring its mode after.
    """

    def __init__(self, model, bounds=(0.0, 1.0), mean=None, std=None, batch_size: int = 500, device=None,
                 eval_mode: bool = True):
        fn = "AttackModel"
        if isinstance(model, AttackModel):
            raise TypeError(f"{fn}: model is already an AttackModel")
        if not (callable(model) or hasattr(model, "forward")):
            raise TypeError(f"{fn}: model must be a convkit network or a callable returning logits, "
                            f"got {type(model).__name__}")
        self.model = model
        self.bounds = C.bounds_pair(bounds, fn)
        self.mean = _channel_stats(mean, fn, "mean", positive=False)
        self.std = _channel_stats(std, fn, "std", positive=True)
        self.batch_size = C.integer(batch_size, fn, "batch_size", 1)
        dev, self.dtype = _infer_device_dtype(model)
        if device is not None and device not in ("cpu", "cuda"):
            raise ValueError(f"{fn}: device must be 'cpu' or 'cuda', got {device!r}")
        self.device = device or dev
        self.eval_mode = C.flag(eval_mode, fn, "eval_mode")
        self.num_classes: int | None = None

    # ---- properties -------------------------------------------------------------------------------
    @property
    def has_gradient(self) -> bool:
        return callable(getattr(self.model, "backward", None)) and callable(getattr(self.model, "forward", None))

    def require_gradient(self, fn: str) -> None:
        if not self.has_gradient:
            raise TypeError(f"{fn}: this attack needs input gradients, so the model must be a convkit network "
                            f"with forward() and backward(); got {type(self.model).__name__}")

    def check_images(self, x, fn: str, name: str = "x") -> np.ndarray:
        return C.images(x, fn, self.bounds, self.dtype, name)

    def __repr__(self) -> str:
        norm = "" if self.mean is None and self.std is None else f", mean={self.mean}, std={self.std}"
        return f"AttackModel({type(self.model).__name__}, bounds={self.bounds}{norm}, device={self.device!r})"

    # ---- internals --------------------------------------------------------------------------------
    def _stat(self, a, c, name):
        if a.size not in (1, c):
            raise ValueError(f"AttackModel: {name} has {a.size} values but the images have {c} channels")
        return a.reshape(1, -1, 1, 1)

    def _to_model(self, x: np.ndarray):
        c = x.shape[1]
        if self.mean is not None or self.std is not None:
            x = np.asarray(x, np.float64)
            if self.mean is not None:
                x = x - self._stat(self.mean, c, "mean")
            if self.std is not None:
                x = x / self._stat(self.std, c, "std")
        return asarray(np.ascontiguousarray(x, dtype=self.dtype), device=self.device)

    def _grad_to_pixels(self, g: np.ndarray, c: int) -> np.ndarray:
        if self.std is not None:
            g = g / self._stat(self.std, c, "std").astype(g.dtype)
        return g

    def _raw_forward(self, xm):
        f = getattr(self.model, "forward", None)
        return f(xm) if callable(f) else self.model(xm)

    def _logits_host(self, y, n, fn="AttackModel") -> np.ndarray:
        y = to_numpy(y) if isinstance(y, (np.ndarray, DeviceArray)) else np.asarray(y)
        if y.ndim != 2 or y.shape[0] != n:
            raise ValueError(f"{fn}: the model must return logits of shape [N, K] = [{n}, K], got "
                             f"{C.shape_str(y.shape)}")
        if self.num_classes is None:
            self.num_classes = int(y.shape[1])
        return np.ascontiguousarray(y)

    @contextlib.contextmanager
    def _mode(self):
        m = self.model
        was_training = bool(getattr(m, "training", False))
        if self.eval_mode and was_training and callable(getattr(m, "eval", None)):
            m.eval()
            try:
                yield
            finally:
                m.train()
        else:
            yield

    # ---- public -----------------------------------------------------------------------------------
    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits [N, K] (host array) for checked pixel-space images x, in chunks, without caching."""
        out = []
        with self._mode(), _no_grad():
            for s in range(0, x.shape[0], self.batch_size):
                xb = x[s:s + self.batch_size]
                out.append(self._logits_host(self._raw_forward(self._to_model(xb)), xb.shape[0]))
        return np.concatenate(out) if len(out) > 1 else out[0]

    def predict(self, x: np.ndarray):
        """(predicted class [N] int64, its softmax probability [N] float64, logits [N, K])."""
        z = self.logits(x)
        p = probabilities(z)
        pred = np.argmax(z, axis=1).astype(np.int64)
        return pred, p[np.arange(len(pred)), pred].astype(np.float64), z

    def value_and_grad(self, x: np.ndarray, dlogits_fn):
        """Logits [N, K] and d objective / d x [N, C, H, W] (pixel units) for checked images x.

        dlogits_fn(logits_chunk, rows) -> d objective / d logits for that chunk (rows: the slice of x);
        the gradient comes from model.backward(dlogits, param_grads=False).
        """
        self.require_gradient("AttackModel.value_and_grad")
        zs, gs = [], []
        with self._mode():
            for s in range(0, x.shape[0], self.batch_size):
                xb = x[s:s + self.batch_size]
                z_dev = self.model.forward(self._to_model(xb))
                z = self._logits_host(z_dev, xb.shape[0])
                dz = np.ascontiguousarray(dlogits_fn(z, slice(s, s + xb.shape[0])), dtype=z.dtype)
                dz_dev = asarray(dz, device="cuda") if isinstance(z_dev, DeviceArray) else dz
                g = to_numpy(self.model.backward(dz_dev, param_grads=False))
                if tuple(g.shape) != tuple(xb.shape):
                    raise ValueError(f"AttackModel: model.backward returned a gradient of shape "
                                     f"{C.shape_str(g.shape)} for input {C.shape_str(xb.shape)}")
                zs.append(z)
                gs.append(self._grad_to_pixels(np.asarray(g), xb.shape[1]))
        z = np.concatenate(zs) if len(zs) > 1 else zs[0]
        g = np.concatenate(gs) if len(gs) > 1 else gs[0]
        return z, np.ascontiguousarray(g, dtype=self.dtype)


def as_attack_model(model, fn: str) -> AttackModel:
    """model if it is an AttackModel, else AttackModel(model) with the defaults (bounds [0, 1])."""
    if isinstance(model, AttackModel):
        return model
    if model is None:
        raise TypeError(f"{fn}: model must be a convkit network, a callable returning logits or an AttackModel, "
                        f"got None")
    return AttackModel(model)


def probabilities(logits: np.ndarray) -> np.ndarray:
    """softmax(logits) in float64 via convkit's stable log-softmax (exp of log-probabilities)."""
    return np.exp(F.log_softmax(np.ascontiguousarray(logits, dtype=np.float64)))
