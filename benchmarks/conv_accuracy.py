"""How far convkit's and PyTorch's float32 convolutions are from the float64 reference, per route.

    python benchmarks/conv_accuracy.py

For AlexNet conv2, conv3 and conv5 (batch 4, float32, weights scaled by 1/sqrt(fan-in)) it prints the
relative RMS error, sqrt(mean((a - r)^2) / mean(r^2)), of the forward, data gradient and weight gradient
against tests/reference/conv2d.py in float64: convkit through Winograd (the default route for these
layers: F(2, 5) along the rows for conv2's 5 x 5, F(2 x 2, 3 x 3) for the others), convkit through the
GEMM path (CONVKIT_CONV_WINOGRAD=0), and torch.nn.functional.conv2d with autograd. The tests bound every
element (tests/test_conv2d.py, winograd_bounds and rows_bounds); this is the typical size of the error
beside them.
"""
import os
import sys

import numpy as np

import convkit.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from reference import conv2d as ref  # noqa: E402

LAYERS = [("conv2", (4, 96, 27, 27), (256, 48, 5, 5), 2), ("conv3", (4, 256, 13, 13), (384, 256, 3, 3), 1),
          ("conv5", (4, 384, 13, 13), (256, 192, 3, 3), 2)]


def rms(a, r):
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - r) ** 2) / np.mean(r ** 2)))


def main():
    rng = np.random.default_rng(0)
    old = os.environ.get("CONVKIT_CONV_WINOGRAD")
    try:
        for name, xs, ws, g in LAYERS:
            x = rng.standard_normal(xs).astype(np.float32)
            w = (rng.standard_normal(ws) / np.sqrt(ws[1] * ws[2] * ws[3])).astype(np.float32)
            kw = dict(padding=ws[2] // 2, groups=g)
            y64 = ref.conv2d(x, w, None, **kw)
            dy = rng.standard_normal(y64.shape).astype(np.float32)
            want = (y64, ref.conv2d_backward_data(dy, w, x.shape, **kw), ref.conv2d_backward_weight(x, dy, w.shape, **kw))
            rows = {}
            for label, mode in (("convkit, Winograd", "1"), ("convkit, GEMM path", "0")):
                os.environ["CONVKIT_CONV_WINOGRAD"] = mode
                got = (F.conv2d(x, w, None, **kw), F.conv2d_backward_data(dy, w, x.shape, **kw),
                       F.conv2d_backward_weight(x, dy, w.shape, **kw))
                rows[label] = [rms(a, r) for a, r in zip(got, want)]
            try:
                import torch
                tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
                ty = torch.nn.functional.conv2d(tx, tw, None, **kw)
                ty.backward(torch.tensor(dy))
                rows[f"torch {torch.__version__}"] = [rms(a, r) for a, r in
                                                     zip((ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy()), want)]
            except ImportError:
                pass
            for label, errs in rows.items():
                print(f"{name} {label:22s} fwd {errs[0]:.2e}  bwd data {errs[1]:.2e}  bwd weight {errs[2]:.2e}")
    finally:
        if old is None:
            os.environ.pop("CONVKIT_CONV_WINOGRAD", None)
        else:
            os.environ["CONVKIT_CONV_WINOGRAD"] = old


if __name__ == "__main__":
    main()
