"""convkit's CUDA kernels against PyTorch + cuDNN on the same GPU, in one run (issue 4's targets).

    python3 benchmarks/bench_gpu.py [--out DIR] [--quick]

What it measures (float32, batch 128, the lecture's AlexNet: conv2/4/5 with groups 2):
- conv2d forward, backward data and backward weight of the five AlexNet layers: convkit vs cuDNN with
  TF32 off (strict FP32: the target is <= 1.5x) and with TF32 on (reported);
- max_pool2d and LRN forward and backward on AlexNet's shapes: achieved bandwidth as a fraction of the
  device-to-device copy bandwidth measured here (target >= 70%), bytes counted as each input read
  once and each output written once; PyTorch's time alongside;
- AlexNet forward + backward (loss included) at batch 128: convkit vs PyTorch (TF32 off and on).

Method (METHOD.md): every result is validated before it is timed (relative error max|a - b| / max|b|):
convolutions against a float64 reference (cuDNN's FP32 result is checked against it too: on the H200 its
conv2 backward-weight was 1.6e-2 off), the others against PyTorch; timing with CUDA events on one new
stream shared by both libraries, after warm-up, median of the repeats (a conv faster than the FP32
peak is reported as a timing error); inputs are random normal, never zeros. Problems are
named benchdnn-style. Output: a table on stdout, results.json and results.md in --out.
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

try:
    import torch
    import torch.nn.functional as tF
except ImportError:  # pragma: no cover
    sys.exit("bench_gpu.py needs PyTorch with CUDA")

import convkit
import convkit.functional as F
from convkit import _core

BATCH = 128
FP32_PEAK_TFLOPS = 70.0  # H100/H200 SXM FFMA by the datasheet (67), rounded up: no FP32 kernel can beat it
# name: (C, H, W, OC, K, stride, pad, groups) of the lecture's AlexNet (227x227 input)
ALEXNET_CONVS = {
    "conv1": (3, 227, 227, 96, 11, 4, 0, 1),
    "conv2": (96, 27, 27, 256, 5, 1, 2, 2),
    "conv3": (256, 13, 13, 384, 3, 1, 1, 1),
    "conv4": (384, 13, 13, 384, 3, 1, 1, 2),
    "conv5": (384, 13, 13, 256, 3, 1, 1, 2),
}
POOLS = {"pool1": (96, 55, 55), "pool2": (256, 27, 27), "pool5": (256, 13, 13)}
LRNS = {"norm1": (96, 55, 55), "norm2": (256, 27, 27)}
LRN_ARGS = (5, 1e-4, 0.75, 1.0)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def to_torch(a) -> "torch.Tensor":
    return torch.from_dlpack(a)


def to_ck(t: "torch.Tensor"):
    return convkit.from_dlpack(t.contiguous())


def rel_err(a, b) -> float:
    a = (to_torch(a) if isinstance(a, convkit.DeviceArray) else a).double()
    b = (to_torch(b) if isinstance(b, convkit.DeviceArray) else b).double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def time_ms(fn, reps: int, warmup: int = 3) -> dict:
    """Median / min of `reps` timings of fn() with CUDA events on the current stream."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    return {"median_ms": statistics.median(times), "min_ms": min(times), "reps": reps}


def set_tf32(on: bool) -> None:
    torch.backends.cudnn.allow_tf32 = on
    torch.backends.cuda.matmul.allow_tf32 = on


def copy_bandwidth(reps: int) -> float:
    """Device-to-device copy bandwidth in GB/s, counting bytes read plus bytes written (1 GiB buffers)."""
    n = 1 << 28  # 1 GiB of float32
    a = torch.randn(n, device="cuda")
    b = torch.empty_like(a)
    t = time_ms(lambda: b.copy_(a), reps)
    return 2 * n * 4 / (t["median_ms"] * 1e-3) / 1e9


# ---- conv2d ----------------------------------------------------------------------------------------------

