"""convkit.optim against torch.optim (same rules, same numbers), schedules, and bad arguments."""
import numpy as np
import pytest

import convkit.nn as nn
import convkit.optim as optim
from convkit.testing import assert_close, assert_raises


def _params(rng, dtype=np.float64):
    return [nn.Parameter(rng.standard_normal((4, 3)).astype(dtype), "w"),
            nn.Parameter(rng.standard_normal(5).astype(dtype), "b")]


def _run(make_ours, make_torch, rng, steps=6, dtype=np.float64):
    """Apply the same gradient sequence with both optimizers; compare the parameters after each step."""
    torch = pytest.importorskip("torch")
    ps = _params(rng, dtype)
    tps = [torch.tensor(p.data.copy(), requires_grad=True) for p in ps]
    opt, topt = make_ours(ps), make_torch(tps)
    for _ in range(steps):
        for p, tp in zip(ps, tps):
            g = rng.standard_normal(p.shape).astype(dtype)
            p.grad = g.copy()
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
        for p, tp in zip(ps, tps):
            # float64, same formulas in the same order up to regrouping: agreement to ~1e-14
            assert_close(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-13)
    return ps


@pytest.mark.parametrize("kw", [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
                                dict(momentum=0.8, dampening=0.3, weight_decay=0.01),
                                dict(momentum=0.9, nesterov=True, weight_decay=5e-4)])
def test_sgd_matches_torch(kw, rng):
    torch = pytest.importorskip("torch")
    _run(lambda ps: optim.SGD(ps, lr=0.1, **kw), lambda ps: torch.optim.SGD(ps, lr=0.1, **kw), rng)


@pytest.mark.parametrize("kw", [dict(), dict(weight_decay=0.01), dict(betas=(0.8, 0.99), eps=1e-6)])
def test_adam_matches_torch(kw, rng):
    torch = pytest.importorskip("torch")
    _run(lambda ps: optim.Adam(ps, lr=0.01, **kw), lambda ps: torch.optim.Adam(ps, lr=0.01, **kw), rng)


def test_adamw_matches_torch(rng):
    torch = pytest.importorskip("torch")
    _run(lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.1),
         lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1), rng)


def test_sgd_hand_worked():
    # p = 1, g = 2, lr 0.5, momentum 0.5: step 1: buf = g = 2, p = 1 - 0.5*2 = 0
    # step 2 with g = 2: buf = 0.5*2 + 2 = 3, p = 0 - 0.5*3 = -1.5
    p = nn.Parameter(np.array([1.0]))
    opt = optim.SGD([p], lr=0.5, momentum=0.5)
    for expect in (0.0, -1.5):
        p.grad = np.array([2.0])
        opt.step()
        assert p.data[0] == expect


def test_float32_updates_stay_float32(rng):
    ps = _params(rng, np.float32)
    for opt in (optim.SGD(ps, 0.1, momentum=0.9), optim.Adam(ps)):
        for p in ps:
            p.grad = np.ones(p.shape, np.float32)
        opt.step()
        assert all(p.data.dtype == np.float32 for p in ps)


def test_skips_parameters_without_grad(rng):
    ps = _params(rng)
    before = ps[1].data.copy()
    ps[0].grad = np.ones(ps[0].shape)
    optim.Adam(ps).step()
    np.testing.assert_array_equal(ps[1].data, before)


def test_takes_a_model():
    m = nn.Sequential(nn.Linear(3, 2, rng=0))
    assert len(optim.SGD(m, lr=0.1).params) == 2


@pytest.mark.parametrize("name,kw", [("StepLR", dict(step_size=3, gamma=0.5)),
                                     ("CosineAnnealingLR", dict(T_max=7, eta_min=0.001))])
def test_schedules_match_torch(name, kw):
    torch = pytest.importorskip("torch")
    opt = optim.SGD([nn.Parameter(np.ones(2))], lr=0.1)
    topt = torch.optim.SGD([torch.ones(2, requires_grad=True)], lr=0.1)
    s, ts = getattr(optim, name)(opt, **kw), getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    for _ in range(9 if name == "StepLR" else 7):  # torch's cosine is only closed-form up to T_max
        assert abs(opt.lr - topt.param_groups[0]["lr"]) < 1e-12
        topt.step()
        s.step()
        ts.step()


def test_lambda_and_state_dict():
    p = nn.Parameter(np.ones(3))
    opt = optim.SGD([p], lr=1.0, momentum=0.9)
    sched = optim.LambdaLR(opt, lambda e: 1 / (e + 1))
    assert sched.step() == 0.5 and opt.lr == 0.5
    p.grad = np.ones(3)
    opt.step()
    sd = opt.state_dict()
    opt2 = optim.SGD([nn.Parameter(np.ones(3))], lr=1.0, momentum=0.9)
    opt2.load_state_dict(sd)
    assert opt2.lr == 0.5 and opt2.steps == 1
    np.testing.assert_array_equal(opt2.state[0]["momentum_buffer"], opt.state[0]["momentum_buffer"])


def test_bad_arguments():
    p = [nn.Parameter(np.ones(2))]
    assert_raises(ValueError, r"SGD: got an empty parameter list", optim.SGD, [], lr=0.1)
    assert_raises(TypeError, r"SGD: params\[0\] must be a convkit.nn.Parameter, got ndarray", optim.SGD,
                  [np.ones(2)], lr=0.1)
    assert_raises(ValueError, r"SGD: lr must be in >= 0.0, got -1.0", optim.SGD, p, lr=-1)
    assert_raises(TypeError, r"SGD: lr must be a finite number, got nan", optim.SGD, p, lr=float("nan"))
    assert_raises(ValueError, r"nesterov=True needs momentum > 0", optim.SGD, p, lr=0.1, nesterov=True)
    assert_raises(ValueError, r"Adam: betas\[1\] must be in \[0.0, 1.0\), got 1.0", optim.Adam, p, betas=(0.9, 1.0))
    assert_raises(ValueError, r"betas must be a pair", optim.Adam, p, betas=0.9)
    assert_raises(ValueError, r"StepLR: step_size must be an int >= 1", optim.StepLR, optim.SGD(p, 0.1), 0)
    assert_raises(TypeError, r"optimizer must be a convkit.optim.Optimizer", optim.StepLR, "sgd", 2)
    p[0].grad = np.ones(3)
    assert_raises(ValueError, r"gradient of a parameter has shape \[3\]", optim.SGD(p, 0.1).step)
