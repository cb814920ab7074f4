"""The ScaledGD optimizer: LR schedulers, state_dict round trips, the non-finite policy, validated groups, dtypes.
(Its step against the closed form is T1 in test_scaledgd.py.)"""

import math

import pytest
import torch

from optimlab.matfac import ScaledGD, SymmetricMF, random_init


def gen(s=0):
    return torch.Generator().manual_seed(1000 + s)


def test_optimizer_state_dict_round_trip_resumes_bit_identically_and_schedulers_work():
    prob = SymmetricMF.random(20, 2, generator=0)
    X0 = random_init(prob, 2, generator=gen())

    def closure_for(P):
        def closure():
            P.grad = None
            loss = 0.25 * ((P @ P.T - prob.A) ** 2).sum()
            loss.backward()
            return loss
        return closure

    P = torch.nn.Parameter(X0.clone())
    opt = ScaledGD([P], lr=0.4, symmetric=True)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(6):
        opt.step(closure_for(P))
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    Q = torch.nn.Parameter(X0.clone())
    opt_q = ScaledGD([Q], lr=0.4, symmetric=True)
    for _ in range(3):
        opt_q.step(closure_for(Q))
    state = opt_q.state_dict()
    Q2 = torch.nn.Parameter(Q.detach().clone())
    opt2 = ScaledGD([Q2], lr=0.1, symmetric=True)
    opt2.load_state_dict(state)
    for _ in range(3):
        opt_q.step(closure_for(Q))
        opt2.step(closure_for(Q2))
    assert torch.equal(Q.detach(), Q2.detach()) and opt2.param_groups[0]["lr"] == 0.4


def test_optimizer_nonfinite_raises_or_skips_and_leaves_parameters():
    P = torch.nn.Parameter(torch.ones(4, 2, dtype=torch.float64))
    opt = ScaledGD([P], symmetric=True)
    P.grad = torch.full_like(P, float("nan"))
    with pytest.raises(FloatingPointError):
        opt.step()
    assert torch.equal(P.detach(), torch.ones(4, 2, dtype=torch.float64))
    opt = ScaledGD([P], symmetric=True, nonfinite="skip")
    opt.step(lambda: torch.tensor(math.inf))
    assert torch.equal(P.detach(), torch.ones(4, 2, dtype=torch.float64)) and opt.skipped_steps == 1
    assert opt.state_dict()["skipped_steps"] == 1
    fresh = ScaledGD([P], symmetric=True)
    fresh.load_state_dict(opt.state_dict())
    assert fresh.skipped_steps == 1 and fresh.nonfinite == "raise"  # the policy is the constructor's


def test_optimizer_groups_are_validated_and_half_precision_keeps_its_dtype():
    X, Y = (torch.nn.Parameter(torch.ones(5, 2, dtype=torch.float64)) for _ in range(2))
    opt = ScaledGD([X], lr=0.5, symmetric=True)
    with pytest.raises(ValueError, match=r"ScaledGD: lr must be a finite number in \(0, inf\), got -1"):
        opt.add_param_group({"params": [Y], "lr": -1.0})
    with pytest.raises(ValueError, match="inverse"):
        opt.add_param_group({"params": [Y], "inverse": "svd"})
    assert len(opt.param_groups) == 1
    opt.add_param_group({"params": [Y], "lr": 1})
    assert opt.param_groups[1]["lr"] == 1.0 and isinstance(opt.param_groups[1]["lr"], float)
    bad = opt.state_dict()
    bad["param_groups"][0]["damping"] = -1.0
    with pytest.raises(ValueError, match="damping"):
        opt.load_state_dict(bad)
    assert opt.param_groups[0]["damping"] == 0.0
    old = opt.state_dict()
    del old["param_groups"][0]["rtol"]  # a checkpoint from before an option existed takes the default
    opt.load_state_dict(old)
    assert opt.param_groups[0]["rtol"] is None
    for dtype in (torch.float16, torch.bfloat16):
        P = torch.nn.Parameter(torch.tensor([[2.0, 0.5], [0.1, 1.0], [0.3, -0.2]], dtype=dtype))
        (0.25 * ((P @ P.T) ** 2).sum()).backward()
        ScaledGD([P], lr=0.5, symmetric=True).step()
        assert P.dtype == dtype and bool(torch.isfinite(P).all()) and P.grad.dtype == dtype
