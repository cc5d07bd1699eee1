"""The AlexNet convolutions' share of the machine's FP32 peak, one pass at a time, with the probe
interleaved: a check of the CPU-speed issue's "conv2-conv5 at >= 85% of the measured peak" that a
shared machine does not skew as much as a single probe at the start of a long run does.

    python benchmarks/conv_peak.py [--threads 1,2] [--repeats 9] [--layers conv2,conv3,conv4,conv5]
                                   [--torch] [--json benchmarks/results/conv_peak.json]

For every layer (batch 32, float32) and pass (forward, backward data, backward weight) each timed
call is followed by a short run of the FMA-throughput probe (`convkit._core._fma_peak`, 12
independent vector FMA chains per thread, about 20 ms); the call's GFLOP/s is divided by the larger
of the probe runs just before and after it, and the median of those ratios is reported, with the
median GFLOP/s. When the host takes cycles away, the probe and the call beside it lose them alike.
With --torch, PyTorch's CPU calls for the same passes on the same arrays are timed the same way,
each after the convkit call of its pair (torch.nn.functional.conv2d, and torch.nn.grad.conv2d_input /
conv2d_weight for the data and weight gradients), so both sides' shares of the peak come from one
method on one host; the ratios against PyTorch are `python -m convkit.bench`'s.

GFLOP/s count the convolution's own multiply-adds, 2 N OC OH OW (C / groups) KH KW, whatever a route
does: on the 3 x 3 layers convkit's default route is Winograd's F(2 x 2, 3 x 3)
(csrc/ops/conv2d_winograd.cpp), which does 1.94 times fewer of them on AlexNet's 13 x 13 outputs, and on
conv2's 5 x 5 Winograd's F(2, 5) along the rows (csrc/ops/conv2d_winograd_rows.cpp, 1.61 times fewer on
27-wide rows), so there the figure is an effective rate (time against the direct convolution's work). Run with
CONVKIT_CONV_WINOGRAD=0 for the rate of the direct sums; the JSON records the CONVKIT_* settings.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

import convkit
import convkit.functional as F
from convkit import _core
from convkit.bench import warn_if_sanitized

# name: C, H (= W), OC, kernel, padding, groups, stride (AlexNet, as in convkit.bench)
LAYERS = {"conv1": (3, 227, 96, 11, 0, 1, 4), "conv2": (96, 27, 256, 5, 2, 2, 1),
          "conv3": (256, 13, 384, 3, 1, 1, 1), "conv4": (384, 13, 384, 3, 1, 2, 1),
          "conv5": (384, 13, 256, 3, 1, 2, 1)}


def inputs(layer, batch=32):
    """Random float32 arrays for an AlexNet layer (a name of LAYERS, or a tuple C, H, OC, kernel,
    padding, groups, stride): x, w, b, dy, the call's keywords and its FLOPs."""
    c, h, oc, k, pad, groups, stride = LAYERS[layer] if isinstance(layer, str) else layer
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, c, h, h), dtype=np.float32)
    w = (rng.standard_normal((oc, c // groups, k, k), dtype=np.float32) * 0.05).astype(np.float32)
    b = rng.standard_normal(oc, dtype=np.float32)
    kw = dict(stride=stride, padding=pad, groups=groups)
    y = F.conv2d(x, w, b, **kw)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    flops = 2.0 * batch * oc * y.shape[2] * y.shape[3] * (c // groups) * k * k
    return x, w, b, dy, kw, flops


def problem(layer, batch=32):
    """An AlexNet layer's three passes as convkit calls, and their FLOPs."""
    x, w, b, dy, kw, flops = inputs(layer, batch)
    passes = {"fwd": lambda: F.conv2d(x, w, b, **kw),
              "bwd_data": lambda: F.conv2d_backward_data(dy, w, x.shape, **kw),
              "bwd_weight": lambda: F.conv2d_backward_weight(x, dy, w.shape, **kw)}
    return passes, flops


def torch_problem(layer, batch=32):
    """The same three passes as PyTorch CPU calls on the same arrays."""
    import torch
    x, w, b, dy, kw, _ = inputs(layer, batch)
    tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))

    def fwd():
        with torch.no_grad():
            return torch.nn.functional.conv2d(tx, tw, tb, **kw)

    return {"fwd": fwd,
            "bwd_data": lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tdy, **kw),
            "bwd_weight": lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tdy, **kw)}


