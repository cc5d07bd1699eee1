"""One kernel route against another on the AlexNet convolutions, in one process, interleaved: the A/B
timings behind the README's "what changed" ratios.

    python benchmarks/route_ab.py CONVKIT_GEMM_NARROW 0 1 [--layers conv2,conv3] [--passes fwd,bwd_data]
                                  [--threads 1] [--repeats 15] [--batch 32]

--layers takes AlexNet's layer names or other layers as C:H:OC:K:PAD:GROUPS:STRIDE (H = W, a K x K
kernel), e.g. --layers 64:56:64:3:1:1:1,32:28:64:7:3:1:1 --batch 8.

The environment variable (one of the run-time route switches the kernels read on every call:
CONVKIT_GEMM_NARROW, CONVKIT_CONV_FUSED, CONVKIT_CONV_BWD_AS_FWD, CONVKIT_CONV_INDIRECT,
CONVKIT_CONV_WGRAD_TAPS) is set to value A, then B, before each sample, so both sides see the same host;
each sample is a warm call (one untimed call first).
Prints the median time of each side and the median of the per-pair ratios B / A (below 1: B is
faster). convkit only; `python -m convkit.bench` compares with PyTorch.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import convkit
from conv_peak import LAYERS, problem


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("var", help="the environment variable to switch")
    ap.add_argument("a", help="value A (the baseline)")
    ap.add_argument("b", help="value B")
    ap.add_argument("--layers", default="conv2,conv3,conv4,conv5")
    ap.add_argument("--passes", default="fwd,bwd_data,bwd_weight")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args(argv)
    if not args.var.startswith("CONVKIT_"):
        ap.error(f"var must be one of convkit's CONVKIT_* switches, got {args.var!r}")
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    convkit.set_num_threads(args.threads)
    old = os.environ.get(args.var)
    try:
        for layer in args.layers.split(","):
            if layer not in LAYERS:
                try:
                    spec = tuple(int(v) for v in layer.split(":"))
                except ValueError:
                    spec = ()
                if len(spec) != 7 or min(spec) < 0 or min(spec[:4]) < 1 or spec[5] < 1 or spec[6] < 1:
                    ap.error(f"unknown layer {layer!r}; choose from {', '.join(LAYERS)} or give C:H:OC:K:PAD:GROUPS:STRIDE")
                layer = spec
            passes, flops = problem(layer, args.batch)
            for name in args.passes.split(","):
                if name not in passes:
                    ap.error(f"unknown pass {name!r}; choose from {', '.join(passes)}")
                fn, times = passes[name], {args.a: [], args.b: []}
                for _ in range(args.repeats):
                    for value in (args.a, args.b):
                        os.environ[args.var] = value
                        fn()
                        t0 = time.perf_counter()
                        fn()
                        times[value].append(time.perf_counter() - t0)
                ta, tb = np.array(times[args.a]), np.array(times[args.b])
                label = layer if isinstance(layer, str) else ":".join(map(str, layer))
                print(f"{args.threads}t {label} {name}: {args.var}={args.a} {1e3 * np.median(ta):.1f} ms "
                      f"({flops / np.median(ta) / 1e9:.0f} GFLOP/s)  {args.var}={args.b} {1e3 * np.median(tb):.1f} ms "
                      f"({flops / np.median(tb) / 1e9:.0f} GFLOP/s)  ratio B/A {np.median(tb / ta):.3f}", flush=True)
    finally:
        if old is None:
            os.environ.pop(args.var, None)
        else:
            os.environ[args.var] = old


if __name__ == "__main__":
    main()
