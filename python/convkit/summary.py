"""convkit.summary: per-layer output shape, parameters and multiply-accumulates of a network.

Computed from the layers' shapes alone (nothing runs, no memory for activations), so it works for
VGG-19 at 224x224 as fast as for LeNet-5. ``convkit summary alexnet`` prints AlexNet's table next
to the lecture's figures and points out where the lecture disagrees with itself.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import numpy as np

from .nn import Module, Sequential

# The lecture's AlexNet table (parameters, MACs per image), as printed on its slide.
LECTURE_ALEXNET = {
    "conv1": ("35K", 35e3, "105M", 105e6),
    "conv2": ("307K", 307e3, "223M", 223e6),
    "conv3": ("884K", 884e3, "149M", 149e6),
    "conv4": ("1.3M", 1.3e6, "112M", 112e6),
    "conv5": ("442K", 442e3, "74M", 74e6),
    "fc6": ("37M", 37e6, "37M", 37e6),
    "fc7": ("16M", 16e6, "16M", 16e6),
    "fc8": ("4M", 4e6, "4M", 4e6),
}


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple
    params: int
    macs: int


@dataclass
class Summary:
    """The rows (one per layer), totals, and the notes; str() gives the table."""
    model_name: str
    input_shape: tuple
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    lecture: dict | None = None

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)

    def row(self, name: str) -> LayerRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no layer named {name!r} in the summary")

    def as_dict(self) -> dict:
        return {"model": self.model_name, "input_shape": list(self.input_shape),
                "layers": [{"name": r.name, "kind": r.kind, "output_shape": list(r.output_shape),
                            "params": r.params, "macs": r.macs} for r in self.rows],
                "total_params": self.total_params, "total_macs": self.total_macs, "notes": list(self.notes)}

    def __str__(self) -> str:
        head = ["layer", "type", "output shape", "params", "MACs"]
        if self.lecture:
            head += ["lecture params", "lecture MACs"]
        body = []
        for r in self.rows:
            line = [r.name, r.kind, "x".join(str(s) for s in r.output_shape[1:]), _human(r.params), _human(r.macs)]
            if self.lecture:
                lec = self.lecture.get(r.name)
                line += [lec[0], lec[2]] if lec else ["", ""]
            body.append(line)
        total = ["total", "", "", _human(self.total_params), _human(self.total_macs)]
        if self.lecture:
            total += ["", ""]
        widths = [max(len(str(x[i])) for x in [head, total] + body) for i in range(len(head))]

        def fmt(cells):
            return "  ".join(str(c).ljust(w) if i < 3 else str(c).rjust(w)
                             for i, (c, w) in enumerate(zip(cells, widths)))

        sep = "-" * len(fmt(head))
        shape = "x".join(str(s) for s in self.input_shape[1:])
        out = [f"{self.model_name}: input {shape} (batch {self.input_shape[0]})", fmt(head), sep]
        out += [fmt(b) for b in body]
        out += [sep, fmt(total), f"({self.total_params:,} parameters, {self.total_macs:,} multiply-accumulates)"]
        if self.notes:
            out += [""] + [textwrap.fill(n, 100, initial_indent="note: ", subsequent_indent="      ")
                           for n in self.notes]
        return "\n".join(out)


def _human(v: int) -> str:
    if v == 0:
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if v >= div:
            return f"{v / div:.1f}{unit}"
    return str(v)


def summary(model: Module, input_shape, name: str | None = None) -> Summary:
    """Per-layer output shape, parameter count and MACs for an input of `input_shape`.

    input_shape is (C, H, W) (batch 1 is assumed) or (N, C, H, W); MACs are for the whole batch.
    Conv MACs = N * OC * OH * OW * (C / groups) * KH * KW, linear MACs = N * IN * OUT; pooling,
    LRN and activations count zero (as in the lecture). Layers of nested Sequentials are listed
    with dotted names.
    """
    if not isinstance(model, Module):
        raise TypeError(f"summary: model must be a convkit.nn.Module, got {type(model).__name__}")
    if not isinstance(input_shape, (tuple, list)) or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in input_shape):
        raise ValueError(f"summary: input_shape must be a tuple of positive ints like (3, 227, 227), "
                         f"got {input_shape!r}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    s = Summary(name or getattr(model, "arch", type(model).__name__), shape)

    def walk(m: Module, prefix: str, in_shape):
        if isinstance(m, Sequential):
            for n, layer in m._modules.items():
                in_shape = walk(layer, prefix + n, in_shape) if not isinstance(layer, Sequential) \
                    else walk(layer, prefix + n + ".", in_shape)
            return in_shape
        out = m.output_shape(in_shape)
        s.rows.append(LayerRow(prefix or type(m).__name__, type(m).__name__, out, m.num_parameters(), m.macs(in_shape)))
        return out

    walk(model, "", shape)
    if getattr(model, "arch", None) == "alexnet" and shape[1:] == (3, 227, 227):
        s.lecture = LECTURE_ALEXNET
        s.notes += alexnet_lecture_notes(s)
    return s


def alexnet_lecture_notes(s: Summary) -> list:
    """Compare an AlexNet summary with the lecture's table; say where the lecture disagrees with itself."""
    notes = ["the lecture's figures are rounded down and count weights only; convkit's include the biases "
             "(e.g. conv3: 3x3x256x384 = 884,736 weights + 384 biases). Every layer but conv4 agrees to "
             "within that rounding (5%)."]
    n = s.input_shape[0]
    for name, (ptxt, pval, mtxt, mval) in LECTURE_ALEXNET.items():
        r = s.row(name)
        ok_p = abs(r.params - pval) <= 0.05 * pval
        ok_m = abs(r.macs / n - mval) <= 0.05 * mval
        if ok_p and ok_m:
            continue
        if name == "conv4":
            ungrouped = 3 * 3 * 384 * 384
            notes.append(
                f"conv4: the lecture lists {ptxt} parameters and {mtxt} MACs, which disagree with each other. "
                f"{mtxt} MACs = 13x13x384 outputs x 3x3x192 inputs each: the two-group convolution of the "
                f"diagram, which has 3x3x192x384 = {3 * 3 * 192 * 384:,} weights (+384 biases = "
                f"{r.params:,}, 0.66M). {ptxt} is the ungrouped count 3x3x384x384 = {ungrouped:,}, which "
                f"would cost 13x13x384x3x3x384 = {13 * 13 * 384 * ungrouped // 384:,} MACs (224M). convkit "
                f"follows the diagram (groups=2): {_human(r.params)} parameters, {_human(r.macs // n)} MACs.")
        else:
            notes.append(f"{name}: convkit counts {_human(r.params)} parameters and {_human(r.macs // n)} MACs; "
                         f"the lecture lists {ptxt} and {mtxt}.")
    return notes


__all__ = ["LECTURE_ALEXNET", "LayerRow", "Summary", "summary"]


# ---- the `convkit summary` command ----------------------------------------------------------------

def _cmd_summary(args) -> int:
    import json

    from . import models

    if args.model not in models.MODELS:
        raise ValueError(f"unknown model {args.model!r}; choose one of {', '.join(models.MODELS)}")
    kwargs = {"classifier": True} if args.model == "vgg19" else {}
    model = models.get(args.model, **kwargs)
    shape = model.input_shape
    if args.input:
        try:
            shape = tuple(int(s) for s in args.input.replace("x", ",").split(","))
        except ValueError:
            raise ValueError(f"--input must look like 3,227,227, got {args.input!r}") from None
    s = summary(model, shape)
    print(json.dumps(s.as_dict(), indent=1) if args.json else s)
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("summary", help="per-layer output shape, parameters and MACs of a zoo model",
                       description="For alexnet, the table is printed next to the lecture's figures, with notes "
                                   "where the lecture disagrees with itself.")
    p.add_argument("model", help="lenet5, alexnet, alexnet_torchvision or vgg19")
    p.add_argument("--input", default=None, help="input shape C,H,W (default: the model's own)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_cmd_summary)
