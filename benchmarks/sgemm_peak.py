"""A large single-precision matrix product against the machine's FP32 peak, on one thread: convkit's
own GEMM and the BLAS that numpy links (OpenBLAS in the wheels), with the FMA-throughput probe run
beside every call as in conv_peak.py. What a tuned BLAS reaches on this host is the yardstick for
the CPU-speed issue's "conv2-conv5 at >= 85% of the measured peak".

    python benchmarks/sgemm_peak.py [--sizes 1024,1536] [--repeats 9] [--json FILE]

One thread only: the BLAS's worker threads keep spinning after a call, and on a 2-core machine they
would take the probe's cycles (its 2-thread "peak" then reads low and the share high).
"""
from __future__ import annotations

import os

# before numpy loads its BLAS: one thread, so no worker spins beside the probe
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402

import convkit  # noqa: E402
from conv_peak import timed_with_probe  # noqa: E402
from convkit import _core  # noqa: E402


def blas_name():
    """The BLAS numpy was built against, as numpy reports it."""
    try:
        cfg = np.show_config(mode="dicts")
        return cfg["Build Dependencies"]["blas"]["name"]
    except Exception:  # noqa: BLE001 - older numpy: no dicts mode
        return "unknown"


def measure(n, repeats, probe_iters=3_000_000):
    """{side: median share of the probe and GFLOP/s} for C = A B, n x n x n, the two sides in turn."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c_ck = np.empty((n, n), np.float32)
    c_np = np.empty((n, n), np.float32)
    sides = {"convkit": lambda: _core._gemm(False, False, n, n, n, 1.0, a, n, b, n, 0.0, c_ck, n, 1),
             "numpy_blas": lambda: np.matmul(a, b, out=c_np)}
    for fn in sides.values():
        fn()
    err = float(np.max(np.abs(c_ck - c_np)) / np.max(np.abs(c_np)))
    if not err <= 1e-4:  # the two products agree, or nothing is timed
        raise AssertionError(f"convkit and numpy products differ by {err:.2e} (relative to the max)")
    return timed_with_probe(sides, 2.0 * n ** 3, 1, repeats, probe_iters)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1024,1536")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(s < 1 for s in sizes):
        ap.error("sizes must be positive")
    out = {"convkit": convkit.__version__, "isa": convkit.info()["cpu_isa"], "blas": blas_name(),
           "numpy": np.__version__, "loadavg_before": os.getloadavg()[0], "repeats": args.repeats, "cases": []}
    for n in sizes:
        r = measure(n, args.repeats)
        print(f"sgemm {n}^3, 1 thread: " + "  ".join(
            f"{s} {v['pct_of_peak']:5.1f}% ({v['gflops']:5.1f} GFLOP/s, {v['pct_min']:.0f}-{v['pct_max']:.0f}%)"
            for s, v in r.items()), flush=True)
        out["cases"].append({"n": n, **r})
    out["loadavg_after"] = os.getloadavg()[0]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        print("wrote", args.json)


if __name__ == "__main__":
    main()
