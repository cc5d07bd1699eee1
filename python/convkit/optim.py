"""convkit.optim: SGD (momentum, Nesterov, weight decay), Adam/AdamW and learning-rate schedules.

The update rules are PyTorch's (torch.optim.SGD, Adam, AdamW), so hyperparameters carry over; the
arithmetic lives in convkit.nn._arith (numpy in place on the CPU; fused device ops on CUDA once the
build has them). Optimizers read ``p.grad`` (skipping parameters whose grad is None) and update
``p.data`` in place; call ``model.zero_grad()`` between steps, since backward accumulates.
"""
from __future__ import annotations

import math
import numbers

from .nn import _arith
from .nn.module import Parameter


def _check_params(params, cls: str) -> list:
    if hasattr(params, "parameters") and callable(params.parameters):
        params = params.parameters()
    params = list(params)
    if not params:
        raise ValueError(f"{cls}: got an empty parameter list")
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{cls}: params[{i}] must be a convkit.nn.Parameter, got {type(p).__name__}")
    return params


def _num(v, cls: str, name: str, lo: float = 0.0, hi: float | None = None, hi_open: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
        raise TypeError(f"{cls}: {name} must be a finite number, got {v!r}")
    v = float(v)
    if v < lo or (hi is not None and (v > hi or (hi_open and v == hi))):
        rng = f"[{lo}, {hi}{')' if hi_open else ']'}" if hi is not None else f">= {lo}"
        raise ValueError(f"{cls}: {name} must be in {rng}, got {v}")
    return v


class Optimizer:
    """Base: holds the parameters, the learning rate ``lr`` (schedules change it) and per-parameter state."""

    def __init__(self, params, lr: float):
        cls = type(self).__name__
        self.params = _check_params(params, cls)
        self.lr = _num(lr, cls, "lr")
        self.initial_lr = self.lr
        self.state = [dict() for _ in self.params]
        self.steps = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        raise NotImplementedError

    def _check_grad(self, p: Parameter) -> None:
        if tuple(p.grad.shape) != p.shape or p.grad.dtype != p.dtype:
            raise ValueError(f"{type(self).__name__}: gradient of {p.name or 'a parameter'} has shape "
                             f"{list(p.grad.shape)} / dtype {p.grad.dtype}, parameter has {list(p.shape)} / {p.dtype}")

    def state_dict(self) -> dict:
        """Hyperparameters, step count and per-parameter buffers (as numpy arrays)."""
        from .device import to_numpy
        return {"lr": self.lr, "steps": self.steps,
                "state": [{k: (to_numpy(v).copy() if hasattr(v, "shape") else v) for k, v in s.items()}
                          for s in self.state]}

    def load_state_dict(self, sd: dict) -> None:
        from .device import asarray
        if len(sd["state"]) != len(self.params):
            raise ValueError(f"{type(self).__name__}.load_state_dict: state for {len(sd['state'])} parameters, "
                             f"optimizer has {len(self.params)}")
        self.lr, self.steps = float(sd["lr"]), int(sd["steps"])
        self.state = [{k: (asarray(v, device=p.device, dtype=p.dtype) if hasattr(v, "shape") else v)
                       for k, v in s.items()} for s, p in zip(sd["state"], self.params)]


class SGD(Optimizer):
    """Stochastic gradient descent, torch.optim.SGD's rule:

        g = grad + weight_decay * p
        buf = g (first step), then momentum * buf + (1 - dampening) * g
        p -= lr * (g + momentum * buf if nesterov else buf)         (p -= lr * g without momentum)
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, lr)
        cls = "SGD"
        self.momentum = _num(momentum, cls, "momentum")
        self.dampening = _num(dampening, cls, "dampening", 0.0, 1.0)
        self.weight_decay = _num(weight_decay, cls, "weight_decay")
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("SGD: nesterov=True needs momentum > 0 and dampening = 0")

    def step(self) -> None:
        for p, st in zip(self.params, self.state):
            if p.grad is None:
                continue
            self._check_grad(p)
            first = "momentum_buffer" not in st
            if self.momentum != 0.0 and first:
                st["momentum_buffer"] = _arith.zeros_like(p.data)
            _arith.sgd_update(p.data, p.grad, st.get("momentum_buffer"), self.lr, self.momentum, self.dampening,
                              self.nesterov, self.weight_decay, first)
        self.steps += 1


class Adam(Optimizer):
    """Adam (Kingma & Ba), torch.optim.Adam's rule; ``decoupled_weight_decay=True`` is AdamW.

        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= lr * m_hat / (sqrt(v_hat) + eps)
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 decoupled_weight_decay: bool = False):
        super().__init__(params, lr)
        cls = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{cls}: betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (_num(betas[0], cls, "betas[0]", 0.0, 1.0, True), _num(betas[1], cls, "betas[1]", 0.0, 1.0, True))
        self.eps = _num(eps, cls, "eps")
        self.weight_decay = _num(weight_decay, cls, "weight_decay")
        self.decoupled = bool(decoupled_weight_decay)

    def step(self) -> None:
        for p, st in zip(self.params, self.state):
            if p.grad is None:
                continue
            self._check_grad(p)
            if "m" not in st:
                st["m"], st["v"], st["t"] = _arith.zeros_like(p.data), _arith.zeros_like(p.data), 0
            st["t"] += 1
            _arith.adam_update(p.data, p.grad, st["m"], st["v"], self.lr, self.betas[0], self.betas[1], self.eps,
                               self.weight_decay, st["t"], self.decoupled)
        self.steps += 1


class AdamW(Adam):
    """Adam with decoupled weight decay (torch.optim.AdamW; default weight_decay 1e-2)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay, decoupled_weight_decay=True)


# ---- learning-rate schedules ----------------------------------------------------------------------

class LRScheduler:
    """Sets ``optimizer.lr`` from the number of ``step()`` calls (call it once per epoch, or per batch
    for per-iteration schedules), as torch.optim.lr_scheduler does."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: optimizer must be a convkit.optim.Optimizer, "
                            f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.initial_lr
        self.last_epoch = 0
        optimizer.lr = self.lr_at(0)

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError

    def step(self) -> float:
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)
        return self.optimizer.lr

    def get_last_lr(self) -> float:
        return self.optimizer.lr


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        if isinstance(step_size, bool) or not isinstance(step_size, numbers.Integral) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be an int >= 1, got {step_size!r}")
        self.step_size, self.gamma = int(step_size), _num(gamma, "StepLR", "gamma")
        super().__init__(optimizer)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2, constant at eta_min after T_max."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0):
        if isinstance(T_max, bool) or not isinstance(T_max, numbers.Integral) or T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be an int >= 1, got {T_max!r}")
        self.T_max, self.eta_min = int(T_max), _num(eta_min, "CosineAnnealingLR", "eta_min")
        super().__init__(optimizer)

    def lr_at(self, epoch):
        e = min(epoch, self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * e / self.T_max)) / 2


class LambdaLR(LRScheduler):
    """lr = base_lr * fn(epoch)."""

    def __init__(self, optimizer, fn):
        if not callable(fn):
            raise TypeError(f"LambdaLR: fn must be callable, got {type(fn).__name__}")
        self.fn = fn
        super().__init__(optimizer)

    def lr_at(self, epoch):
        return self.base_lr * float(self.fn(epoch))


__all__ = ["SGD", "Adam", "AdamW", "CosineAnnealingLR", "LRScheduler", "LambdaLR", "Optimizer", "StepLR"]
