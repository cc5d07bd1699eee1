"""AttackResult: what an attack did, image by image.

Success is decided by re-predicting the returned (clipped) adversarial images with the model, never
from the attack's internal bookkeeping: untargeted success = the new prediction differs from the
label; targeted success = the new prediction is the target.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .model import AttackModel


@dataclass
class AttackResult:
    attack: str                      # "fgsm", "pgd", "fooling", "patch", ...
    params: dict                     # the attack's settings (eps, norm, steps, step_size, loss, ...)
    targeted: bool
    labels: np.ndarray | None        # [N] true classes (None when not given)
    target: np.ndarray | None        # [N] target classes (targeted attacks)
    orig_pred: np.ndarray            # [N] prediction on the original images
    orig_conf: np.ndarray            # [N] softmax probability of orig_pred
    adv_pred: np.ndarray             # [N] prediction on the adversarial images
    adv_conf: np.ndarray             # [N] softmax probability of adv_pred
    success: np.ndarray              # [N] bool
    linf: np.ndarray                 # [N] max |x_adv - x| (pixel units)
    l2: np.ndarray                   # [N] ||x_adv - x||_2 (pixel units)
    iterations: np.ndarray           # [N] gradient steps taken for the image
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.success.shape[0])

    @property
    def success_rate(self) -> float:
        """Fraction of all images on which the attack succeeded."""
        return float(np.mean(self.success))

    @property
    def clean_accuracy(self) -> float | None:
        return None if self.labels is None else float(np.mean(self.orig_pred == self.labels))

    @property
    def robust_accuracy(self) -> float | None:
        """Accuracy on the adversarial images (needs labels)."""
        return None if self.labels is None else float(np.mean(self.adv_pred == self.labels))

    @property
    def success_rate_on_correct(self) -> float | None:
        """Success rate over the images the model classified correctly before the attack."""
        if self.labels is None:
            return None
        ok = self.orig_pred == self.labels
        return float(np.mean(self.success[ok])) if ok.any() else float("nan")

    def summary(self) -> str:
        mode = "targeted" if self.targeted else "untargeted"
        p = ", ".join(f"{k}={v}" for k, v in self.params.items() if not isinstance(v, (np.ndarray, list)))
        lines = [f"{self.attack} ({mode}; {p}) on {len(self)} images",
                 f"  success rate {self.success_rate:.4f}; mean iterations {float(np.mean(self.iterations)):.1f}",
                 f"  perturbation L-inf max {float(np.max(self.linf)):.4g}, mean {float(np.mean(self.linf)):.4g}; "
                 f"L2 mean {float(np.mean(self.l2)):.4g}"]
        if self.labels is not None:
            lines.append(f"  accuracy clean {self.clean_accuracy:.4f} -> adversarial {self.robust_accuracy:.4f}")
        return "\n".join(lines)

    def to_dict(self, per_image: bool = False) -> dict:
        """JSON-ready summary (and the per-image arrays as lists when per_image)."""
        def plain(v):
            if isinstance(v, np.ndarray):
                return v.tolist()
            if isinstance(v, (np.floating, np.integer, np.bool_)):
                return v.item()
            if isinstance(v, (list, tuple)):
                return [plain(u) for u in v]
            return v
        d = {"attack": self.attack, "targeted": self.targeted, "n": len(self),
             "params": {k: plain(v) for k, v in self.params.items()},
             "success_rate": self.success_rate, "clean_accuracy": self.clean_accuracy,
             "robust_accuracy": self.robust_accuracy, "success_rate_on_correct": self.success_rate_on_correct,
             "linf_max": float(np.max(self.linf)), "linf_mean": float(np.mean(self.linf)),
             "l2_mean": float(np.mean(self.l2)), "iterations_mean": float(np.mean(self.iterations))}
        if per_image:
            for k in ("labels", "target", "orig_pred", "orig_conf", "adv_pred", "adv_conf", "success", "linf",
                      "l2", "iterations"):
                v = getattr(self, k)
                d[k] = None if v is None else v.tolist()
        return d


def perturbation_sizes(x: np.ndarray, x_adv: np.ndarray):
    d = (x_adv.astype(np.float64) - x.astype(np.float64)).reshape(x.shape[0], -1)
    return np.abs(d).max(axis=1), np.sqrt(np.sum(d * d, axis=1))


def finish(am: AttackModel, attack: str, params: dict, x: np.ndarray, x_adv: np.ndarray, targeted: bool,
           labels, target, orig, iterations, extras=None, adv=None) -> AttackResult:
    """Build the record: re-predict x_adv (unless `adv` already holds exactly that prediction)."""
    orig_pred, orig_conf = orig
    adv_pred, adv_conf = adv if adv is not None else am.predict(x_adv)[:2]
    if targeted:
        success = adv_pred == target
    else:
        success = adv_pred != labels
    linf, l2 = perturbation_sizes(x, x_adv)
    return AttackResult(attack=attack, params=params, targeted=targeted,
                        labels=None if labels is None else np.asarray(labels, np.int64),
                        target=None if target is None else np.asarray(target, np.int64),
                        orig_pred=orig_pred, orig_conf=orig_conf, adv_pred=adv_pred, adv_conf=adv_conf,
                        success=np.asarray(success, bool), linf=linf, l2=l2,
                        iterations=np.asarray(iterations, np.int64), extras=extras or {})
