"""FGSM and 10-step PGD over the Fashion-MNIST test set: convkit against the same attacks written with
PyTorch autograd on the CPU, in one process.

Both sides attack the shipped LeNet-5 (torch gets an exact copy via convkit.io.to_torch), with the
same thread count, in chunks of the same batch size, and do the same work per image: a clean
prediction, the gradient steps, and a prediction of the adversarial images (convkit re-predicts to
decide success; torch does too). PGD runs without random start and without early stopping on both
sides so that the work is identical. Each case is validated first (same adversarial images up to
float32 sign noise, same robust accuracy within 0.5 points), then timed interleaved (convkit, torch,
convkit, ...) and reported as medians and the ratio convkit / torch (< 1: convkit is faster).

    python benchmarks/bench_attacks.py [--threads 2] [--repeats 5] [--n 10000] [--batch-size 500]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the torch twins of the attacks: tests/reference/attacks_torch.py


def load(n: int):
    from convkit import data

    try:
        ds = data.load_fashion_mnist()
        x, y, src = ds.x_test, ds.y_test, f"Fashion-MNIST test set ({ds.source})"
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"bench_attacks: needs the Fashion-MNIST test set: {e}")
    x = data.to_float(x)
    if n:
        x, y = x[:n], y[:n]
    return np.ascontiguousarray(x), np.asarray(y, np.int64), src


def torch_fgsm(R, tm, x, y, eps, bs):
    import torch

    out, preds = [], []
    for s in range(0, x.shape[0], bs):
        xb, yb = x[s:s + bs], y[s:s + bs]
        R.predict(tm, xb)  # clean prediction (the record)
        xa = R.fgsm(tm, xb, yb, eps)
        preds.append(R.predict(tm, xa)[0])
        out.append(xa)
    return torch.cat(out), torch.cat(preds)


def torch_pgd(R, tm, x, y, eps, steps, step, bs):
    import torch

    out, preds = [], []
    for s in range(0, x.shape[0], bs):
        xb, yb = x[s:s + bs], y[s:s + bs]
        R.predict(tm, xb)
        xa = R.pgd(tm, xb, yb, eps, steps, step, xb)
        preds.append(R.predict(tm, xa)[0])
        out.append(xa)
    return torch.cat(out), torch.cat(preds)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="threads for both (default: convkit's default)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per side (median)")
    ap.add_argument("--n", type=int, default=0, help="first N test images (default: all 10,000)")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("bench_attacks needs PyTorch as the side-by-side reference: pip install torch==2.13.0",
              file=sys.stderr)
        return 2
    import convkit
    from convkit import attacks as A
    from convkit import io, models
    from convkit.bench import time_pair
    from reference import attacks_torch as R

    if args.threads:
        convkit.set_num_threads(args.threads)
    nt = convkit.get_num_threads()
    torch.set_num_threads(nt)
    x, y, src = load(args.n)
    model = models.lenet5_fashion_mnist()
    tm = io.to_torch(model)
    am = A.AttackModel(model, batch_size=args.batch_size)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    eps, steps, bs = args.eps, 10, args.batch_size
    step = 2.5 * eps / steps
    print(f"bench_attacks: LeNet-5 (shipped), {src}, n={len(x)}, batch {bs}, eps {eps}, {nt} thread(s), "
          f"torch {torch.__version__}")

    cases = {
        "fgsm": (lambda: A.fgsm(am, x, y, eps=eps), lambda: torch_fgsm(R, tm, tx, ty, eps, bs)),
        "pgd10": (lambda: A.pgd(am, x, y, eps=eps, steps=steps, step_size=step, random_start=False,
                                early_stop=False),
                  lambda: torch_pgd(R, tm, tx, ty, eps, steps, step, bs)),
    }
    rows = []
    for name, (ck, pt) in cases.items():
        # validate: the same attack on both sides
        (xa, res), (ta, tpred) = ck(), pt()
        ta = ta.numpy()
        differ = float(np.mean(np.abs(xa - ta) > 1e-6))
        acc_ck, acc_pt = res.robust_accuracy, float((tpred.numpy() == y).mean())
        limit = 1e-3 if name == "fgsm" else 2e-2  # PGD: 10 steps let a rare sign flip spread within an image
        if differ > limit or abs(acc_ck - acc_pt) > 0.005:
            raise AssertionError(f"{name}: convkit and torch disagree: {differ:.2e} of pixels differ, "
                                 f"robust accuracy {acc_ck:.4f} vs {acc_pt:.4f}")
        tc, tt = time_pair(ck, pt, args.repeats)
        row = {"attack": name, "n": len(x), "threads": nt, "repeats": args.repeats, "convkit_s": tc, "torch_s": tt,
               "ratio": tc / tt, "convkit_images_per_s": len(x) / tc, "torch_images_per_s": len(x) / tt,
               "robust_accuracy_convkit": acc_ck, "robust_accuracy_torch": acc_pt, "pixels_differing": differ}
        rows.append(row)
        print(f"{name:6s} convkit {tc:8.3f} s ({len(x) / tc:8.0f} img/s)  torch {tt:8.3f} s ({len(x) / tt:8.0f} img/s)"
              f"  ratio {tc / tt:5.2f}  robust acc {acc_ck:.4f} vs {acc_pt:.4f}  pixels differing {differ:.1e}",
              flush=True)
    if args.json:
        out = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "source": src, "torch": torch.__version__,
               "cpus": os.cpu_count(), "results": rows}
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, args.json)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
