"""FGSM: one signed-gradient step of size eps (Goodfellow, Shlens, Szegedy 2015).

    x_adv = clip(x + eps * sign(grad_x J(x)), lo, hi)

with J from convkit.attacks.losses: untargeted, J = cross-entropy of the true label (raise the loss);
targeted, by default J = Score_target, the target's unnormalized logit, exactly the lecture's
I + eps * sign(grad Score_target) (loss="ce" ascends log softmax(z)[target] instead).
sign(0) = 0: a pixel with zero gradient is left alone. Every |x_adv - x| <= eps.
"""
from __future__ import annotations

import numpy as np

from . import _checks as C
from ._common import setup
from .losses import check_loss, objective
from .pgd import linf_box
from .result import AttackResult, finish


def fgsm(model, x, labels=None, *, eps, targeted: bool = False, target=None, loss: str | None = None):
    """Fast gradient sign method. Returns (x_adv [N, C, H, W], AttackResult).

    model:    a convkit network or an AttackModel (bounds, normalization); eps in pixel units.
    labels:   the true classes (int, list or array; 'predicted' for the model's own predictions);
              required when targeted=False, optional (for the record) when targeted=True.
    target:   the target classes (int, list or array), required when targeted=True.
    loss:     'ce' | 'score' | 'margin'; default 'ce' untargeted, 'score' targeted (the lecture).
    """
    fn = "fgsm"
    eps = C.number(eps, fn, "eps", 0.0)
    s = setup(fn, model, x, labels, target, targeted)
    loss = check_loss(loss if loss is not None else ("score" if s.targeted else "ce"), fn)
    am, x = s.am, s.x
    cls = s.classes
    _, g = am.value_and_grad(x, lambda z, rows: objective(z, cls[rows], loss, s.targeted)[1])
    # x + eps * sign(g), clipped to the bounds and (exactly, see pgd.linf_box) to the eps box
    x_adv = np.clip(x + np.sign(g) * np.asarray(eps, x.dtype), *linf_box(x, eps, am.bounds))
    params = {"eps": eps, "loss": loss, "bounds": list(am.bounds)}
    res: AttackResult = finish(am, fn, params, x, x_adv, s.targeted, s.labels, s.target, s.orig,
                               np.ones(x.shape[0], np.int64))
    return x_adv, res