def bench_convs(reps: int, rows: list, quick: bool) -> None:
    g = torch.Generator(device="cuda").manual_seed(0)
    for name, (c, h, w, oc, k, s, p, groups) in ALEXNET_CONVS.items():
        if quick and name not in ("conv2", "conv3"):
            continue
        x = torch.randn(BATCH, c, h, w, device="cuda", generator=g)
        wt = torch.randn(oc, c // groups, k, k, device="cuda", generator=g) * (1.0 / math.sqrt(c // groups * k * k))
        b = torch.randn(oc, device="cuda", generator=g)
        oh = (h + 2 * p - k) // s + 1
        dy = torch.randn(BATCH, oc, oh, oh, device="cuda", generator=g)
        xk, wk, bk, dyk = to_ck(x), to_ck(wt), to_ck(b), to_ck(dy)
        args = ((s, s), (p, p), (1, 1), groups)
        flops = 2.0 * BATCH * oc * oh * oh * (c // groups) * k * k
        prob = f"mb{BATCH}ic{c}ih{h}oc{oc}oh{oh}kh{k}sh{s}ph{p}g{groups}_n\"alexnet:{name}\""
        ops = {
            "fwd": (lambda: F.conv2d(xk, wk, bk, *args),
                    lambda: tF.conv2d(x, wt, b, s, p, 1, groups)),
            "bwd_data": (lambda: F.conv2d_backward_data(dyk, wk, x.shape, *args),
                         lambda: torch.nn.grad.conv2d_input(x.shape, wt, dy, s, p, 1, groups)),
            "bwd_weight": (lambda: F.conv2d_backward_weight(xk, dyk, wt.shape, *args),
                           lambda: torch.nn.grad.conv2d_weight(x, wt.shape, dy, s, p, 1, groups)),
        }
        xd, wd, bd, dyd = x.double(), wt.double(), b.double(), dy.double()
        refs64 = {  # the float64 reference each result is checked against (cuDNN's fp32 result is checked too)
            "fwd": lambda: tF.conv2d(xd, wd, bd, s, p, 1, groups),
            "bwd_data": lambda: torch.nn.grad.conv2d_input(x.shape, wd, dyd, s, p, 1, groups),
            "bwd_weight": lambda: torch.nn.grad.conv2d_weight(xd, wt.shape, dyd, s, p, 1, groups),
        }
        for op, (ck_fn, th_fn) in ops.items():
            set_tf32(False)
            ref = refs64[op]()
            err = rel_err(ck_fn(), ref)
            err_cudnn = rel_err(th_fn(), ref)
            row = {"kind": "conv2d", "layer": name, "op": op, "problem": prob, "gflop": flops / 1e9, "rel_err": err,
                   "rel_err_cudnn_fp32": err_cudnn}
            del ref
            if not err < 1e-4:
                row["error"] = f"validation failed: rel err {err:.2e}"
                rows.append(row)
                log(f"{name} {op}: VALIDATION FAILED rel err {err:.2e} vs float64 (cuDNN fp32: {err_cudnn:.2e})")
                continue
            row["convkit"] = time_ms(ck_fn, reps)
            row["cudnn_fp32"] = time_ms(th_fn, reps)
            set_tf32(True)
            row["cudnn_tf32"] = time_ms(th_fn, reps)
            set_tf32(False)
            for key in ("convkit", "cudnn_fp32", "cudnn_tf32"):
                row[key]["tflops"] = flops / (row[key]["median_ms"] * 1e-3) / 1e12
            if row["convkit"]["tflops"] > FP32_PEAK_TFLOPS:  # plain FFMA cannot go faster: the events missed it
                row["error"] = f"implausible timing: {row['convkit']['tflops']:.0f} TFLOP/s > FP32 peak"
                log(f"{name} {op}: {row['error']}")
            row["ratio_vs_fp32"] = row["convkit"]["median_ms"] / row["cudnn_fp32"]["median_ms"]
            row["ratio_vs_tf32"] = row["convkit"]["median_ms"] / row["cudnn_tf32"]["median_ms"]
            rows.append(row)
            log(f"{name} {op}: convkit {row['convkit']['median_ms']:.3f} ms ({row['convkit']['tflops']:.1f} TFLOP/s), "
                f"cuDNN fp32 {row['cudnn_fp32']['median_ms']:.3f} ms, tf32 {row['cudnn_tf32']['median_ms']:.3f} ms, "
                f"ratio {row['ratio_vs_fp32']:.2f} / {row['ratio_vs_tf32']:.2f}, err vs float64 {err:.1e} "
                f"(cuDNN fp32 {err_cudnn:.1e})")


# ---- memory-bound ops ---------------------------------------------------------------------------------

def bench_memory_bound(reps: int, copy_gbs: float, rows: list) -> None:
    g = torch.Generator(device="cuda").manual_seed(1)
    for name, (c, h, w) in POOLS.items():
        x = torch.randn(BATCH, c, h, w, device="cuda", generator=g)
        xk = to_ck(x)
        yk, ik = F.max_pool2d(xk, 3, 2, 0, False, return_indices=True)
        yt, it = tF.max_pool2d(x, 3, 2, 0, return_indices=True)
        ok = rel_err(yk, yt) == 0 and bool((to_torch(ik) == it).all())
        dy = torch.randn_like(yt)
        dyk = to_ck(dy)
        dxk = F.max_pool2d_backward(dyk, ik, tuple(x.shape), 3, 2, 0, False)
        dxt = torch.ops.aten.max_pool2d_with_indices_backward(dy, x, [3, 3], [2, 2], [0, 0], [1, 1], False, it)
        err_b = rel_err(dxk, dxt)
        n_in, n_out = x.numel(), yt.numel()
        cases = {
            "fwd": (lambda: F.max_pool2d(xk, 3, 2, 0, False, return_indices=True),
                    lambda: tF.max_pool2d(x, 3, 2, 0, return_indices=True), 4 * n_in + 4 * n_out + 8 * n_out, ok),
            "bwd": (lambda: F.max_pool2d_backward(dyk, ik, tuple(x.shape), 3, 2, 0, False),
                    lambda: torch.ops.aten.max_pool2d_with_indices_backward(dy, x, [3, 3], [2, 2], [0, 0], [1, 1],
                                                                            False, it),
                    4 * n_out + 8 * n_out + 4 * n_in, err_b < 1e-6),
        }
        mem_rows(name, "max_pool2d", f"mb{BATCH}ic{c}ih{h}kh3sh2", cases, reps, copy_gbs, rows)
    for name, (c, h, w) in LRNS.items():
        x = torch.randn(BATCH, c, h, w, device="cuda", generator=g)
        xk = to_ck(x)
        yk, sk = F.local_response_norm(xk, *LRN_ARGS, return_scale=True)
        xr = x.detach().requires_grad_(True)
        yt = tF.local_response_norm(xr, *LRN_ARGS)
        dy = torch.randn_like(yt)
        yt.backward(dy, retain_graph=True)
        dyk = to_ck(dy)
        err_f = rel_err(yk, yt.detach())
        err_b = rel_err(F.local_response_norm_backward(xk, yk, sk, dyk, *LRN_ARGS), xr.grad)

        def torch_bwd():  # backward only: the graph is kept from the forward above
            xr.grad = None
            yt.backward(dy, retain_graph=True)

        n = x.numel()
        cases = {
            "fwd": (lambda: F.local_response_norm(xk, *LRN_ARGS, return_scale=True),
                    lambda: tF.local_response_norm(x, *LRN_ARGS), 3 * 4 * n, err_f < 1e-5),
            "bwd": (lambda: F.local_response_norm_backward(xk, yk, sk, dyk, *LRN_ARGS), torch_bwd, 5 * 4 * n,
                    err_b < 1e-5),
        }
        mem_rows(name, "lrn", f"mb{BATCH}ic{c}ih{h}ls5", cases, reps, copy_gbs, rows)


def mem_rows(name, kind, prob, cases, reps, copy_gbs, rows):
    for op, (ck_fn, th_fn, nbytes, ok) in cases.items():
        row = {"kind": kind, "layer": name, "op": op, "problem": prob, "bytes": nbytes}
        if not ok:
            row["error"] = "validation failed"
            rows.append(row)
            log(f"{name} {op}: VALIDATION FAILED")
            continue
        row["convkit"] = time_ms(ck_fn, reps)
        row["torch"] = time_ms(th_fn, reps)
        gbs = nbytes / (row["convkit"]["median_ms"] * 1e-3) / 1e9
        row["convkit"]["gbs"] = gbs
        row["fraction_of_copy"] = gbs / copy_gbs
        row["ratio_vs_torch"] = row["convkit"]["median_ms"] / row["torch"]["median_ms"]
        rows.append(row)
        log(f"{name} {op}: convkit {row['convkit']['median_ms']:.3f} ms = {gbs:.0f} GB/s = "
            f"{100 * row['fraction_of_copy']:.0f}% of copy; torch {row['torch']['median_ms']:.3f} ms")


# ---- AlexNet forward + backward ---------------------------------------------------------------------------

class CkAlexNet:
    """The lecture's AlexNet on convkit's functional ops, forward and backward by hand (no autograd)."""

    def __init__(self, tmodel):
        self.p = {k: to_ck(v.detach()) for k, v in tmodel.state_dict().items()}

    def step(self, x, labels, dropout=True):
        p, F_ = self.p, F
        cache = {}
        h = x
        for i, (name, (c, hh, ww, oc, k, s, pad, groups)) in enumerate(ALEXNET_CONVS.items()):
            a = F_.conv2d(h, p[f"{name}.weight"], p[f"{name}.bias"], s, pad, 1, groups)
            r = F_.relu(a)
            cache[name] = (h, r)
            h = r
            if name in ("conv1", "conv2"):
                y, sc = F_.local_response_norm(h, *LRN_ARGS, return_scale=True)
                cache[name + "_lrn"] = (h, y, sc)
                h = y
            if name in ("conv1", "conv2", "conv5"):
                y, idx = F_.max_pool2d(h, 3, 2, 0, False, return_indices=True)
                cache[name + "_pool"] = (h.shape, idx)
                h = y
        shape5 = h.shape
        h = h.reshape(h.shape[0], -1)
        fcs = []
        for j, name in enumerate(("fc6", "fc7", "fc8")):
            y = F_.linear(h, p[f"{name}.weight"], p[f"{name}.bias"])
            fcs.append((name, h, None))
            if name != "fc8":
                y = F_.relu(y)
                mask = None
                if dropout:
                    y, mask = F_.dropout(y, 0.5, seed=j)
                fcs[-1] = (name, h, (y, mask))
            h = y
        loss, probs = F_.softmax_cross_entropy(h, labels)
        # backward
        n = loss.shape[0]
        g = F_.softmax_cross_entropy_backward(probs, labels, convkit.device.full_like(loss, 1.0 / n))
        grads = {}
        for name, hin, drop in reversed(fcs):
            if drop is not None:
                y, mask = drop
                if mask is not None:
                    g = F_.dropout_backward(g, mask, 0.5)
                g = F_.relu_backward(g, y)  # y (after dropout) > 0 exactly where relu passed and dropout kept
            grads[name + ".weight"] = F_.linear_backward_weight(hin, g)
            grads[name + ".bias"] = F_.linear_backward_bias(g)
            g = F_.linear_backward_data(g, p[name + ".weight"])
        g = g.reshape(*shape5)
        for name, (c, hh, ww, oc, k, s, pad, groups) in reversed(list(ALEXNET_CONVS.items())):
            if name + "_pool" in cache:
                shp, idx = cache[name + "_pool"]
                g = F_.max_pool2d_backward(g, idx, shp, 3, 2, 0, False)
            if name + "_lrn" in cache:
                hin, y, sc = cache[name + "_lrn"]
                g = F_.local_response_norm_backward(hin, y, sc, g, *LRN_ARGS)
            hin, r = cache[name]
            g = F_.relu_backward(g, r)
            args = ((s, s), (pad, pad), (1, 1), groups)
            grads[name + ".weight"] = F_.conv2d_backward_weight(hin, g, p[name + ".weight"].shape, *args)
            grads[name + ".bias"] = F_.conv2d_backward_bias(g)
            if name != "conv1":
                g = F_.conv2d_backward_data(g, p[name + ".weight"], hin.shape, *args)
        return loss, grads


def torch_alexnet():
    import torch.nn as nn

    layers = []
    for name, (c, h, w, oc, k, s, pad, groups) in ALEXNET_CONVS.items():
        layers += [(name, nn.Conv2d(c, oc, k, s, pad, groups=groups)), (name + "_relu", nn.ReLU())]
        if name in ("conv1", "conv2"):
            layers.append((name + "_lrn", nn.LocalResponseNorm(*LRN_ARGS)))
        if name in ("conv1", "conv2", "conv5"):
            layers.append((name + "_pool", nn.MaxPool2d(3, 2)))
    layers += [("flatten", nn.Flatten()), ("fc6", nn.Linear(9216, 4096)), ("r6", nn.ReLU()), ("d6", nn.Dropout()),
               ("fc7", nn.Linear(4096, 4096)), ("r7", nn.ReLU()), ("d7", nn.Dropout()), ("fc8", nn.Linear(4096, 1000))]
    from collections import OrderedDict

    return nn.Sequential(OrderedDict(layers)).cuda()


def bench_alexnet(reps: int, rows: list) -> None:
    torch.manual_seed(0)
    model = torch_alexnet()
    x = torch.randn(BATCH, 3, 227, 227, device="cuda")
    labels = torch.randint(0, 1000, (BATCH,), device="cuda")
    ck = CkAlexNet(model)
    xk, lk = to_ck(x), to_ck(labels)

    # validate without dropout (the masks differ between the libraries): the mean loss and the first
    # layer's weight gradient, which depends on every layer's forward and backward
    model.eval()
    set_tf32(False)
    model.zero_grad(set_to_none=True)
    loss_t = tF.cross_entropy(model(x), labels)
    loss_t.backward()
    loss_k, grads_k = ck.step(xk, lk, dropout=False)
    err_loss = abs(float(to_torch(loss_k).double().mean()) - float(loss_t)) / abs(float(loss_t))
    err_grad = rel_err(grads_k["conv1.weight"], model.conv1.weight.grad)
    model.train()

    def ck_step():
        ck.step(xk, lk)

    def torch_step():
        model.zero_grad(set_to_none=True)
        loss = tF.cross_entropy(model(x), labels)
        loss.backward()

    row = {"kind": "network", "layer": "alexnet", "op": "fwd+bwd", "problem": f"alexnet_mb{BATCH}",
           "rel_err_loss": err_loss, "rel_err_conv1_grad": err_grad}
    log(f"alexnet validation (no dropout): loss rel err {err_loss:.1e}, conv1 weight grad rel err {err_grad:.1e}")
    if not (err_loss < 1e-4 and err_grad < 1e-3):
        row["error"] = f"validation failed: loss rel err {err_loss:.1e}, conv1 grad rel err {err_grad:.1e}"
        rows.append(row)
        log(row["error"])
        return
    row["convkit"] = time_ms(ck_step, reps, warmup=2)
    set_tf32(False)
    row["torch_fp32"] = time_ms(torch_step, reps, warmup=2)
    set_tf32(True)
    row["torch_tf32"] = time_ms(torch_step, reps, warmup=2)
    set_tf32(False)
    row["ratio_vs_fp32"] = row["convkit"]["median_ms"] / row["torch_fp32"]["median_ms"]
    row["ratio_vs_tf32"] = row["convkit"]["median_ms"] / row["torch_tf32"]["median_ms"]
    rows.append(row)
    log(f"alexnet fwd+bwd: convkit {row['convkit']['median_ms']:.1f} ms, torch fp32 {row['torch_fp32']['median_ms']:.1f} "
        f"ms, tf32 {row['torch_tf32']['median_ms']:.1f} ms, ratio {row['ratio_vs_fp32']:.2f} / {row['ratio_vs_tf32']:.2f}")


# ---- report --------------------------------------------------------------------------------------------------

def table(rows: list, copy_gbs: float) -> str:
    out = [f"copy bandwidth (device to device, read + write): {copy_gbs:.0f} GB/s", "",
           "| layer | op | convkit ms | cuDNN fp32 ms | ratio (<= 1.5) | cuDNN tf32 ms | ratio | convkit TFLOP/s |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r["kind"] != "conv2d":
            continue
        if "error" in r:
            out.append(f"| {r['layer']} | {r['op']} | {r['error']} | | | | | |")
            continue
        out.append(f"| {r['layer']} | {r['op']} | {r['convkit']['median_ms']:.3f} | {r['cudnn_fp32']['median_ms']:.3f} | "
                   f"{r['ratio_vs_fp32']:.2f} | {r['cudnn_tf32']['median_ms']:.3f} | {r['ratio_vs_tf32']:.2f} | "
                   f"{r['convkit']['tflops']:.1f} |")
    out += ["", "| layer | op | convkit ms | GB/s | % of copy (>= 70) | torch ms | ratio |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if r["kind"] not in ("max_pool2d", "lrn"):
            continue
        if "error" in r:
            out.append(f"| {r['layer']} | {r['op']} | {r['error']} | | | | |")
            continue
        out.append(f"| {r['layer']} | {r['op']} | {r['convkit']['median_ms']:.3f} | {r['convkit']['gbs']:.0f} | "
                   f"{100 * r['fraction_of_copy']:.0f} | {r['torch']['median_ms']:.3f} | {r['ratio_vs_torch']:.2f} |")
    for r in rows:
        if r["kind"] == "network":
            if "error" in r:
                out += ["", f"AlexNet fwd+bwd: {r['error']}"]
            else:
                out += ["", f"AlexNet fwd+bwd batch {BATCH}: convkit {r['convkit']['median_ms']:.1f} ms, PyTorch fp32 "
                            f"{r['torch_fp32']['median_ms']:.1f} ms (ratio {r['ratio_vs_fp32']:.2f}, target <= 1.5), "
                            f"tf32 {r['torch_tf32']['median_ms']:.1f} ms (ratio {r['ratio_vs_tf32']:.2f})"]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "gpu"))
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="two conv layers, fewer repeats")
    ap.add_argument("--skip", default="", help="comma-separated: conv,mem,alexnet")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available() or not convkit.cuda_available():
        print(f"bench_gpu.py: needs CUDA in torch ({torch.cuda.is_available()}) and convkit "
              f"({convkit.device.cuda_unavailable_reason() or 'ok'})", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    reps = 5 if args.quick else args.reps
    skip = set(filter(None, args.skip.split(",")))
    torch.backends.cudnn.benchmark = True
    # One stream for both libraries, so CUDA events bracket convkit's kernels too. Not PyTorch's default
    # stream: its handle is 0, which set_cuda_stream reads as "convkit's own stream" (a non-blocking
    # stream the events would not see: the first H200 run timed only the launches that way).
    bench_stream = torch.cuda.Stream()
    torch.cuda.set_stream(bench_stream)
    _core.set_cuda_stream(bench_stream.cuda_stream)
    assert _core.cuda_current_stream() == bench_stream.cuda_stream != 0
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
            "convkit": convkit.__version__, "python": platform.python_version(), "batch": BATCH,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "reps": reps}
    log(f"bench_gpu: {meta}")
    rows: list = []
    copy_gbs = copy_bandwidth(reps)
    log(f"copy bandwidth {copy_gbs:.0f} GB/s")
    sections = [("conv", lambda: bench_convs(reps, rows, args.quick)),
                ("mem", lambda: bench_memory_bound(reps, copy_gbs, rows)),
                ("alexnet", lambda: bench_alexnet(max(3, reps // 3), rows))]
    for key, fn in sections:
        if key in skip:
            continue
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - report and go on: a partial run still tells something
            rows.append({"kind": "error", "section": key, "error": f"{type(e).__name__}: {e}"})
            log(f"section {key} failed: {type(e).__name__}: {e}")
        with open(os.path.join(args.out, "results.json"), "w") as f:  # after each section
            json.dump({"meta": meta, "copy_gbs": copy_gbs, "rows": rows}, f, indent=1)
    text = table(rows, copy_gbs)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(f"# convkit CUDA vs PyTorch {meta['torch']} (cuDNN {meta['cudnn']}) on {meta['device']}, "
                f"{meta['date']}\n\n{text}\n")
    print(text)
    _core.set_cuda_stream(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
