"""The same attacks written with PyTorch autograd, run on a torch copy of a convkit network
(convkit.io.to_torch). Test and benchmark reference only; convkit itself never needs torch.
"""
import torch


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
