"""optimlab._wrapper.WrappedOptimizer: shared groups, validation everywhere, nested checkpoints, non-finite policy."""

import copy
import math
from typing import ClassVar

import pytest
import torch
from torch.nn import functional as F

from conftest import batch, mlp
from optimlab._validation import Interval
from optimlab._wrapper import WrappedOptimizer


class Scaled(WrappedOptimizer):
    """A toy wrapper: multiplies the gradient by ``gain`` and keeps a per-parameter step counter."""

    _constraints: ClassVar = {**WrappedOptimizer._constraints, "gain": Interval(0, math.inf, closed="left")}

    def __init__(self, params=None, *, base, gain=1.0, nonfinite="raise"):
        super().__init__(params, base=base, defaults={"gain": gain}, nonfinite=nonfinite)

    @torch.no_grad()
    def step(self, closure=None):
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not all(bool(torch.isfinite(g).all()) for g in grads):
            self._nonfinite("non-finite gradient")
            return
        for group in self.param_groups:
            for p in group["params"]:
                p.grad.mul_(group["gain"])
                self.state[p]["count"] = self.state[p].get("count", torch.zeros(())) + 1
        self.base.step()


def build(gain=0.5, **kw):
    model = mlp(0)
    base = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, Scaled(base=base, gain=gain, **kw)


def train(model, opt, steps, seed0=0):
    for t in range(steps):
        x, y = batch(seed0 + t)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


def test_groups_are_the_base_groups_and_schedulers_reach_the_base():
    model, opt = build()
    assert opt.param_groups is opt.base.param_groups
    assert opt.param_groups[0]["gain"] == 0.5 and opt.defaults["lr"] == 0.1
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    train(model, opt, 1)
    sched.step()
    assert opt.base.param_groups[0]["lr"] == pytest.approx(0.05)


def test_state_dict_nests_and_round_trips_bit_identically():
    model, opt = build()
    train(model, opt, 3)
    sd = opt.state_dict()
    assert set(sd) == {"base", "wrapper"}
    assert sd["wrapper"]["skipped_steps"] == 0
    assert sd["wrapper"]["param_groups"][0]["gain"] == 0.5 and "lr" not in sd["wrapper"]["param_groups"][0]
    model2, opt2 = build(gain=3.0)
    model2.load_state_dict(model.state_dict())
    opt2.load_state_dict(copy.deepcopy(sd))  # as if read from disk: torch aliases loaded tensors
    assert opt2.param_groups is opt2.base.param_groups and opt2.param_groups[0]["gain"] == 0.5
    train(model, opt, 2, seed0=10)
    train(model2, opt2, 2, seed0=10)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters()))
    assert all(torch.equal(opt.state[a]["count"], opt2.state[b]["count"])
               for a, b in zip(model.parameters(), model2.parameters()))


def test_old_checkpoints_gain_missing_defaults_and_bad_ones_change_nothing():
    _, opt = build(gain=0.5)
    sd = opt.state_dict()
    del sd["wrapper"]["param_groups"][0]["gain"]
    _, fresh = build(gain=2.0)
    fresh.load_state_dict(sd)
    assert fresh.param_groups[0]["gain"] == 2.0
    sd = opt.state_dict()
    sd["wrapper"]["param_groups"][0]["gain"] = -1
    _, target = build(gain=2.0)
    before = target.param_groups
    with pytest.raises(ValueError, match="gain must be a finite number in"):
        target.load_state_dict(sd)
    assert target.param_groups is before and target.param_groups[0]["gain"] == 2.0
    with pytest.raises(ValueError, match="keys 'base' and 'wrapper'"):
        target.load_state_dict({"state": {}, "param_groups": []})


def test_add_param_group_forwards_fills_and_validates():
    _, opt = build()
    extra = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="gain"):
        opt.add_param_group({"params": [extra], "gain": True})
    assert len(opt.base.param_groups) == 1
    opt.add_param_group({"params": [extra], "lr": 0.3})
    assert opt.base.param_groups[-1]["gain"] == 0.5 and opt.base.param_groups[-1]["lr"] == 0.3
    assert opt.base.param_groups[-1]["momentum"] == 0.9


def test_nonfinite_policy():
    model, opt = build(nonfinite="skip")
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.full_like(p, math.nan)
    opt.step()
    assert opt.skipped_steps == 1 and opt.state_dict()["wrapper"]["skipped_steps"] == 1
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    _, strict = build()
    for p in strict.param_groups[0]["params"]:
        p.grad = torch.full_like(p, math.inf)
    with pytest.raises(FloatingPointError, match="non-finite"):
        strict.step()


def test_bad_bases_params_and_options():
    model = mlp(0)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="base must not be LBFGS"):
        Scaled(base=torch.optim.LBFGS(model.parameters()))
    with pytest.raises(ValueError, match="nesting"):
        Scaled(base=Scaled(base=sgd))
    with pytest.raises(ValueError, match="constructed torch.optim.Optimizer, got dict"):
        Scaled(base={})
    with pytest.raises(ValueError, match="exactly the base optimizer's parameters"):
        Scaled(list(model.parameters())[:1], base=sgd)
    with pytest.raises(ValueError, match=r"nonfinite must be one of \('raise', 'skip'\), got 'skip_memory'"):
        Scaled(base=sgd, nonfinite="skip_memory")
    assert repr(Scaled(base=sgd, gain=2)) == "Scaled(gain=2.0, base=SGD)"
