"""The same attacks written with PyTorch autograd, on a torch copy of a convkit network (test and
benchmark reference only; torch is never needed by convkit itself).

to_torch(model) copies a convkit Sequential of Conv2d / ReLU / MaxPool2d / LocalResponseNorm /
Flatten / Linear / Dropout layers into torch.nn.Sequential with the same weights (and dtype).
"""
import numpy as np
import torch


def to_torch(model):
    from convkit import nn
    from convkit.device import to_numpy

    layers = []
    for name in model.names:
        m = model[name]
        if isinstance(m, nn.Conv2d):
            t = torch.nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                                m.groups, bias=m.bias is not None)
            t.weight.data = torch.from_numpy(np.array(to_numpy(m.weight.data)))
            if m.bias is not None:
                t.bias.data = torch.from_numpy(np.array(to_numpy(m.bias.data)))
        elif isinstance(m, nn.Linear):
            w = to_numpy(m.weight.data)
            t = torch.nn.Linear(w.shape[1], w.shape[0], bias=m.bias is not None)
            t.weight.data = torch.from_numpy(np.array(w))
            if m.bias is not None:
                t.bias.data = torch.from_numpy(np.array(to_numpy(m.bias.data)))
        elif isinstance(m, nn.ReLU):
            t = torch.nn.ReLU()
        elif isinstance(m, nn.MaxPool2d):
            t = torch.nn.MaxPool2d(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode)
        elif isinstance(m, nn.LocalResponseNorm):
            t = torch.nn.LocalResponseNorm(m.size, m.alpha, m.beta, m.k)
        elif isinstance(m, nn.Flatten):
            t = torch.nn.Flatten()
        elif isinstance(m, nn.Dropout):
            t = torch.nn.Dropout(m.p)
        else:
            raise TypeError(f"to_torch: no torch twin for layer {name!r} ({type(m).__name__})")
        layers.append(t)
    return torch.nn.Sequential(*layers).eval()


def objective(z, c, loss, targeted):
    """The summed objective J (see tests/reference/attacks.py) as a torch scalar."""
    s = 1.0 if targeted else -1.0
    rows = torch.arange(z.shape[0])
    if loss == "ce":
        return s * torch.log_softmax(z, dim=1)[rows, c].sum()
    if loss == "score":
        return s * z[rows, c].sum()
    others = z.clone()
    others[rows, c] = -torch.inf
    return s * (z[rows, c] - others.max(dim=1).values).sum()


def input_grad(tm, x, c, loss, targeted):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(objective(tm(x), c, loss, targeted), x)
    return g


def fgsm(tm, x, c, eps, loss="ce", targeted=False, bounds=(0.0, 1.0)):
    g = input_grad(tm, x, c, loss, targeted)
    return (x + eps * g.sign()).clamp(bounds[0], bounds[1]).detach()


def pgd(tm, x, c, eps, steps, step_size, x_start, norm="linf", loss="ce", targeted=False, bounds=(0.0, 1.0)):
    """Madry et al.'s PGD from x_start (no early stopping)."""
    xa = x_start.detach().clone()
    for _ in range(steps):
        g = input_grad(tm, xa, c, loss, targeted)
        if norm == "linf":
            xa = xa + step_size * g.sign()
            xa = torch.min(torch.max(xa, x - eps), x + eps).clamp(bounds[0], bounds[1])
        else:
            n = g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            xa = xa + step_size * torch.where(n > 0, g / n.clamp_min(1e-300), torch.zeros_like(g))
            d = xa - x
            dn = d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            d = d * torch.where(dn > eps, eps / dn.clamp_min(1e-300), torch.ones_like(dn))
            xa = (x + d).clamp(bounds[0], bounds[1])
        xa = xa.detach()
    return xa


def predict(tm, x):
    with torch.no_grad():
        z = tm(x)
        p = torch.softmax(z, dim=1)
        conf, pred = p.max(dim=1)
    return pred, conf
