"""convkit bench: convkit's CPU kernels against PyTorch's CPU backend, side by side in one process.

Every case is validated first (convkit's output against torch's on the same inputs), then timed with
interleaved samples (convkit, torch, convkit, torch, ...) so that both sides see the same machine
state, and reported as medians: ms, GFLOP/s (convolutions, linear) or GB/s (memory-bound ops), and
the ratio convkit / torch (< 1 means convkit is faster): the median of the per-pair ratios (each pair
one convkit and one torch sample back to back; the JSON also keeps the ratio of the two medians).
Problems are named benchdnn-style.

Besides the single layers: both whole networks (AlexNet as in the lecture, LeNet-5) forward and
forward+backward (eval mode, so dropout is off on both sides; parameter gradients included, no
gradient to the input), a LeNet-5 training epoch on Fashion-MNIST (60,000 images, batch 64, SGD step
included; --quick times a fixed number of steps and extrapolates to the epoch, and says so), and the
machine's measured FP32 peak (an in-tree FMA-throughput loop, best of several runs, per thread count)
so that every convolution also prints its % of that peak (measured before and after the cases; the
best of the two is used in the summary and the JSON; a convolution's GFLOP/s count its own
multiply-adds whatever the route, so on the 3 x 3 layers and AlexNet conv2's 5 x 5, which convkit runs
through Winograd (F(2 x 2, 3 x 3); F(2, 5) along the rows) with fewer of them, they are an effective rate). The load average is recorded with the
results: on a shared machine the numbers are only as good as the quiet they were measured in.

    python -m convkit.bench [--quick] [--threads 1,2] [--filter conv] [--repeats 15] [--json out.json]
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


def _net_case(arch, n, direction):
    import torch

    import convkit.models as M
    import convkit.nn as nn
    from convkit.io import to_torch

    model = (M.alexnet(seed=0) if arch == "alexnet" else M.lenet5(seed=0)).eval()
    tm = to_torch(model).eval()
    rng = _rng()
    x = rng.standard_normal((n,) + tuple(model.input_shape)).astype(np.float32)
    tx = torch.from_numpy(x)
    out_shape = model.output_shape(x.shape)
    dy = rng.standard_normal(out_shape).astype(np.float32)
    tdy = torch.from_numpy(dy)
    name = f"{direction}:{arch} mb{n} (whole network, eval mode)"
    macs = model.macs(x.shape)

    def make():
        if direction == "fwd":
            def ck():
                with nn.no_grad():
                    return model(x)

            def pt():
                with torch.no_grad():
                    return tm(tx)
            return ck, pt, lambda: (ck(), pt().numpy())

        def ck():
            model.zero_grad()
            y = model(x)
            model.backward(dy, input_grad=False)
            return y

        def pt():
            tm.zero_grad(set_to_none=True)
            y = tm(tx)
            y.backward(tdy)
            return y

        def check():
            a, b_ = ck(), pt()
            ga = [p.grad.ravel() for p in model.parameters()]
            gb = [p.grad.numpy().ravel() for p in tm.parameters()]
            return (np.concatenate([a.ravel()] + ga), np.concatenate([b_.detach().numpy().ravel()] + gb))
        return ck, pt, check

    flops = 2 * macs * (1 if direction == "fwd" else 3)
    return Case(name, "net", flops, 0, make, tol=2e-3)


def net_cases(batches_alexnet=(8, 32), batches_lenet=(64, 256)):
    """Both whole networks, forward and forward+backward."""
    cases = []
    for arch, batches in (("alexnet", batches_alexnet), ("lenet5", batches_lenet)):
        for n in batches:
            for d in ("fwd", "fwdbwd"):
                cases.append(_net_case(arch, n, d))
    return cases


def _epoch_data(batch, steps, rng):
    """(x, y) batches of Fashion-MNIST's training set in a fixed shuffled order, or random images of
    the same shape when the data set is not installed (then the result says so)."""
    import convkit.data as D
    try:
        ds = D.load_fashion_mnist()
        x_all = ds.x_train.astype(np.float32)[:, None] / 255.0
        y_all = ds.y_train.astype(np.int64)
        source = "fashion-mnist"
    except Exception:  # noqa: BLE001 - any failure to find the data: fall back, and say so
        x_all = rng.random((60000, 1, 28, 28), dtype=np.float32)
        y_all = rng.integers(0, 10, 60000).astype(np.int64)
        source = "random images (Fashion-MNIST not found)"
    order = rng.permutation(len(y_all))
    out = []
    for i in range(steps):
        idx = order[(i * batch) % len(y_all):][:batch]
        out.append((np.ascontiguousarray(x_all[idx]), y_all[idx]))
    return out, source, len(y_all)


# --quick's epoch: this many steps per side, extrapolated. 80 (about 0.4 s of convkit at 2 threads) let one
# of the host's stalls move the ratio by 0.05-0.1 (0.42-0.52 over five runs); 240 steps gave 0.43-0.45.
QUICK_EPOCH_STEPS = 240


def lenet_epoch(threads, steps=None, batch=64, block=10, lr=0.01, progress=True):
    """One LeNet-5 training epoch (forward, cross-entropy, backward, SGD step) convkit vs PyTorch in
    this process, interleaved in blocks of `block` steps. steps=None: the whole epoch (ceil(60000 /
    batch) steps per side); otherwise `steps` steps per side, extrapolated to the epoch."""
    import torch

    import convkit.models as M
    import convkit.nn as nn
    import convkit.optim as optim
    from convkit.io import to_torch

    rng = np.random.default_rng(0)
    per_epoch = -(-60000 // batch)
    n = per_epoch if steps is None else min(steps, per_epoch)
    data, source, total = _epoch_data(batch, n, rng)
    per_epoch = -(-total // batch)
    model = M.lenet5(seed=0)
    tm = to_torch(model)
    opt = optim.SGD(model, lr=lr)
    topt = torch.optim.SGD(tm.parameters(), lr=lr)
    tdata = [(torch.from_numpy(xb), torch.from_numpy(yb)) for xb, yb in data]

    def ck_step(xb, yb):
        loss, d = nn.cross_entropy(model(xb), yb)
        model.zero_grad()
        model.backward(d, input_grad=False)
        opt.step()
        return float(loss)

    def pt_step(xb, yb):
        loss = torch.nn.functional.cross_entropy(tm(xb), yb)
        topt.zero_grad()
        loss.backward()
        topt.step()
        return float(loss.detach())

    # validation: same weights, same batches: the first losses agree (float32 rounding only)
    l_ck = [ck_step(*data[i]) for i in range(3)]
    l_pt = [pt_step(*tdata[i]) for i in range(3)]
    err = max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(l_ck, l_pt))
    if not err <= 1e-4:
        raise AssertionError(f"lenet epoch: convkit and torch losses differ by {err:.3e}: {l_ck} vs {l_pt}")
    tc = tt = 0.0
    for b0 in range(0, n, block):
        t0 = time.perf_counter()
        for i in range(b0, min(n, b0 + block)):
            ck_step(*data[i])
        t1 = time.perf_counter()
        for i in range(b0, min(n, b0 + block)):
            pt_step(*tdata[i])
        t2 = time.perf_counter()
        tc += t1 - t0
        tt += t2 - t1
    scale = per_epoch / n
    row = {"case": f"train:lenet5 epoch mb{batch} SGD ({source})", "group": "epoch", "threads": threads,
           "steps_timed": n, "steps_per_epoch": per_epoch, "extrapolated": n < per_epoch,
           "convkit_s": tc * scale, "torch_s": tt * scale, "ratio": tc / tt, "max_rel_err": err,
           "convkit_ms_per_step": 1e3 * tc / n, "torch_ms_per_step": 1e3 * tt / n}
    if progress:
        note = f" (extrapolated from {n} steps)" if n < per_epoch else ""
        print(f"{threads}t {row['case']:78s} {row['convkit_s']:7.2f} s  {row['torch_s']:7.2f} s  ratio "
              f"{row['ratio']:5.2f}{note}", flush=True)
    return row


def out_keyword_effect(threads, repeats=11, progress=True):
    """The memory-bound cases with the output allocated per call (as in the table, and as torch does)
    against out= into a reused array, interleaved: what the first-touch page faults cost."""
    rng = _rng()
    x = rng.standard_normal((32, 96, 55, 55)).astype(np.float32)
    y, s = F.local_response_norm(x, 5, 1e-4, 0.75, 2.0, return_scale=True)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    py_, pidx = F.max_pool2d(x, 3, 2, return_indices=True)
    fx = rng.standard_normal((1, 9216)).astype(np.float32)
    fw = (rng.standard_normal((4096, 9216)) / 96).astype(np.float32)
    fb = rng.standard_normal(4096).astype(np.float32)
    fdy = rng.standard_normal((1, 4096)).astype(np.float32)
    cases = {
        "fwd:alexnet:norm1 mb32": (lambda o=None: F.local_response_norm(x, 5, 1e-4, 0.75, 2.0, return_scale=True, out=o),
                                   (np.empty_like(x), np.empty_like(x))),
        "bwd:alexnet:norm1 mb32": (lambda o=None: F.local_response_norm_backward(x, y, s, dy, 5, 1e-4, 0.75, 2.0, out=o),
                                   np.empty_like(x)),
        "fwd:alexnet:pool1 mb32": (lambda o=None: F.max_pool2d(x, 3, 2, return_indices=True, out=o),
                                   (np.empty_like(py_), np.empty_like(pidx))),
        "fwd:alexnet:fc6 mb1": (lambda o=None: F.linear(fx, fw, fb, out=o), np.empty((1, 4096), np.float32)),
        "bwd-weight:alexnet:fc6 mb1": (lambda o=None: F.linear_backward_weight(fx, fdy, out=o), np.empty_like(fw)),
    }
    rows = []
    for name, (f, o) in cases.items():
        ta, tb = time_pair(f, lambda: f(o), repeats)
        row = {"case": name, "threads": threads, "allocating_ms": ta * 1e3, "out_ms": tb * 1e3, "ratio": tb / ta}
        rows.append(row)
        if progress:
            print(f"{threads}t out= {name:32s} allocating {row['allocating_ms']:8.2f} ms  out= {row['out_ms']:8.2f} ms  "
                  f"ratio {row['ratio']:.2f}", flush=True)
    return rows


def measure_peak(threads, runs=9, iters=3_000_000):
    """Best of `runs` FMA-throughput runs on `threads` threads, GFLOP/s (convkit._core._fma_peak)."""
    from convkit import _core
    return max(_core._fma_peak(threads, iters) for _ in range(runs))


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


def time_samples(f, g, repeats: int, warm: bool = True):
    """Interleaved timing: `repeats` pairs (f, then g right after); returns the two lists of seconds."""
    if warm:
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
    return tf, tg


def time_pair(f, g, repeats: int, warm: bool = True):
    """Interleaved timing: returns (median seconds of f, median seconds of g)."""
    tf, tg = time_samples(f, g, repeats, warm)
    return statistics.median(tf), statistics.median(tg)


def paired_ratio(tf, tg) -> float:
    """Median over the pairs of f's time / g's time: each pair ran back to back, so a stretch when the
    host takes cycles away slows both samples of a pair, where it would tilt a ratio of medians."""
    return statistics.median(a / b for a, b in zip(tf, tg))


def _repeats_for(seconds_per_pair: float, repeats: int, budget: float = 20.0, least: int = 5) -> int:
    # long cases get fewer repeats so a run stays within minutes; never fewer than `least`
    return max(least, min(repeats, int(budget / max(seconds_per_pair, 1e-6))))


def run(cases, threads=(1, 2), repeats: int = 21, progress=True, peaks=None, budget=20.0, least=5):
    """Validates and times every case at every thread count. peaks: {threads: GFLOP/s} adds % of peak."""
    import torch

    results = []
    for nt in threads:
        convkit.set_num_threads(nt)
        torch.set_num_threads(nt)
        for case in cases:
            ck, pt, check = case.make()
            t0 = time.perf_counter()
            err = _validate(case, check) if check else None  # also the warm-up of both sides
            if not check:
                ck(), pt()
            reps = _repeats_for(time.perf_counter() - t0, repeats, budget, least)
            sc, st = time_samples(ck, pt, reps, warm=False)
            tc, tt = statistics.median(sc), statistics.median(st)
            row = {"case": case.name, "group": case.group, "threads": nt, "repeats": reps,
                   "convkit_ms": tc * 1e3, "torch_ms": tt * 1e3, "ratio": paired_ratio(sc, st),
                   "ratio_of_medians": tc / tt, "max_rel_err": err}
            if case.flops:
                row["convkit_gflops"] = case.flops / tc / 1e9
                row["torch_gflops"] = case.flops / tt / 1e9
                if peaks and nt in peaks:
                    row["convkit_pct_peak"] = 100.0 * row["convkit_gflops"] / peaks[nt]
                    row["torch_pct_peak"] = 100.0 * row["torch_gflops"] / peaks[nt]
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
        if "convkit_pct_peak" in r:
            rate += f" ({r['convkit_pct_peak']:4.1f}% vs {r['torch_pct_peak']:4.1f}% of peak)"
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
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "loadavg": _loadavg()}


def warn_if_sanitized() -> bool:
    """Whether this build is sanitized (ASan + UBSan, the CI's sanitizer job), said on stderr when it is:
    its kernels and the FMA probe run instrumented, so timings and shares of "peak" mean nothing (an
    uninstrumented library timed beside them can read far above 100% of the probe)."""
    sanitized = convkit.info()["sanitized"]
    if sanitized:
        print("warning: this convkit build is sanitized (ASan + UBSan): its timings and the probe's peak "
              "are not meaningful", file=sys.stderr, flush=True)
    return sanitized


def _loadavg():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="convkit bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--filter", default="", help="only cases whose name contains this")
    ap.add_argument("--repeats", type=int, default=21, help="timed samples per side (median)")
    ap.add_argument("--quick", action="store_true",
                    help="the issue's cases only: AlexNet convolutions, LRN, pooling and both networks at batch 32, "
                         "fc at batch 1, LeNet at 64; fewer samples of the long cases; the epoch extrapolated "
                         "from --epoch-steps steps")
    ap.add_argument("--epoch-steps", type=int, default=0,
                    help="time this many training steps and extrapolate to the epoch (default: the whole "
                         "epoch, or 240 steps with --quick); 0 with --quick means 240")
    ap.add_argument("--no-layers", action="store_true", help="skip the single-layer cases")
    ap.add_argument("--no-nets", action="store_true", help="skip the whole-network cases and the epoch")
    ap.add_argument("--json", default="", help="write the results here (e.g. benchmarks/results/cpu.json)")
    ap.add_argument("--markdown", default="", metavar="JSON",
                    help="print the README table of an earlier run's JSON and exit (runs nothing)")
    args = ap.parse_args(argv)
    if args.markdown:
        with open(args.markdown) as f:
            print(markdown(json.load(f)))
        return 0
    try:
        import torch  # noqa: F401
    except ImportError:
        print("convkit bench needs PyTorch as the side-by-side reference: pip install torch==2.13.0",
              file=sys.stderr)
        return 2
    threads = tuple(int(t) for t in args.threads.split(","))
    load_before = _loadavg()
    warn_if_sanitized()
    peaks = {}
    for nt in threads:
        peaks[nt] = measure_peak(nt)
        print(f"measured FP32 FMA peak, {nt} thread(s): {peaks[nt]:.1f} GFLOP/s (best of 9 runs; "
              f"isa {convkit.info()['cpu_isa']})", flush=True)
    budget, least = (6.0, 3) if args.quick else (20.0, 5)
    cases = []
    if not args.no_layers:
        if args.quick:
            cases += [c for c in layer_cases((32,), (64,)) if "fc" not in c.name]
            cases += [c for c in layer_cases((1,), ()) if ":fc" in c.name]
        else:
            cases += layer_cases()
    if not args.no_nets:
        cases += net_cases((32,), (64,)) if args.quick else net_cases()
    cases = [c for c in cases if args.filter in c.name]
    results = run(cases, threads, args.repeats, peaks=peaks, budget=budget, least=least)
    epoch = []
    if not args.no_nets and args.filter in "train:lenet5 epoch":
        steps = args.epoch_steps or (QUICK_EPOCH_STEPS if args.quick else None)
        for nt in threads:
            convkit.set_num_threads(nt)
            torch.set_num_threads(nt)
            epoch.append(lenet_epoch(nt, steps))
        convkit.set_num_threads(0)
    out_kw = []
    if not args.no_layers and args.filter in "out= keyword":
        for nt in threads:
            convkit.set_num_threads(nt)
            out_kw += out_keyword_effect(nt, 7 if args.quick else 15)
        convkit.set_num_threads(0)
    # the peak again after the run (the machine is shared: keep the best seen), and % of peak with it
    for nt in threads:
        again = measure_peak(nt)
        if again > peaks[nt]:
            print(f"measured FP32 FMA peak, {nt} thread(s), after the run: {again:.1f} GFLOP/s (used from here on)")
            peaks[nt] = again
    for r in results:
        if "convkit_gflops" in r and r["threads"] in peaks:
            r["convkit_pct_peak"] = 100.0 * r["convkit_gflops"] / peaks[r["threads"]]
            r["torch_pct_peak"] = 100.0 * r["torch_gflops"] / peaks[r["threads"]]
    summary = summarize(results, epoch, threads, peaks)
    out = {"environment": environment(), "loadavg_before": load_before, "peak_gflops": peaks,
           "command": "python -m convkit.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
           "summary": summary, "results": results, "epoch": epoch, "out_keyword": out_kw,
           "loadavg_after": _loadavg()}
    path = args.json
    if path:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, path)
        print(f"wrote {path}")
    return 0


def markdown(data) -> str:
    """The README table of a results JSON: one row per case, 1- and 2-thread columns."""
    rows, order = {}, []
    for r in data["results"]:
        if r["case"] not in rows:
            rows[r["case"]] = {}
            order.append(r["case"])
        rows[r["case"]][r["threads"]] = r
    threads = sorted({r["threads"] for r in data["results"]})
    head = "| case | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}: convkit / torch ms (ratio)" for t in threads)
    head += " | convkit % of peak (" + ", ".join(f"{t}t" for t in threads) + ") |"
    lines = [head, "|---|" + "---:|" * (len(threads) + 1)]
    for case in order:
        cells, pct = [], []
        for t in threads:
            r = rows[case].get(t)
            cells.append(f"{r['convkit_ms']:.2f} / {r['torch_ms']:.2f} ({r['ratio']:.2f})" if r else "")
            if r and "convkit_pct_peak" in r:
                pct.append(f"{r['convkit_pct_peak']:.0f}%")
        lines.append(f"| `{case}` | " + " | ".join(cells) + f" | {', '.join(pct)} |")
    for e in data.get("epoch", []):
        note = f" (extrapolated from {e['steps_timed']} steps)" if e["extrapolated"] else ""
        lines.append(f"| `{e['case']}` {e['threads']} thread(s){note} | {e['convkit_s']:.2f} s / {e['torch_s']:.2f} s "
                     f"({e['ratio']:.2f}) |" + " |" * len(threads))
    return "\n".join(lines)


def summarize(results, epoch, threads, peaks):
    """Geometric mean / worst ratio over the single layers, whole-network and epoch ratios, and the
    AlexNet conv2-conv5 % of peak, per thread count; printed and returned."""
    out = {}
    for nt in threads:
        rows = [r for r in results if r["threads"] == nt]
        layers = [r["ratio"] for r in rows if r["group"] not in ("net", "epoch")]
        s = {}
        if layers:
            s["geomean_ratio"] = geomean(layers)
            s["worst_ratio"] = max(layers)
            s["layer_cases"] = len(layers)
            print(f"{nt} thread(s): geometric mean ratio {s['geomean_ratio']:.3f} over {len(layers)} layer cases; "
                  f"worst {s['worst_ratio']:.2f}")
        for r in rows:
            if r["group"] == "net":
                s.setdefault("nets", {})[r["case"]] = r["ratio"]
                print(f"{nt} thread(s): {r['case']}: ratio {r['ratio']:.2f} ({r['convkit_ms']:.1f} vs "
                      f"{r['torch_ms']:.1f} ms)")
        big = [r for r in rows if r["group"] == "conv" and "mb32" in r["case"]
               and any(f"alexnet:conv{i} " in r["case"] for i in (2, 3, 4, 5)) and "convkit_pct_peak" in r]
        if big:
            s["alexnet_conv2_5_pct_peak"] = {r["case"].split(" ")[0]: round(r["convkit_pct_peak"], 1) for r in big}
            print(f"{nt} thread(s): AlexNet conv2-5 at batch 32, % of the measured peak ({peaks[nt]:.0f} GFLOP/s): "
                  + ", ".join(f"{k} {v}%" for k, v in s["alexnet_conv2_5_pct_peak"].items()))
        for e in epoch:
            if e["threads"] == nt:
                s["epoch_ratio"] = e["ratio"]
                print(f"{nt} thread(s): LeNet-5 epoch: ratio {e['ratio']:.2f} ({e['convkit_s']:.2f} vs "
                      f"{e['torch_s']:.2f} s{', extrapolated from %d steps' % e['steps_timed'] if e['extrapolated'] else ''})")
        out[nt] = s
    return out


if __name__ == "__main__":
    sys.exit(main())
