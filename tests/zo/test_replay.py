"""Seed-log replay reproduces the weights bit for bit from the logged seeds and scalars."""

from __future__ import annotations

import json

import torch
from torch import nn

from optimlab.zo import ZOSGD, ZOAdam, replay


def _model():
    g = torch.Generator().manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return m


def _run(cls, kw, steps=25):
    m = _model()
    opt = cls(m.parameters(), record=True, **kw)
    sched = torch.optim.lr_scheduler.StepLR(opt, 10, 0.5)
    X = torch.randn(32, 6, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        opt.step(lambda: m(X).square().mean())
        sched.step()
    return m, opt.log


def test_replay_is_bit_identical_to_a_swap_run_and_the_log_is_small():
    for cls, kw in ((ZOSGD, {"lr": 0.05, "perturb": "swap", "momentum": 0.9, "q": 2, "weight_decay": 0.01}),
                    (ZOSGD, {"lr": 0.05, "master_dtype": torch.float32, "direction": "sphere"}),
                    (ZOAdam, {"lr": 0.01, "perturb": "swap"})):
        m, log = _run(cls, kw)
        log = json.loads(json.dumps(log))  # the log is plain JSON
        fresh = _model()
        replay(fresh.parameters(), log)
        assert all(torch.equal(a, b) for a, b in zip(m.parameters(), fresh.parameters())), (cls, kw)
    assert len(json.dumps(log)) / len(log["records"]) < 400  # bytes per step, kilobytes for a long run


def test_replay_of_an_inplace_run_is_within_rounding():
    m, log = _run(ZOSGD, {"lr": 0.05})
    fresh = _model()
    replay(fresh.parameters(), log)
    for a, b in zip(m.parameters(), fresh.parameters()):
        assert torch.allclose(a, b, atol=1e-5)
