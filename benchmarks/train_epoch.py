"""One LeNet-5 training epoch on Fashion-MNIST (60,000 images, batch 64, Adam), convkit vs PyTorch on
the CPU with the same thread count, each in its own process (so peak memory is each one's own).

    python benchmarks/train_epoch.py --threads 2            # full epoch, both, then the ratio
    python benchmarks/train_epoch.py --batches 200          # a shorter run

Validates first: both start from the same weights and see the same batches; the losses of the first
steps must agree (float32, to 1e-4) before anything is timed. Reports seconds per epoch, ms per
batch, images/s, and peak resident memory (ru_maxrss of the child process, and its growth over the
process after imports and data loading).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _data():
    import convkit.data as D
    ds = D.load_fashion_mnist()
    return D.to_float(ds.x_train), ds.y_train


def child(which: str, threads: int, batches: int | None, validate: int) -> dict:
    import convkit
    import convkit.models as M
    convkit.set_num_threads(threads)
    x, y = _data()
    model = M.lenet5(seed=0)
    order = np.random.default_rng(0).permutation(len(y))
    nb = -(-len(y) // 64) if batches is None else batches
    idx = [order[i * 64:(i + 1) * 64] for i in range(nb)]
    losses = []
    if which == "convkit":
        import convkit.nn as nn
        import convkit.optim as optim
        opt = optim.Adam(model, lr=1e-3)

        def step(xb, yb):
            logits = model(xb)
            loss, d = nn.cross_entropy(logits, yb)
            model.zero_grad()
            model.backward(d, input_grad=False)
            opt.step()
            return loss
        batches_ = [(np.ascontiguousarray(x[b]), y[b]) for b in idx]
    else:
        import torch
        from convkit.io import to_torch
        torch.set_num_threads(threads)
        tm = to_torch(model)
        opt = torch.optim.Adam(tm.parameters(), lr=1e-3)

        def step(xb, yb):
            loss = torch.nn.functional.cross_entropy(tm(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return float(loss)
        batches_ = [(torch.from_numpy(np.ascontiguousarray(x[b])), torch.from_numpy(y[b])) for b in idx]
    base = _rss_mb()
    for xb, yb in batches_[:validate]:
        losses.append(step(xb, yb))
    t0 = time.perf_counter()
    for xb, yb in batches_[validate:]:
        step(xb, yb)
    dt = time.perf_counter() - t0
    n = len(batches_) - validate
    return {"which": which, "threads": threads, "batches": n, "seconds": dt, "ms_per_batch": 1e3 * dt / n,
            "images_per_s": sum(len(b[1]) for b in batches_[validate:]) / dt, "first_losses": losses,
            "peak_rss_mb": _rss_mb(), "rss_before_training_mb": base}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--batches", type=int, default=None, help="timed batches (default: one full epoch)")
    p.add_argument("--validate", type=int, default=5, help="untimed first steps whose losses are compared")
    p.add_argument("--child", choices=["convkit", "torch"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.threads, None if a.batches is None else a.batches + a.validate,
                               a.validate)))
        return 0
    res = {}
    for which in ("convkit", "torch"):
        cmd = [sys.executable, __file__, "--child", which, "--threads", str(a.threads), "--validate", str(a.validate)]
        if a.batches:
            cmd += ["--batches", str(a.batches)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        res[which] = json.loads(out.strip().splitlines()[-1])
    c, t = res["convkit"], res["torch"]
    diff = np.max(np.abs(np.array(c["first_losses"]) - np.array(t["first_losses"])))
    if not diff <= 1e-4:
        print(f"VALIDATION FAILED: first losses differ by {diff:.3e}: {c['first_losses']} vs {t['first_losses']}")
        return 1
    print(f"validated: the first {a.validate} losses agree to {diff:.1e}")
    print(f"lenet5 training, Fashion-MNIST, batch 64, Adam, {a.threads} threads, {c['batches']} batches timed")
    print(f"{'':10s} {'s/epoch':>9s} {'ms/batch':>9s} {'images/s':>9s} {'peak RSS MB':>12s} {'growth MB':>10s}")
    for r in (c, t):
        print(f"{r['which']:10s} {r['seconds']:9.2f} {r['ms_per_batch']:9.2f} {r['images_per_s']:9.0f} "
              f"{r['peak_rss_mb']:12.0f} {r['peak_rss_mb'] - r['rss_before_training_mb']:10.0f}")
    print(f"convkit / torch time: {c['seconds'] / t['seconds']:.2f}  (< 1 means convkit is faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
