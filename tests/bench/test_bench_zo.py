"""Verdict logic of ``optimlab bench zo`` on known numbers (no timing), and the MeZO peer's step."""

from __future__ import annotations

import math

import torch
from torch import nn

from optimlab.bench import zo as bench
from optimlab.evidence import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from optimlab.experiments.zo import mezo_step

GOOD = dict(time_vs_forward=1.1, time_vs_mezo=0.8, memory_vs_inference=1.02, memory_vs_mezo=0.6)


def test_targets_render_and_decide():
    text = bench.STEP_CRITERION.describe()
    assert "1.2" in text and "0.9" in text and "1.1" in text
    assert bench.STEP_CRITERION.evaluate(**GOOD).verdict == HOLDS
    assert bench.STEP_CRITERION.evaluate(**{**GOOD, "time_vs_forward": 1.3}).verdict == DOES_NOT_HOLD
    assert bench.STEP_CRITERION.evaluate(**{**GOOD, "memory_vs_mezo": 1.01}).verdict == DOES_NOT_HOLD
    assert bench.STEP_CRITERION.evaluate(**{**GOOD, "time_vs_mezo": math.nan}).verdict == INCONCLUSIVE


class _Enc(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, input_ids, attention_mask):
        class Out:
            pass

        o = Out()
        o.last_hidden_state = self.lin(input_ids.float()).unsqueeze(1)
        return o


def test_mezo_peer_step_restores_the_global_rng_and_moves_along_z():
    model = _Enc()
    inputs = {"input_ids": torch.ones(2, 4), "attention_mask": torch.ones(2, 4)}
    target = torch.zeros(2, 3)
    w0 = [p.detach().clone() for p in model.parameters()]
    state = torch.get_rng_state()
    mezo_step(model, inputs, target, lr=0.1, eps=1e-3, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert any(not torch.equal(a, b) for a, b in zip(w0, model.parameters()))
