"""A large single-precision matrix product against the machine's FP32 peak, on one thread: convkit's
own GEMM and the BLAS that numpy links (OpenBLAS in the wheels), with the FMA-throughput probe run
beside every call as in conv_peak.py. What a tuned BLAS reaches on this host is the yardstick for
the CPU-speed issue's "conv2-conv5 at >= 85% of the measured peak".

    python benchmarks/sgemm_peak.py [--sizes 1024,1536,384x169x2304] [--repeats 9] [--json FILE]

A size is n (an n x n x n product) or MxNxK (C[M, N] = A[M, K] B[K, N]: 384x169x2304 is AlexNet
conv3's product for one image, 128x729x1200 conv2's for one image and group).

One thread only: the BLAS's worker threads keep spinning after a call, and on a 2-core machine they
would take the probe's cycles (its 2-thread "peak" then reads low and the share high).
"""
from __future__ import annotations

import os

# before numpy loads its BLAS: one thread, so no worker spins beside the probe
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402

import numpy as np  # noqa: E402

from conv_peak import build_info, finish, timed_with_probe  # noqa: E402
from convkit import _core  # noqa: E402


def blas_name():
    """The BLAS numpy was built against, as numpy reports it."""
    try:
        cfg = np.show_config(mode="dicts")
        return cfg["Build Dependencies"]["blas"]["name"]
    except Exception:  # noqa: BLE001 - older numpy: no dicts mode
        return "unknown"


def parse_size(text):
    """"n" -> (n, n, n); "MxNxK" -> (M, N, K)."""
    dims = [int(v) for v in text.lower().split("x")]
    if len(dims) == 1:
        dims = dims * 3
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(f"size {text!r}: expected n or MxNxK with positive values")
    return tuple(dims)


def measure(m, n, k, repeats, probe_iters=3_000_000):
    """{side: median share of the probe and GFLOP/s} for C[m, n] = A[m, k] B[k, n], the two sides in turn."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    c_ck = np.empty((m, n), np.float32)
    c_np = np.empty((m, n), np.float32)
    sides = {"convkit": lambda: _core._gemm(False, False, m, n, k, 1.0, a, k, b, n, 0.0, c_ck, n, 1),
             "numpy_blas": lambda: np.matmul(a, b, out=c_np)}
    for fn in sides.values():
        fn()
    err = float(np.max(np.abs(c_ck - c_np)) / np.max(np.abs(c_np)))
    if not err <= 1e-4:  # the two products agree, or nothing is timed
        raise AssertionError(f"convkit and numpy products differ by {err:.2e} (relative to the max)")
    return timed_with_probe(sides, 2.0 * m * n * k, 1, repeats, probe_iters)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1024,1536,384x169x2304,128x729x1200")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    try:
        sizes = [parse_size(s) for s in args.sizes.split(",")]
    except ValueError as e:
        ap.error(str(e))
    out = {**build_info(), "blas": blas_name(),
           "numpy": np.__version__, "loadavg_before": os.getloadavg()[0], "repeats": args.repeats, "cases": []}
    for m, n, k in sizes:
        r = measure(m, n, k, args.repeats)
        print(f"sgemm {m}x{n}x{k}, 1 thread: " + "  ".join(
            f"{s} {v['pct_of_peak']:5.1f}% ({v['gflops']:5.1f} GFLOP/s, {v['pct_min']:.0f}-{v['pct_max']:.0f}%)"
            for s, v in r.items()), flush=True)
        out["cases"].append({"m": m, "n": n, "k": k, **r})
    finish(out, args.json)


if __name__ == "__main__":
    main()
