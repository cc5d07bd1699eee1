"""Occlusion and saliency: convkit against Captum on a PyTorch copy of the same LeNet-5, side by side.

    python benchmarks/bench_analysis.py [--repeats 7] [--json out.json]

Needs torch and captum (benchmark-only extras: pip install captum). Problems (issue 6):
  occlusion of 100 images, 8x8 window, stride 2, baseline 0, drop of the target class probability;
  saliency of 1,000 images: max over channels of |d logit_target / d pixel|.
Both sides get the same weights, the same images, the same targets (the predicted classes) and the
same thread count. Each problem is validated first (convkit's maps against Captum's), then timed
with interleaved samples (convkit, captum, convkit, ...) after a warm-up; the medians and the ratio
convkit / captum (< 1: convkit is faster) are printed. Captum's Occlusion evaluates
`perturbations_per_eval` occluded copies per image per forward pass (default 1); the benchmark
tries several values and times Captum with its fastest, so the comparison is against Captum at its best.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np

import convkit
from convkit import analysis as A


def load_model_and_images(n):
    import convkit.data as D
    import convkit.models as M
    try:
        model, what = M.lenet5_fashion_mnist(), "shipped Fashion-MNIST LeNet-5"
    except FileNotFoundError:
        model, what = M.lenet5(seed=0).eval(), "LeNet-5 (random weights: the shipped ones are missing)"
    try:
        x = D.to_float(D.load_fashion_mnist().x_test[:n])
        src = "Fashion-MNIST test images"
    except (FileNotFoundError, D.DataError):
        try:
            x = D.to_float(D.load_samples()[0])
            src = "shipped sample images"
        except FileNotFoundError:
            x, src = np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32), "random images"
        x = np.ascontiguousarray(np.resize(x, (n, 1, 28, 28)))
    return model, what, x, src


def torch_copy(model):
    """The same LeNet-5 in PyTorch, with convkit's weights (and its input standardization, if any)."""
    import torch

    class Standardize(torch.nn.Module):
        def __init__(self, mean, std):
            super().__init__()
            self.register_buffer("mean", torch.tensor(np.asarray(mean, np.float32)).reshape(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(np.asarray(std, np.float32)).reshape(1, -1, 1, 1))

        def forward(self, x):
            return (x - self.mean) / self.std

    tm = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                             torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                             torch.nn.Linear(400, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(),
                             torch.nn.Linear(84, 10))
    with torch.no_grad():
        for name, i in (("conv1", 0), ("conv2", 3), ("fc1", 7), ("fc2", 9), ("fc3", 11)):
            tm[i].weight.copy_(torch.from_numpy(convkit.to_numpy(model[name].weight.data)))
            tm[i].bias.copy_(torch.from_numpy(convkit.to_numpy(model[name].bias.data)))
    if "normalize" in model.names:
        tm = torch.nn.Sequential(Standardize(model["normalize"].mean, model["normalize"].std), *tm)
    return tm.eval()


def interleaved(fns, repeats):
    """Median seconds of each fn, sampled in turn so that all see the same machine state."""
    for f in fns:  # warm-up
        f()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t = time.perf_counter()
            f()
            times[i].append(time.perf_counter() - t)
    return [statistics.median(t) for t in times], times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    try:
        import torch
        from captum.attr import Occlusion, Saliency
    except ImportError as e:
        print(f"bench_analysis: needs torch and captum ({e}); pip install captum", file=sys.stderr)
        return 2
    threads = convkit.get_num_threads()
    torch.set_num_threads(threads)
    model, what, x_all, src = load_model_and_images(1000)
    tm = torch_copy(model)
    with convkit.nn.no_grad():
        target = np.asarray(model(x_all)).argmax(1)
    print(f"bench_analysis: {what} on {src}; convkit {convkit.__version__}, torch {torch.__version__}, "
          f"captum {__import__('captum').__version__}; {threads} threads each; "
          f"{platform.processor() or platform.machine()}")
    results = []

    # ---- occlusion: 100 images, 8x8 window, stride 2 ---------------------------------------------
    x = np.ascontiguousarray(x_all[:100])
    t = target[:100]
    tx, tt = torch.from_numpy(x), torch.from_numpy(t)
    prob = Occlusion(lambda inp: torch.softmax(tm(inp), dim=1))

    def ck_occ():
        return A.occlusion(model, x, t, window=8, stride=2, baseline=0.0, progress=False)

    def cap_occ(ppe):
        with torch.no_grad():
            return prob.attribute(tx, sliding_window_shapes=(1, 8, 8), strides=(1, 2, 2), target=tt, baselines=0.0,
                                  perturbations_per_eval=ppe)
    ours = ck_occ()
    best_ppe, best_t, err = None, None, 0.0
    for ppe in (1, 11, 40, 121):  # 121 = every window of an image in one pass
        t0 = time.perf_counter()
        theirs = cap_occ(ppe).numpy()[:, 0]
        dt = time.perf_counter() - t0
        err = max(err, float(np.max(np.abs(ours - theirs))))
        # float32 on both sides: softmax probabilities differ by ~1e-6 at most
        if err > 1e-4:
            print(f"VALIDATION FAILED: occlusion max |convkit - captum| = {err:.3e}", file=sys.stderr)
            return 1
        if best_t is None or dt < best_t:
            best_ppe, best_t = ppe, dt
    nwin = 11 * 11
    (m_ck, m_cap), _ = interleaved([ck_occ, lambda: cap_occ(best_ppe)], args.repeats)
    results.append({"name": "occlusion:lenet mb100ic1ih28iw28_win8x8_st2_windows121", "convkit_ms": m_ck * 1e3,
                    "captum_ms": m_cap * 1e3, "ratio": m_ck / m_cap, "forwards": 100 * (nwin + 1),
                    "captum_perturbations_per_eval": best_ppe, "validated_max_abs_diff": err})

    # ---- saliency: 1,000 images ---------------------------------------------------------------------
    tx_all, tt_all = torch.from_numpy(x_all), torch.from_numpy(target)
    sal = Saliency(tm)

    def ck_sal():
        return A.saliency(model, x_all, target, progress=False)

    def cap_sal():
        inp = tx_all.clone().requires_grad_(True)
        return sal.attribute(inp, target=tt_all, abs=True).amax(dim=1)
    err = float(np.max(np.abs(ck_sal() - cap_sal().numpy())))
    scale = float(np.max(np.abs(cap_sal().numpy())))
    if err > 1e-4 * max(1.0, scale):  # float32 gradients of a ~1e2-term sum: ~1e-6 relative
        print(f"VALIDATION FAILED: saliency max |convkit - captum| = {err:.3e}", file=sys.stderr)
        return 1
    (m_ck, m_cap), _ = interleaved([ck_sal, cap_sal], args.repeats)
    results.append({"name": "saliency:lenet mb1000ic1ih28iw28", "convkit_ms": m_ck * 1e3, "captum_ms": m_cap * 1e3,
                    "ratio": m_ck / m_cap, "validated_max_abs_diff": err})

    print(f"{'problem':<58} {'convkit ms':>11} {'captum ms':>11} {'ratio':>7}")
    for r in results:
        ppe = r.get("captum_perturbations_per_eval")
        extra = f"  (captum perturbations_per_eval={ppe})" if ppe is not None else ""
        print(f"{r['name']:<58} {r['convkit_ms']:>11.1f} {r['captum_ms']:>11.1f} {r['ratio']:>7.3f}{extra}")
    print(f"medians of {args.repeats} interleaved samples; ratio = convkit / captum (< 1: convkit is faster)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": threads, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
