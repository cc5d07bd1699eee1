"""Plain float64 references for the attacks' pieces (the specification; written for clarity).

The objective J ascended by every attack, for logits z of one image and class c (the true label when
untargeted, the target when targeted), with s = +1 (targeted) or -1 (untargeted):
    ce:     J = s * log softmax(z)[c]
    score:  J = s * z[c]
    margin: J = s * (z[c] - max_{j != c} z[j])
"""
import numpy as np


def log_softmax(z):
    z = np.asarray(z, np.float64)
    out = np.empty_like(z)
    for i, row in enumerate(z):
        m = max(row)
        total = sum(np.exp(v - m) for v in row)
        out[i] = row - m - np.log(total)
    return out


def objective(z, classes, loss, targeted):
    """(J [N], dJ/dz [N, K]) in float64, one row at a time."""
    z = np.asarray(z, np.float64)
    s = 1.0 if targeted else -1.0
    ls = log_softmax(z)
    value = np.zeros(z.shape[0])
    grad = np.zeros_like(z)
    for i, c in enumerate(classes):
        if loss == "ce":
            value[i] = s * ls[i, c]
            p = np.exp(ls[i])                       # d log softmax(z)[c] / dz = onehot(c) - softmax(z)
            grad[i] = -s * p
            grad[i, c] += s
        elif loss == "score":
            value[i] = s * z[i, c]
            grad[i, c] = s
        else:
            others = [(z[i, j], j) for j in range(z.shape[1]) if j != c]
            best, j = max(others)
            value[i] = s * (z[i, c] - best)
            grad[i, c] = s
            grad[i, j] = -s
    return value, grad


def fgsm_step(x, g, eps, bounds):
    """x + eps * sign(g), clipped to the bounds (one image or a batch)."""
    return np.clip(np.asarray(x, np.float64) + eps * np.sign(g), bounds[0], bounds[1])


def project_linf(x_adv, x, eps, bounds):
    return np.clip(np.clip(x_adv, x - eps, x + eps), bounds[0], bounds[1])


def project_l2(x_adv, x, eps, bounds):
    out = np.array(x_adv, np.float64)
    for i in range(out.shape[0]):
        d = out[i] - x[i]
        n = np.sqrt(np.sum(d * d))
        if n > eps:
            d = d * (eps / n)
        out[i] = np.clip(x[i] + d, bounds[0], bounds[1])
    return out


def pgd(grad_fn, x, x_start, eps, norm, steps, step_size, bounds):
    """Plain PGD without early stopping: grad_fn(x_adv) -> dJ/dx."""
    x = np.asarray(x, np.float64)
    xa = np.array(x_start, np.float64)
    for _ in range(steps):
        g = grad_fn(xa)
        if norm == "linf":
            xa = project_linf(xa + step_size * np.sign(g), x, eps, bounds)
        else:
            n = np.sqrt(np.sum(g.reshape(len(g), -1) ** 2, axis=1)).reshape(-1, 1, 1, 1)
            xa = project_l2(xa + step_size * np.where(n > 0, g / np.where(n > 0, n, 1), 0), x, eps, bounds)
    return xa
