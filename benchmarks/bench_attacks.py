"""FGSM and 10-step PGD over the Fashion-MNIST test set: convkit against the same attacks written with
PyTorch autograd on the CPU, in one process.

Both sides attack the shipped LeNet-5 (torch gets an exact copy via convkit.io.to_torch), with the
same thread count, in chunks of the same batch size, and do the same work per image: a clean
prediction, the gradient steps, and a prediction of the adversarial images (convkit re-predicts to
decide success; torch does too). PGD runs without random start and without early stopping on both
sides so that the work is identical. Each case is validated first against the same attack in
float64 (torch autograd on a float64 copy, the first --validate images, 2,000 by default): convkit's float32 images must take
the float64 steps (FGSM: all but 1e-4 of the pixels; PGD: robust accuracy within 0.5 points). Torch's
own float32 result is reported beside it: it computes d(-log p_c)/dz_c as p_c - 1, which is rounding
noise for confidently classified images, so its FGSM moves those at random (convkit computes 1 - p_c
as the sum of the other probabilities). Then both are timed interleaved (convkit, torch, convkit, ...)
and reported as medians and the ratio convkit / torch (< 1: convkit is faster), for the wall time and
for the process CPU time.

Both thread counts in --threads (default 1,2) are timed; the 1-minute load average is recorded before
and after each case (the machine may be shared: a high load skews both sides).

    python benchmarks/bench_attacks.py [--threads 1,2] [--repeats 5] [--n 10000] [--batch-size 500]
                                       [--json benchmarks/results/attacks_speed.json]
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


def time_pair_cpu(f, g, repeats, warm=None):
    """Interleaved (f, g, f, g, ...) after one warm-up call each (of `warm`'s pair when given: the same
    attacks on one batch, enough to allocate the workspaces); medians of the wall seconds and of the
    process CPU seconds (all threads) of each. Under a high load average the wall time includes waiting
    for a core; with one thread the CPU time is the steadier measure of the work done."""
    import statistics

    for fn in (warm or (f, g)):
        fn()
    wf, wg, cf, cg = [], [], [], []
    for _ in range(repeats):
        for fn, w, c in ((f, wf, cf), (g, wg, cg)):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            w.append(time.perf_counter() - t0)
            c.append(time.process_time() - c0)
    med = statistics.median
    return med(wf), med(wg), med(cf), med(cg)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts, each used for both sides")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per side (median)")
    ap.add_argument("--n", type=int, default=0, help="first N test images (default: all 10,000)")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--json", default="", help="also write the results here (rewritten after every row)")
    ap.add_argument("--attacks", default="fgsm,pgd10", help="which of fgsm,pgd10 to run")
    ap.add_argument("--validate", type=int, default=2000, help="validate on the first N images")
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
    from reference import attacks_torch as R

    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    if not threads or min(threads) < 1:
        raise SystemExit(f"--threads must list positive thread counts, got {args.threads!r}")
    x, y, src = load(args.n)
    model = models.lenet5_fashion_mnist()
    tm = io.to_torch(model)
    am = A.AttackModel(model, batch_size=args.batch_size)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    eps, steps, bs = args.eps, 10, args.batch_size
    step = 2.5 * eps / steps
    load_start = list(os.getloadavg())
    print(f"bench_attacks: LeNet-5 (shipped), {src}, n={len(x)}, batch {bs}, eps {eps}, threads {threads}, "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")

    cases = {
        "fgsm": (lambda: A.fgsm(am, x, y, eps=eps), lambda: torch_fgsm(R, tm, tx, ty, eps, bs)),
        "pgd10": (lambda: A.pgd(am, x, y, eps=eps, steps=steps, step_size=step, random_start=False,
                                early_stop=False),
                  lambda: torch_pgd(R, tm, tx, ty, eps, steps, step, bs)),
    }
    chosen = [a.strip() for a in args.attacks.split(",") if a.strip()]
    if not chosen or any(a not in cases for a in chosen):
        raise SystemExit(f"--attacks must list some of {list(cases)}, got {args.attacks!r}")
    cases = {a: cases[a] for a in chosen}
    # the float64 truth for validation
    v = min(len(x), args.validate)
    tm64 = io.to_torch(models.lenet5_fashion_mnist(dtype=np.float64))
    x64, yv = torch.from_numpy(x[:v].astype(np.float64)), torch.from_numpy(y[:v])
    xv, tv = x[:v], tx[:v]
    small = {"fgsm": (lambda: A.fgsm(am, xv, y[:v], eps=eps), lambda: torch_fgsm(R, tm, tv, yv, eps, bs)),
             "pgd10": (lambda: A.pgd(am, xv, y[:v], eps=eps, steps=steps, step_size=step, random_start=False,
                                     early_stop=False),
                       lambda: torch_pgd(R, tm, tv, yv, eps, steps, step, bs))}
    xw, tw, yw = x[:bs], tx[:bs], ty[:bs]
    warm = {"fgsm": (lambda: A.fgsm(am, xw, y[:bs], eps=eps), lambda: torch_fgsm(R, tm, tw, yw, eps, bs)),
            "pgd10": (lambda: A.pgd(am, xw, y[:bs], eps=eps, steps=steps, step_size=step, random_start=False,
                                    early_stop=False),
                      lambda: torch_pgd(R, tm, tw, yw, eps, steps, step, bs))}
    truth = {"fgsm": lambda: torch_fgsm(R, tm64, x64, yv, eps, bs),
             "pgd10": lambda: torch_pgd(R, tm64, x64, yv, eps, steps, step, bs)}
    # validate once (the images do not depend on the thread count: checked by comparing the runs)
    checks = {}
    for name in cases:
        (xa, res), (ta, tpred) = small[name][0](), small[name][1]()
        t64, t64pred = truth[name]()
        acc_ck_v, acc_64 = float((res.adv_pred[:v] == y[:v]).mean()), float((t64pred.numpy() == y[:v]).mean())
        differ = float(np.mean(np.abs(xa[:v] - t64.numpy()) > 1.2e-7))
        differ_torch = float(np.mean(np.abs(ta.numpy()[:v] - t64.numpy()) > 1.2e-7))
        if (name == "fgsm" and differ > 1e-4) or abs(acc_ck_v - acc_64) > 0.005:
            raise AssertionError(f"{name}: convkit differs from the float64 attack: {differ:.2e} of pixels, "
                                 f"robust accuracy {acc_ck_v:.4f} vs {acc_64:.4f} on the first {v} images")
        checks[name] = {"robust_accuracy_convkit_float32": res.robust_accuracy,
                        "robust_accuracy_torch_float32": float((tpred.numpy() == y[:v]).mean()),
                        "validation_images": v, "robust_accuracy_float64": acc_64,
                        "robust_accuracy_convkit_on_validation_images": acc_ck_v,
                        "pixels_differing_from_float64_convkit": differ,
                        "pixels_differing_from_float64_torch": differ_torch}
        print(f"{name:6s} robust accuracy on the first {v} images: convkit {res.robust_accuracy:.4f}, torch float32 "
              f"{checks[name]['robust_accuracy_torch_float32']:.4f}, float64 {acc_64:.4f}; pixels off the float64 attack: convkit {differ:.1e}, torch float32 "
              f"{differ_torch:.1e}", flush=True)
    def write():
        if not args.json:
            return
        out = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "source": src, "torch": torch.__version__,
               "command": "python benchmarks/bench_attacks.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "batch_size": bs, "eps": eps, "pgd": {"steps": steps, "step_size": step, "random_start": False,
                                                     "early_stop": False},
               "cpus": os.cpu_count(), "threads": threads, "load_average_at_start": load_start,
               "results": rows}
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, args.json)
        print(f"wrote {args.json}")

    rows = []
    for nt in threads:
        convkit.set_num_threads(nt)
        torch.set_num_threads(nt)
        for name, (ck, pt) in cases.items():
            load0 = os.getloadavg()[0]
            tc, tt, cc, ct = time_pair_cpu(ck, pt, args.repeats, warm[name])
            load1 = os.getloadavg()[0]
            row = {"attack": name, "n": len(x), "threads": nt, "repeats": args.repeats, "convkit_s": tc,
                   "torch_s": tt, "ratio": tc / tt, "convkit_cpu_s": cc, "torch_cpu_s": ct, "cpu_ratio": cc / ct,
                   "convkit_images_per_s": len(x) / tc,
                   "torch_images_per_s": len(x) / tt, "load_average_1min_before_after": [load0, load1],
                   **checks[name]}
            rows.append(row)
            write()
            print(f"{name:6s} {nt} thread(s): convkit {tc:8.3f} s ({len(x) / tc:7.0f} img/s)  torch {tt:8.3f} s "
                  f"({len(x) / tt:7.0f} img/s)  ratio {tc / tt:5.2f}; CPU seconds {cc:.3f} vs {ct:.3f}, ratio "
                  f"{cc / ct:5.2f}  (load {load0:.1f} -> {load1:.1f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
