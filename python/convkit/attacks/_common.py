"""Pieces every attack shares: set-up (checks, the clean prediction, labels/targets) and progress bars."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from . import _checks as C
from .model import AttackModel, as_attack_model


@dataclass
class Setup:
    am: AttackModel
    x: np.ndarray            # checked images [N, C, H, W], the model's dtype
    targeted: bool
    labels: np.ndarray | None
    target: np.ndarray | None
    orig: tuple              # (pred [N], conf [N])

    @property
    def classes(self) -> np.ndarray:
        """The class each image's objective refers to: the target (targeted) or the label (untargeted)."""
        return self.target if self.targeted else self.labels


def setup(fn: str, model, x, labels, target, targeted, need_gradient: bool = True) -> Setup:
    am = as_attack_model(model, fn)
    if need_gradient:
        am.require_gradient(fn)
    x = am.check_images(x, fn)
    pred, conf, z = am.predict(x)
    if z.shape[1] < 2:
        raise ValueError(f"{fn}: the model must have at least 2 classes, got logits of shape {list(z.shape)}")
    targeted, lab, tgt = C.label_and_target(fn, labels, target, targeted, x.shape[0], z.shape[1], pred)
    return Setup(am, x, targeted, lab, tgt, (pred, conf))


def fooled(pred: np.ndarray, s: Setup, rows) -> np.ndarray:
    return pred == s.target[rows] if s.targeted else pred != s.labels[rows]


def progress_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return contextlib.nullcontext(None)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return contextlib.nullcontext(None)
    return tqdm(total=total, desc=desc, leave=False)


def per_image_norm(g: np.ndarray) -> np.ndarray:
    """||g_i||_2 per image as an [N, 1, 1, 1] array (float64)."""
    return np.sqrt(np.sum(np.square(g.reshape(g.shape[0], -1), dtype=np.float64), axis=1)).reshape(-1, 1, 1, 1)