def timed_with_probe(fns, flops, threads, repeats, probe_iters=3_000_000):
    """{side: stats} for calls {side: fn} doing `flops` each, timed in turn, each followed by a probe
    run: a call's GFLOP/s over the larger probe result just before and after it, median (and range)
    over the repeats, in % of the probe."""
    share = {side: [] for side in fns}
    gflops = {side: [] for side in fns}
    before = _core._fma_peak(threads, probe_iters)
    for _ in range(repeats):
        for side, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            after = _core._fma_peak(threads, probe_iters)
            gflops[side].append(flops / dt / 1e9)
            share[side].append(gflops[side][-1] / max(before, after))
            before = after
    return {side: {"pct_of_peak": 100 * statistics.median(share[side]), "gflops": statistics.median(gflops[side]),
                   "pct_min": 100 * min(share[side]), "pct_max": 100 * max(share[side])} for side in fns}


def measure(layer, threads, repeats, batch=32, probe_iters=3_000_000, torch=False):
    """{pass: convkit's median share of the probe (and, with torch=True, PyTorch's under "torch")}."""
    passes, flops = problem(layer, batch)
    sides = {"convkit": passes}
    if torch:
        import torch as _torch
        _torch.set_num_threads(threads)
        sides["torch"] = torch_problem(layer, batch)
    out = {}
    for name in passes:
        fns = {side: p[name] for side, p in sides.items()}  # convkit, then torch, in each round
        got = {side: np.asarray(fn()) for side, fn in fns.items()}  # warm-up: workspace, page faults
        if torch:  # both sides compute the same thing (float32 rounding apart), or nothing is timed
            err = float(np.max(np.abs(got["convkit"] - got["torch"])) / max(1.0, float(np.max(np.abs(got["torch"])))))
            if not err <= 1e-4:
                raise AssertionError(f"{layer} {name}: convkit and torch differ by {err:.2e} (relative to the max)")
        r = timed_with_probe(fns, flops, threads, repeats, probe_iters)
        out[name] = r["convkit"]
        if torch:
            out[name]["torch"] = r["torch"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--layers", default="conv2,conv3,conv4,conv5")
    ap.add_argument("--json", default=None)
    ap.add_argument("--torch", action="store_true", help="time PyTorch's calls beside convkit's")
    args = ap.parse_args(argv)
    layers = args.layers.split(",")
    for name in layers:
        if name not in LAYERS:
            ap.error(f"unknown layer {name!r}; choose from {', '.join(LAYERS)}")
    results = {**build_info(), "machine": platform.processor() or platform.machine(),
               "loadavg_before": os.getloadavg()[0], "repeats": args.repeats, "cases": []}
    if args.torch:
        import torch
        results["torch"] = torch.__version__
    old_threads = convkit.get_num_threads()
    try:
        for th in (int(t) for t in args.threads.split(",")):
            convkit.set_num_threads(th)
            for name in layers:
                r = measure(name, th, args.repeats, torch=args.torch)
                row = "  ".join(f"{p} {v['pct_of_peak']:5.1f}% ({v['gflops']:6.1f} GFLOP/s)"
                                + (f" [torch {v['torch']['pct_of_peak']:5.1f}%]" if "torch" in v else "")
                                for p, v in r.items())
                print(f"{th} thread(s) {name}: {row}", flush=True)
                results["cases"].append({"threads": th, "layer": name, **r})
    finally:
        convkit.set_num_threads(old_threads)
    finish(results, args.json)


def build_info():
    """convkit's version, instruction set and whether the build is sanitized (warned about on stderr)."""
    info = convkit.info()
    return {"convkit": info["version"], "isa": info["cpu_isa"], "sanitized": warn_if_sanitized(),
            "settings": {k: v for k, v in sorted(os.environ.items()) if k.startswith("CONVKIT_")}}


def finish(results, path):
    """The load average after the run into `results`, then `results` as JSON into `path` (if given)."""
    results["loadavg_after"] = os.getloadavg()[0]
    if path:
        with open(path, "w") as f:
            json.dump(results, f, indent=1)
        print("wrote", path)


if __name__ == "__main__":
    main()
