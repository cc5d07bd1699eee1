"""Style transfer, convkit against PyTorch on the CPU: the same objective, the same backbone, the same optimizer.

The problem: the astronaut (content) in the style of gravel (both from scikit-image) at SIZE x SIZE, the
random multi-scale filter backbone (convkit.style.RandomFilterNet: filter sizes 3,5,7,11,15,23, FILTERS random
filters each, ReLU, 'valid' convolutions), content loss on relu11x11, Gram style loss on all six scales,
alpha = 1, beta = 1e4, starting from the content image.

Both sides are driven by the same optimizer, convkit.style.lbfgs: scipy.optimize.minimize(method="L-BFGS-B",
bounds [0, 1], ftol=gtol=0, restarted when the float32 line search stalls) for ITERATIONS iterations, so the
optimizer's own cost is identical and what differs is the objective and its gradient:
- convkit: convkit.style.StyleObjective (conv2d / relu / conv2d_backward_data / relu_backward and the Gram
  products through convkit's linear kernels; the small C x C matrices in numpy);
- PyTorch: the same losses written the usual way (F.conv2d, relu, f @ f.T, autograd), float32, weights
  without requires_grad, torch.set_num_threads equal to convkit's thread count.
First both objectives are evaluated at the same point and must agree (value and gradient, float32 tolerance);
then each run is timed (one after the other, the same number of L-BFGS iterations). Reported: seconds,
iterations, evaluations, ms per evaluation, the final losses, and the ratio convkit / torch (< 1: convkit is
faster). Then convkit alone at LARGE x LARGE (512 by default; --torch-large times torch there too).

The seconds of each run are wall time; cpu_seconds (process CPU time, all threads) is recorded beside
them, and the load average before and after, because on a shared machine other work skews the wall time.
--eval-filters adds single-evaluation timings (convkit and torch interleaved, medians).

    python benchmarks/bench_style.py [--size 256] [--iterations 300] [--filters 128] [--large 512]
                                     [--large-iterations N] [--eval-filters 32,128] [--threads N]
                                     [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

import convkit
import convkit.style as S

ALPHA, BETA = 1.0, 1e4


class TorchObjective:
    """The objective of convkit.style.StyleObjective with a RandomFilterNet, in PyTorch (autograd)."""

    def __init__(self, torch, net: S.RandomFilterNet, content, style, alpha, beta, content_layers, style_layers):
        self.torch = torch
        self.w = {ln: torch.from_numpy(np.ascontiguousarray(convkit.to_numpy(w))) for ln, (k, w) in net.weights.items()}
        self.alpha, self.beta = alpha, beta
        self.cl, self.sl = tuple(content_layers), tuple(style_layers)
        self.evaluations = 0
        with torch.no_grad():
            self.p = {ln: f for ln, f in self.features(torch.from_numpy(content), self.cl).items()}
            self.a = {ln: self.gram(f) for ln, f in self.features(torch.from_numpy(style), self.sl).items()}

    def features(self, x, layers):
        F = self.torch.nn.functional
        return {ln: F.relu(F.conv2d(x - 0.5, self.w[ln])) for ln in layers}

    @staticmethod
    def gram(f):
        f2 = f.reshape(f.shape[1], -1)
        return f2 @ f2.T / f2.shape[1]

    def loss(self, x):
        f = self.features(x, dict.fromkeys(self.cl + self.sl))
        lc = sum(0.5 * ((f[ln] - self.p[ln]) ** 2).mean() for ln in self.cl) / len(self.cl)
        ls = sum(((self.gram(f[ln]) - self.a[ln]) ** 2).sum() / (4 * f[ln].shape[1] ** 2) for ln in self.sl)
        ls = ls / len(self.sl)
        return self.alpha * lc + self.beta * ls, lc, ls

    def __call__(self, x_flat, shape):
        self.evaluations += 1
        x = self.torch.from_numpy(x_flat.astype(np.float32).reshape(shape)).requires_grad_(True)
        total, _, _ = self.loss(x)
        total.backward()
        return float(total.item()), x.grad.numpy().astype(np.float64).reshape(-1)

    def parts(self, x):
        with self.torch.no_grad():
            total, lc, ls = self.loss(self.torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        return {"total": float(total), "content": float(lc), "style": float(ls)}


def _lbfgs(fun, x0, iterations):
    """The driver convkit.style uses (scipy L-BFGS-B, bounds [0, 1], restarted if the float32 line search
    stalls), for both sides. Returns the wall seconds and the process CPU seconds (all threads): on a shared
    machine the CPU seconds are the steadier measure of the work each side does."""
    t, c = time.perf_counter(), time.process_time()
    x, its, nfev, message = S.lbfgs(fun, x0, iterations)
    return x, its, nfev, message, time.perf_counter() - t, time.process_time() - c


def problem(size, filters, seed=0):
    net = S.RandomFilterNet(filters=filters, seed=seed)
    content = S.load_image("skimage:astronaut", (size, size))
    style = S.load_image("skimage:gravel", (size, size))
    return net, content, style


def run_convkit(size, filters, iterations):
    net, content, style = problem(size, filters)
    obj = S.StyleObjective(net, content, style, alpha=ALPHA, beta=BETA)
    x0 = S._to_nchw(content, np.float32)
    shape = x0.shape

    def fun(xf):
        total, g, _ = obj(xf.astype(np.float32).reshape(shape))
        return total, np.asarray(g, np.float64).reshape(-1)

    load0 = os.getloadavg()[0]
    x, its, nfev, message, secs, cpu = _lbfgs(fun, x0, iterations)
    final = obj(x.astype(np.float32).reshape(shape), need_grad=False)[2]
    start = obj(x0, need_grad=False)[2]
    return {"seconds": secs, "cpu_seconds": cpu, "load_average_1min_before_after": [load0, os.getloadavg()[0]],
            "iterations": its, "evaluations": nfev, "message": message,
            "ms_per_evaluation": 1e3 * secs / nfev, "start": _short(start), "final": _short(final),
            "gmac_per_evaluation": 2 * net.macs(size, size) / 1e9}


def run_torch(torch, size, filters, iterations):
    net, content, style = problem(size, filters)
    tobj = TorchObjective(torch, net, S._to_nchw(content, np.float32), S._to_nchw(style, np.float32), ALPHA, BETA,
                          net.content_layers, net.style_layers)
    x0 = S._to_nchw(content, np.float32)
    load0 = os.getloadavg()[0]
    x, its, nfev, message, secs, cpu = _lbfgs(lambda xf: tobj(xf, x0.shape), x0, iterations)
    return {"seconds": secs, "cpu_seconds": cpu, "load_average_1min_before_after": [load0, os.getloadavg()[0]],
            "iterations": its, "evaluations": nfev, "message": message,
            "ms_per_evaluation": 1e3 * secs / nfev, "start": tobj.parts(x0), "final": tobj.parts(x.reshape(x0.shape))}


def _short(parts):
    return {k: float(parts[k]) for k in ("total", "content", "style")}


def validate(torch, size, filters):
    """Both objectives at the same point (the content image plus noise): value and gradient must agree."""
    net, content, style = problem(size, filters)
    obj = S.StyleObjective(net, content, style, alpha=ALPHA, beta=BETA)
    tobj = TorchObjective(torch, net, S._to_nchw(content, np.float32), S._to_nchw(style, np.float32), ALPHA, BETA,
                          net.content_layers, net.style_layers)
    rng = np.random.default_rng(1)
    x = np.clip(S._to_nchw(content, np.float32) + rng.normal(0, 0.05, (1, 3, size, size)), 0, 1).astype(np.float32)
    f1, g1, _ = obj(x)
    f2, g2 = tobj(x.astype(np.float64).reshape(-1), x.shape)
    g1 = np.asarray(g1, np.float64).reshape(-1)
    rel_f = abs(f1 - f2) / abs(f2)
    rel_g = np.linalg.norm(g1 - g2) / np.linalg.norm(g2)
    # float32 on both sides with sums over up to 65536 positions: 1e-3 relative is far above rounding noise
    # and far below any real difference in the objective
    ok = rel_f < 1e-3 and rel_g < 1e-3
    print(f"validate {size}x{size}: loss {f1:.6g} vs torch {f2:.6g} (rel {rel_f:.1e}), gradient rel diff "
          f"{rel_g:.1e}: {'ok' if ok else 'MISMATCH'}")
    if not ok:
        raise SystemExit("convkit and torch objectives disagree; not timing")


def per_evaluation(torch, size, filters, repeats):
    """One objective + gradient evaluation at the content image, convkit and torch interleaved, medians."""
    from convkit.bench import time_pair

    net, content, style = problem(size, filters)
    obj = S.StyleObjective(net, content, style, alpha=ALPHA, beta=BETA)
    tobj = TorchObjective(torch, net, S._to_nchw(content, np.float32), S._to_nchw(style, np.float32), ALPHA, BETA,
                          net.content_layers, net.style_layers)
    x = S._to_nchw(content, np.float32)
    xf = x.astype(np.float64).reshape(-1)
    load0 = os.getloadavg()[0]
    tc, tt = time_pair(lambda: obj(x), lambda: tobj(xf, x.shape), repeats)
    return {"filters": filters, "size": size, "repeats": repeats, "convkit_ms": 1e3 * tc, "torch_ms": 1e3 * tt,
            "ratio": tc / tt, "load_average_1min_before_after": [load0, os.getloadavg()[0]]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--large", type=int, default=512, help="also time convkit at this size (0: skip)")
    ap.add_argument("--torch-large", action="store_true", help="time torch at --large too")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--large-iterations", type=int, default=0, help="L-BFGS iterations at --large (default: "
                                                                   "--iterations)")
    ap.add_argument("--eval-filters", default="", help="also time single evaluations (interleaved, median of "
                                                       "--eval-repeats) at --size for these filter counts, e.g. 32,128")
    ap.add_argument("--eval-repeats", type=int, default=5)
    ap.add_argument("--filters", type=int, default=128, help="random filters per scale")
    ap.add_argument("--threads", type=int, default=0, help="threads for both (0: convkit's default)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        convkit.set_num_threads(args.threads)
    threads = convkit.get_num_threads()
    torch.set_num_threads(threads)
    name = (f"style:random{args.filters}x6 ic3ih{args.size}iw{args.size}_k3-5-7-11-15-23_lbfgs{args.iterations}")
    print(f"{name}\nthreads {threads} (convkit and torch), torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    validate(torch, 64, args.filters)
    out = {"problem": name, "threads": threads, "torch_version": torch.__version__, "alpha": ALPHA, "beta": BETA,
           "command": "python benchmarks/bench_style.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "cpus": os.cpu_count(), "load_average_at_start": list(os.getloadavg()),
           "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if args.eval_filters:
        out["per_evaluation"] = []
        for nf in (int(v) for v in args.eval_filters.split(",") if v.strip()):
            r = per_evaluation(torch, args.size, nf, args.eval_repeats)
            out["per_evaluation"].append(r)
            print(f"one evaluation at {args.size}x{args.size}, {nf} filters per scale: convkit {r['convkit_ms']:.0f} ms, "
                  f"torch {r['torch_ms']:.0f} ms (medians of {r['repeats']} interleaved), ratio {r['ratio']:.2f}",
                  flush=True)
    ck = run_convkit(args.size, args.filters, args.iterations)
    print(f"convkit {args.size}x{args.size}: {ck['seconds']:.1f} s (cpu {ck['cpu_seconds']:.1f} s), {ck['iterations']} iterations, {ck['evaluations']} "
          f"evaluations, {ck['ms_per_evaluation']:.0f} ms/evaluation ({ck['gmac_per_evaluation']:.1f} GMAC of "
          f"convolution each); style loss {ck['start']['style']:.3g} -> {ck['final']['style']:.3g}, content "
          f"{ck['final']['content']:.3g}")
    th = run_torch(torch, args.size, args.filters, args.iterations)
    print(f"torch   {args.size}x{args.size}: {th['seconds']:.1f} s (cpu {th['cpu_seconds']:.1f} s), {th['iterations']} iterations, {th['evaluations']} "
          f"evaluations, {th['ms_per_evaluation']:.0f} ms/evaluation; style loss {th['start']['style']:.3g} -> "
          f"{th['final']['style']:.3g}, content {th['final']['content']:.3g}")
    ratio = ck["seconds"] / th["seconds"]
    ratio_eval = ck["ms_per_evaluation"] / th["ms_per_evaluation"]
    print(f"ratio convkit/torch: {ratio:.2f} (total time), {ratio_eval:.2f} (per evaluation); < 1 means convkit "
          f"is faster")
    out.update({"convkit": ck, "torch": th, "ratio_total": ratio, "ratio_per_evaluation": ratio_eval})
    if args.large:
        cl = run_convkit(args.large, args.filters, args.large_iterations or args.iterations)
        print(f"convkit {args.large}x{args.large}: {cl['seconds']:.1f} s (cpu {cl['cpu_seconds']:.1f} s), {cl['iterations']} iterations, "
              f"{cl['evaluations']} evaluations, {cl['ms_per_evaluation']:.0f} ms/evaluation; style loss "
              f"{cl['start']['style']:.3g} -> {cl['final']['style']:.3g}")
        out["convkit_large"] = cl
        if args.torch_large:
            tl = run_torch(torch, args.large, args.filters, args.large_iterations or args.iterations)
            print(f"torch   {args.large}x{args.large}: {tl['seconds']:.1f} s, {tl['ms_per_evaluation']:.0f} "
                  f"ms/evaluation; ratio {cl['seconds'] / tl['seconds']:.2f}")
            out["torch_large"] = tl
    print(f"load average {os.getloadavg()[0]:.1f} at the end (other work on the machine skews both sides)")
    out["load_average_at_end"] = list(os.getloadavg())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
