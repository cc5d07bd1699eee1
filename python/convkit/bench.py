"""convkit bench: convkit's CPU kernels against PyTorch's CPU backend, side by side in one process.

Every case is validated first (convkit's output against torch's on the same inputs), then timed with
interleaved samples (convkit, torch, convkit, torch, ...) so that both sides see the same machine
state, and reported as medians: ms, GFLOP/s (convolutions, linear) or GB/s (memory-bound ops), and
the ratio convkit / torch (< 1 means convkit is faster). Problems are named benchdnn-style.

    python -m convkit.bench [--threads 1,2] [--filter conv] [--repeats 15] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field

import numpy as np

import convkit
import convkit.functional as F


@dataclass
class Case:
    name: str           # benchdnn-style problem name
    group: str          # conv, pool, lrn, fc, act, loss, net
    flops: float        # per call (0 for memory-bound ops)
    bytes: float        # bytes moved at least once per call (for GB/s)
    make: callable      # () -> (convkit_fn, torch_fn, check_fn or None)
    tol: float = 1e-4   # relative tolerance of the validation (float32 paths)
    meta: dict = field(default_factory=dict)


def _rng():
    return np.random.default_rng(0)


# ---- cases ----------------------------------------------------------------------------------------

def _conv_case(label, n, c, h, w, oc, k, stride, pad, groups, direction):
    import torch

    rng = _rng()
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = (rng.standard_normal((oc, c // groups, k, k)) / math.sqrt(c // groups * k * k)).astype(np.float32)
    b = rng.standard_normal(oc).astype(np.float32)
    oh = F.conv_out_size(h, k, stride, pad, 1)
    ow = F.conv_out_size(w, k, stride, pad, 1)
    macs = n * oc * oh * ow * (c // groups) * k * k
    name = (f"{direction}:{label} mb{n}ic{c}ih{h}iw{w}_oc{oc}oh{oh}ow{ow}_kh{k}kw{k}_sh{stride}sw{stride}"
            f"_ph{pad}pw{pad}_g{groups}")
    dy = rng.standard_normal((n, oc, oh, ow)).astype(np.float32)
    tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, wt, b, dy))
    tconv = torch.nn.functional.conv2d
    grad_in = torch.nn.grad.conv2d_input
    grad_w = torch.nn.grad.conv2d_weight

    def make():
        if direction == "fwd":
            ck = lambda: F.conv2d(x, wt, b, stride, pad, 1, groups)  # noqa: E731
            pt = lambda: tconv(tx, tw, tb, stride, pad, 1, groups)  # noqa: E731
            return ck, pt, lambda: (ck(), pt().numpy())

        def ck():
            dx = F.conv2d_backward_data(dy, wt, x.shape, stride, pad, 1, groups)
            dw = F.conv2d_backward_weight(x, dy, wt.shape, stride, pad, 1, groups)
            return dx, dw

        def pt():
            dx = grad_in(tx.shape, tw, tdy, stride, pad, 1, groups)
            dw = grad_w(tx, tw.shape, tdy, stride, pad, 1, groups)
            return dx, dw

        def check():
            a, b_ = ck(), pt()
            return np.concatenate([a[0].ravel(), a[1].ravel()]), np.concatenate([b_[0].numpy().ravel(),
                                                                                 b_[1].numpy().ravel()])
        return ck, pt, check

    flops = 2 * macs * (1 if direction == "fwd" else 2)
    return Case(name, "conv", flops, 4 * (x.size + wt.size + n * oc * oh * ow), make, tol=2e-3 if k >= 5 else 1e-3)


def _pool_case(label, n, c, h, w, k, s, direction):
    import torch

    rng = _rng()
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    tx = torch.from_numpy(x)
    y, idx = F.max_pool2d(x, k, s, return_indices=True)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    ty, tidx = torch.nn.functional.max_pool2d(tx, k, s, return_indices=True)
    tdy = torch.from_numpy(dy)
    name = f"{direction}:{label} mb{n}ic{c}ih{h}iw{w}_kh{k}kw{k}_sh{s}sw{s}"

    def make():
        if direction == "fwd":
            ck = lambda: F.max_pool2d(x, k, s, return_indices=True)[0]  # noqa: E731
            pt = lambda: torch.nn.functional.max_pool2d(tx, k, s, return_indices=True)[0]  # noqa: E731
            return ck, pt, lambda: (ck(), pt().numpy())
        ck = lambda: F.max_pool2d_backward(dy, idx, x.shape, k, s)  # noqa: E731
        pt = lambda: torch.ops.aten.max_pool2d_with_indices_backward(tdy, tx, [k, k], [s, s], [0, 0], [1, 1],  # noqa: E731
                                                                      False, tidx)
        return ck, pt, lambda: (ck(), pt().numpy())

    moved = 4 * (x.size + y.size) + (8 * y.size)
    return Case(name, "pool", 0, moved, make, tol=0)


def _lrn_case(label, n, c, h, w, size, direction):
    import torch

    rng = _rng()
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(direction == "bwd")
    name = f"{direction}:{label} mb{n}ic{c}ih{h}iw{w}_ls{size}_a0.0001_b0.75_k2"
    lrn = torch.nn.functional.local_response_norm

    def make():
        if direction == "fwd":
            ck = lambda: F.local_response_norm(x, size, 1e-4, 0.75, 2.0)  # noqa: E731
            pt = lambda: lrn(tx, size, 1e-4, 0.75, 2.0)  # noqa: E731
            return ck, pt, lambda: (ck(), pt().numpy())
        y, scale = F.local_response_norm(x, size, 1e-4, 0.75, 2.0, return_scale=True)
        dy = rng.standard_normal(x.shape).astype(np.float32)
        tdy = torch.from_numpy(dy)
        ty = lrn(tx, size, 1e-4, 0.75, 2.0)
        ck = lambda: F.local_response_norm_backward(x, y, scale, dy, size, 1e-4, 0.75, 2.0)  # noqa: E731

        def pt():  # autograd backward of the already-built graph (forward not timed)
            return torch.autograd.grad(ty, tx, tdy, retain_graph=True)[0]
        return ck, pt, lambda: (ck(), pt().numpy())

    return Case(name, "lrn", 0, 4 * x.size * (2 if direction == "fwd" else 4), make, tol=1e-5)


def _fc_case(label, n, i, o, direction):
    import torch

    rng = _rng()
    x = rng.standard_normal((n, i)).astype(np.float32)
    w = (rng.standard_normal((o, i)) / math.sqrt(i)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    dy = rng.standard_normal((n, o)).astype(np.float32)
    tx, tw, tb, tdy = (torch.from_numpy(a) for a in (x, w, b, dy))
    name = f"{direction}:{label} mb{n}ic{i}oc{o}"

    def make():
        if direction == "fwd":
            ck = lambda: F.linear(x, w, b)  # noqa: E731
            pt = lambda: torch.nn.functional.linear(tx, tw, tb)  # noqa: E731
            return ck, pt, lambda: (ck(), pt().numpy())

        def ck():
            return F.linear_backward_data(dy, w), F.linear_backward_weight(x, dy), F.linear_backward_bias(dy)

        def pt():
            return tdy @ tw, tdy.t() @ tx, tdy.sum(0)

        def check():
            a, b_ = ck(), pt()
            return (np.concatenate([v.ravel() for v in a]), np.concatenate([v.numpy().ravel() for v in b_]))
        return ck, pt, check

    return Case(name, "fc", 2 * n * i * o * (1 if direction == "fwd" else 2), 4 * (w.size + x.size + n * o), make,
                tol=1e-3)


def layer_cases(batches_alexnet=(1, 8, 32), batches_lenet=(64, 256)):
    """The LeNet-5 and AlexNet layer shapes, forward and backward."""
    cases = []
    # AlexNet (lecture layout): conv1 227->55, conv2 groups 2, conv3..5 on 13x13
    alex = [("alexnet:conv1", 3, 227, 96, 11, 4, 0, 1), ("alexnet:conv2", 96, 27, 256, 5, 1, 2, 2),
            ("alexnet:conv3", 256, 13, 384, 3, 1, 1, 1), ("alexnet:conv4", 384, 13, 384, 3, 1, 1, 2),
            ("alexnet:conv5", 384, 13, 256, 3, 1, 1, 2)]
    lenet = [("lenet:conv1", 1, 28, 6, 5, 1, 2, 1), ("lenet:conv2", 6, 14, 16, 5, 1, 0, 1)]
    for n in batches_alexnet:
        for label, c, hw, oc, k, s, p, g in alex:
            for d in ("fwd", "bwd"):
                cases.append(_conv_case(label, n, c, hw, hw, oc, k, s, p, g, d))
        for d in ("fwd", "bwd"):
            cases.append(_pool_case("alexnet:pool1", n, 96, 55, 55, 3, 2, d))
            cases.append(_lrn_case("alexnet:norm1", n, 96, 55, 55, 5, d))
            cases.append(_fc_case("alexnet:fc6", n, 9216, 4096, d))
            cases.append(_fc_case("alexnet:fc7", n, 4096, 4096, d))
    for n in batches_lenet:
        for label, c, hw, oc, k, s, p, g in lenet:
            for d in ("fwd", "bwd"):
                cases.append(_conv_case(label, n, c, hw, hw, oc, k, s, p, g, d))
        for d in ("fwd", "bwd"):
            cases.append(_pool_case("lenet:pool1", n, 6, 28, 28, 2, 2, d))
            cases.append(_fc_case("lenet:fc1", n, 400, 120, d))
    return cases


# ---- timing ---------------------------------------------------------------------------------------

def _validate(case, check):
    got, want = check()
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    scale = max(1.0, float(np.max(np.abs(want))))
    err = float(np.max(np.abs(got - want))) / scale
    if not err <= max(case.tol, 1e-6):
        raise AssertionError(f"{case.name}: convkit differs from torch by {err:.3e} (relative to max |ref|)")
    return err


def time_pair(f, g, repeats: int, min_time: float = 0.0):
    """Interleaved timing: returns (median seconds of f, median seconds of g)."""
    f(), g()  # warm up (allocations, caches, lazy init)
    tf, tg = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        t1 = time.perf_counter()
        g()
        t2 = time.perf_counter()
        tf.append(t1 - t0)
        tg.append(t2 - t1)
    return statistics.median(tf), statistics.median(tg)


def _repeats_for(seconds_per_call: float, repeats: int) -> int:
    # long cases get fewer repeats so a full run stays within minutes; never fewer than 5
    return max(5, min(repeats, int(20.0 / max(seconds_per_call, 1e-6))))


def run(cases, threads=(1, 2), repeats: int = 21, progress=True):
    import torch

    results = []
    for nt in threads:
        convkit.set_num_threads(nt)
        torch.set_num_threads(nt)
        for case in cases:
            ck, pt, check = case.make()
            err = _validate(case, check) if check else None
            t0 = time.perf_counter()
            ck()
            reps = _repeats_for(time.perf_counter() - t0, repeats)
            tc, tt = time_pair(ck, pt, reps)
            row = {"case": case.name, "group": case.group, "threads": nt, "repeats": reps,
                   "convkit_ms": tc * 1e3, "torch_ms": tt * 1e3, "ratio": tc / tt, "max_rel_err": err}
            if case.flops:
                row["convkit_gflops"] = case.flops / tc / 1e9
                row["torch_gflops"] = case.flops / tt / 1e9
            elif case.bytes:
                row["convkit_gbs"] = case.bytes / tc / 1e9
                row["torch_gbs"] = case.bytes / tt / 1e9
            results.append(row)
            if progress:
                print(format_row(row), flush=True)
    convkit.set_num_threads(0)
    return results


def format_row(r) -> str:
    rate = ""
    if "convkit_gflops" in r:
        rate = f"{r['convkit_gflops']:7.1f} vs {r['torch_gflops']:7.1f} GFLOP/s"
    elif "convkit_gbs" in r:
        rate = f"{r['convkit_gbs']:7.1f} vs {r['torch_gbs']:7.1f} GB/s    "
    return (f"{r['threads']}t {r['case'][:78]:78s} {r['convkit_ms']:9.3f} ms {r['torch_ms']:9.3f} ms  "
            f"ratio {r['ratio']:5.2f}  {rate}")


def geomean(xs):
    xs = [x for x in xs if x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def environment():
    import torch

    return {"convkit": convkit.info(), "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="convkit bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--filter", default="", help="only cases whose name contains this")
    ap.add_argument("--repeats", type=int, default=21, help="timed samples per side (median)")
    ap.add_argument("--quick", action="store_true", help="smaller batch sets (AlexNet 8, LeNet 64)")
    ap.add_argument("--json", default="", help="write the results here (default benchmarks/results/cpu.json "
                                               "when run from the repo)")
    args = ap.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("convkit bench needs PyTorch as the side-by-side reference: pip install torch==2.13.0",
              file=sys.stderr)
        return 2
    cases = layer_cases((8,), (64,)) if args.quick else layer_cases()
    cases = [c for c in cases if args.filter in c.name]
    threads = tuple(int(t) for t in args.threads.split(","))
    results = run(cases, threads, args.repeats)
    for nt in threads:
        ratios = [r["ratio"] for r in results if r["threads"] == nt and r["group"] != "net"]
        if ratios:
            print(f"{nt} thread(s): geometric mean ratio {geomean(ratios):.3f} over {len(ratios)} cases; "
                  f"worst {max(ratios):.2f}")
    out = {"environment": environment(), "results": results}
    path = args.json
    if path:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, path)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
