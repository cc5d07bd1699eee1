"""`convkit attack METHOD`: run an attack on the shipped Fashion-MNIST LeNet-5 (or a model of yours)
and write pictures plus a report (report.json and report.md) into --out.

    convkit attack fgsm --eps 0.1                       # original / adversarial / difference / 10x difference
    convkit attack pgd --eps 0.05 --steps 20 --norm linf
    convkit attack fooling --target all                 # every image toward every other class
    convkit attack visualize                            # class visualization from noise, one per class
    convkit attack patch --patch-size 8                 # a random 8x8 patch per image
    convkit attack universal-patch --patch-size 8
    convkit attack sweep --data fashion-mnist           # robust accuracy table + curve, full test set
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

METHODS = ("fgsm", "pgd", "fooling", "visualize", "patch", "universal-patch", "sweep")


def add_parser(sub) -> None:
    p = sub.add_parser("attack", help="adversarial attacks (FGSM, PGD, fooling images, patches, eps sweep) with "
                                      "pictures and a report",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("method", choices=METHODS)
    p.add_argument("--model", default="shipped",
                   help="'shipped' (the Fashion-MNIST LeNet-5 inside convkit) or a zoo name with --weights")
    p.add_argument("--weights", default="", help="weights file (npz / safetensors / torch state dict) for --model")
    p.add_argument("--data", default="samples",
                   help="'samples' (shipped test images), 'fashion-mnist' (the full test set, found like "
                        "convkit.data does) or a folder with the Fashion-MNIST IDX files")
    p.add_argument("--n", type=int, default=0, help="use the first N images (default: all for sweep/patches, 16 "
                                                    "for fgsm/pgd/fooling)")
    p.add_argument("--eps", type=float, default=0.1, help="perturbation size in pixel units (default 0.1)")
    p.add_argument("--eps-list", default="0,0.01,0.03,0.05,0.1,0.2,0.3", help="sweep: comma-separated eps values")
    p.add_argument("--norm", default="linf", choices=("linf", "l2"))
    p.add_argument("--steps", type=int, default=0, help="iterations (default: pgd 10, fooling 100, patch 100, "
                                                        "universal 300, visualize 200)")
    p.add_argument("--step-size", type=float, default=None, help="per-step size in pixel units")
    p.add_argument("--target", default=None,
                   help="target class (an int) for a targeted attack; fooling: an int or 'all'")
    p.add_argument("--min-confidence", type=float, default=None,
                   help="fooling: keep going until the target has at least this probability")
    p.add_argument("--patch-size", type=int, default=0, help="patch side in pixels (default: patch 8, "
                                                             "universal-patch 14)")
    p.add_argument("--random-start", action="store_true", help="pgd/sweep: start from a random point of the ball")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--show", type=int, default=4, help="images in the picture")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", default="attack-out", help="output folder (default ./attack-out)")
    p.set_defaults(func=run)


# ---- model and data ---------------------------------------------------------------------------------

def load_model(name: str, weights: str, device: str):
    from .. import models

    if name == "shipped":
        if weights:
            raise ValueError("--weights needs --model NAME (the architecture), e.g. --model lenet5")
        model = models.lenet5_fashion_mnist()
    else:
        model = models.get(name)
        if weights:
            from .. import io

            io.load_weights(model, weights)
    if device != "cpu":
        model.to(device)
    return model.eval()


def class_names():
    try:
        from ..data import FASHION_MNIST_CLASSES

        return list(FASHION_MNIST_CLASSES)
    except ImportError:
        return None


def load_images(data: str, n: int):
    """(x float32 [N, 1, 28, 28] in [0, 1], labels int64 [N], description)."""
    from .. import data as D

    if data == "samples":
        imgs, labels = D.load_samples()
        desc = "shipped sample images"
    else:
        ds = D.load_fashion_mnist(None if data == "fashion-mnist" else data)
        imgs, labels = ds.x_test, ds.y_test
        desc = "Fashion-MNIST test set"
    x = D.to_float(imgs)
    if n:
        if n < 0:
            raise ValueError(f"--n must be >= 1, got {n}")
        x, labels = x[:n], labels[:n]
    return np.ascontiguousarray(x), np.asarray(labels, np.int64), desc


# ---- the command ------------------------------------------------------------------------------------

def _atomic_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def run(args) -> int:
    from . import (AttackModel, class_visualization, evaluate_patch, every_target, fgsm, fooling_images,
                   patch_attack, pgd, robustness_sweep, universal_patch)
    from . import plots

    t0 = time.perf_counter()
    method = args.method
    default_n = {"fgsm": 16, "pgd": 16, "fooling": 16, "visualize": 0}.get(method, 0)
    n = args.n or default_n
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    model = load_model(args.model, args.weights, args.device)
    am = AttackModel(model, bounds=(0.0, 1.0), batch_size=args.batch_size)
    names = class_names()
    os.makedirs(args.out, exist_ok=True)
    report = {"method": method, "model": args.model, "device": args.device,
              "argv": sys.argv[1:], "load_average_start": _loadavg()}
    pictures = []
    targeted = args.target is not None and args.target != "all"
    target = int(args.target) if targeted else None
    md = [f"# convkit attack {method}", ""]

    if method == "visualize":
        steps = args.steps or 200
        k = len(names) if names else 10
        imgs, res = class_visualization(am, list(range(k)), shape=(1, 28, 28), steps=steps,
                                        step_size=args.step_size or 0.1, seed=args.seed, progress=True)
        titles = [f"{names[t] if names else t}\n->{names[p] if names else p} {c:.2f}"
                  for t, p, c in zip(res.target, res.adv_pred, res.adv_conf)]
        pictures.append(plots.plot_images(imgs, os.path.join(args.out, "class_visualization.png"), titles,
                                          ncols=5, suptitle="class visualization (target -> prediction, conf)"))
        report["result"] = res.to_dict(per_image=True)
        md += ["Class visualization from noise:", "", res.summary(), ""]
    else:
        x, labels, desc = load_images(args.data, n)
        report["data"] = desc
        report["n"] = int(x.shape[0])
        common = dict(targeted=targeted, target=target)
        if method == "fgsm":
            x_adv, res = fgsm(am, x, labels, eps=args.eps, **common)
        elif method == "pgd":
            x_adv, res = pgd(am, x, labels, eps=args.eps, norm=args.norm, steps=args.steps or 10,
                             step_size=args.step_size, random_start=args.random_start, seed=args.seed,
                             progress=True, **common)
        elif method == "fooling":
            if args.target in (None, "all"):
                x, labels, tgt = every_target(x, labels, len(names) if names else 10)
            else:
                tgt = np.full(x.shape[0], int(args.target), np.int64)
            x_adv, res = fooling_images(am, x, tgt, steps=args.steps or 100, step_size=args.step_size or 0.2,
                                        min_confidence=args.min_confidence, labels=labels, progress=True)
        elif method == "patch":
            x_adv, res = patch_attack(am, x, labels, size=args.patch_size or 8, steps=args.steps or 100,
                                      step_size=args.step_size or 0.05, seed=args.seed, progress=True, **common)
        elif method == "universal-patch":
            # optimize on the first half, then paste at random places on the second half (held out)
            half = x.shape[0] // 2
            if half < 1:
                raise ValueError("universal-patch needs at least 2 images (--n 2 or more)")
            _, fit = universal_patch(am, x[:half], labels[:half], size=args.patch_size or 14,
                                     steps=args.steps or 300, step_size=args.step_size or 0.05, seed=args.seed,
                                     progress=True, **({} if not targeted else {"targeted": True,
                                                                                 "target": target}))
            x, labels = x[half:], labels[half:]
            x_adv, res = evaluate_patch(am, x, labels, fit.extras["patch"], seed=args.seed + 1, **common)
            report["fit"] = fit.to_dict()
            md += [f"Universal patch optimized on {half} images (success there {fit.success_rate:.3f}), "
                   f"evaluated on {x.shape[0]} other images at random places:", ""]
            pictures.append(plots.plot_images(res.extras["patch"][None],
                                              os.path.join(args.out, "universal-patch-alone.png"),
                                              ["universal patch"], ncols=1))
        else:  # sweep
            eps_list = [float(e) for e in args.eps_list.split(",") if e.strip()]
            sw = robustness_sweep(am, x, labels, eps_list, pgd_steps=args.steps or 10,
                                  random_start=args.random_start, seed=args.seed, progress=True)
            pictures.append(plots.plot_robustness(sw, os.path.join(args.out, "robustness.png"),
                                                  title=f"LeNet-5 robust accuracy, {desc}, n={sw.n}"))
            report["sweep"] = sw.to_dict()
            md += [f"Robust accuracy, {desc} (n = {sw.n}); clean accuracy {sw.clean_accuracy:.4f}. "
                   f"PGD: {sw.settings['pgd_steps']} steps of {sw.settings['pgd_step_size']}, "
                   f"random start {sw.settings['random_start']}.", "", sw.table(), ""]
            res = None
        if res is not None:
            show = _pick(res, args.show, stride=9 if method == "fooling" and args.target in (None, "all") else 1)
            pictures.append(plots.plot_adversarial(x, x_adv, res, os.path.join(args.out, f"{method}.png"),
                                                   class_names=names, indices=show))
            report["result"] = res.to_dict(per_image=x.shape[0] <= 1000)
            md += [f"Data: {desc}", "", "```", res.summary(), "```", ""]
    report["pictures"] = [os.path.basename(p) for p in pictures]
    report["seconds"] = time.perf_counter() - t0
    report["load_average_end"] = _loadavg()
    md += [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in pictures]
    _atomic_text(os.path.join(args.out, "report.json"), json.dumps(report, indent=1))
    _atomic_text(os.path.join(args.out, "report.md"), "\n".join(md) + "\n")
    print("\n".join(line for line in md if not line.startswith("![")))
    print(f"wrote {', '.join(pictures + [os.path.join(args.out, 'report.json'), os.path.join(args.out, 'report.md')])}"
          f" in {report['seconds']:.1f} s", file=sys.stderr)
    return 0


def _loadavg():
    """(1, 5, 15)-minute load averages, so timings in a report can be judged; None where unavailable."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _pick(res, k: int, stride: int = 1):
    """Up to k images to show: real successes first (fooled images the model had right, or targeted
    hits), then other successes, then the rest. stride > 1 (fooling: 9 targets per image) shows image
    i with its (i mod stride)-th target, so that the rows show different images."""
    k = max(1, k)
    if stride > 1:
        rows = [stride * i + (i % stride) for i in range(k) if stride * i + (i % stride) < len(res)]
        if rows:
            return rows
    real = res.success.copy()
    if not res.targeted and res.labels is not None:
        real &= res.orig_pred == res.labels
    order = np.concatenate([np.flatnonzero(real), np.flatnonzero(res.success & ~real), np.flatnonzero(~res.success)])
    return list(order[:k])
