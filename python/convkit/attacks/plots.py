"""Pictures of attacks (matplotlib, Agg backend; PNG files).

plot_adversarial: one row per image, as in the lecture: the original (label and confidence), the
adversarial image (new prediction and confidence), the difference and the 10x difference. Both
differences are shown around mid-grey, clip(0.5 + k * (x_adv - x), 0, 1) in units of the pixel range,
so a difference of zero is grey and the 1x picture shows how small the change really is.
"""
from __future__ import annotations

import os

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _to_display(img: np.ndarray, bounds) -> np.ndarray:
    """[C, H, W] in bounds -> [H, W] or [H, W, 3] in [0, 1]."""
    lo, hi = bounds
    a = (np.asarray(img, np.float64) - lo) / (hi - lo)
    a = np.clip(a, 0.0, 1.0)
    return a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))


def _diff_display(d: np.ndarray, bounds, k: float) -> np.ndarray:
    lo, hi = bounds
    a = np.clip(0.5 + k * np.asarray(d, np.float64) / (hi - lo), 0.0, 1.0)
    return a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))


def _name(c, class_names):
    if c is None:
        return "?"
    c = int(c)
    return class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)


def _save(fig, path):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)


def describe(result) -> str:
    """A one-line title: the attack, its main settings, targeted or not."""
    keys = ("eps", "norm", "steps", "step_size", "patch_size", "min_confidence")
    p = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.params.items()
                  if k in keys and v is not None)
    return f"{result.attack} ({'targeted' if result.targeted else 'untargeted'}{', ' + p if p else ''})"


def plot_adversarial(x, x_adv, result, path: str, class_names=None, indices=None, max_images: int = 4,
                     amplify: float = 10.0, title: str | None = None) -> str:
    """Original | adversarial | difference | amplify x difference, one row per image. Returns path."""
    plt = _plt()
    x = np.asarray(x)
    x_adv = np.asarray(x_adv)
    if indices is None:
        indices = np.arange(min(max_images, x.shape[0]))
    indices = list(indices)
    bounds = result.params.get("bounds", (0.0, 1.0))
    gray = x.shape[1] == 1
    fig, axes = plt.subplots(len(indices), 4, figsize=(9.6, 2.6 * len(indices)), squeeze=False)
    for r, i in enumerate(indices):
        truth = result.labels[i] if result.labels is not None else None
        tgt = f"; target {_name(result.target[i], class_names)}" if result.target is not None else ""
        d = x_adv[i].astype(np.float64) - x[i].astype(np.float64)
        panels = [
            (_to_display(x[i], bounds), f"original: {_name(result.orig_pred[i], class_names)}\n"
                                        f"conf {result.orig_conf[i]:.3f}"
                                        + (f" (true {_name(truth, class_names)})" if truth is not None else "")),
            (_to_display(x_adv[i], bounds), f"adversarial: {_name(result.adv_pred[i], class_names)}\n"
                                            f"conf {result.adv_conf[i]:.3f}{tgt}"),
            (_diff_display(d, bounds, 1.0), f"difference\nL-inf {result.linf[i]:.3g}, L2 {result.l2[i]:.3g}"),
            (_diff_display(d, bounds, amplify), f"{amplify:g}x difference"),
        ]
        for c, (img, label) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(img, cmap="gray" if gray else None, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(label, fontsize=8.5, color="firebrick" if (c == 1 and result.success[i]) else "black")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title or describe(result), fontsize=10)
    _save(fig, path)
    plt.close(fig)
    return path


def plot_images(images, path: str, titles=None, ncols: int = 10, bounds=(0.0, 1.0), suptitle: str = "") -> str:
    """A grid of images [N, C, H, W] with optional titles (fooling images, class visualizations, patches)."""
    plt = _plt()
    images = np.asarray(images)
    n = images.shape[0]
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.9 * nrows), squeeze=False)
    for k in range(nrows * ncols):
        ax = axes[k // ncols][k % ncols]
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n:
            ax.axis("off")
            continue
        ax.imshow(_to_display(images[k], bounds), cmap="gray" if images.shape[1] == 1 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[k], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    _save(fig, path)
    plt.close(fig)
    return path


def plot_robustness(sweep, path: str, title: str | None = None) -> str:
    """Robust accuracy against eps, one curve per attack, with the clean accuracy as a reference line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    markers = {"fgsm": "o", "pgd": "s"}
    for name, acc in sweep.accuracy.items():
        label = name.upper() if name != "pgd" else f"PGD-{sweep.settings.get('pgd_steps', '')}"
        ax.plot(sweep.eps, acc, marker=markers.get(name, "^"), label=label)
    ax.axhline(sweep.clean_accuracy, color="gray", ls=":", lw=1, label=f"clean {sweep.clean_accuracy:.3f}")
    ax.set_xlabel(f"eps ({sweep.settings.get('norm', 'linf')}, pixel units)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"Robust accuracy on {sweep.n} images", fontsize=10)
    _save(fig, path)
    plt.close(fig)
    return path
