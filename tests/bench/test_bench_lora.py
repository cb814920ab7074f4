"""Verdict logic of ``optimlab bench lora`` on known numbers (no timing), and its set-up helpers."""

from __future__ import annotations

import math

import torch

from optimlab.bench import lora as bench
from optimlab.bench.lora import make_method, overhead_models, step_fn
from optimlab.evidence import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE

GOOD = {"reflora": 1.05, "reflora_s": 1.01, "noraplus": 1.1, "memory": 1.0, "state": 0.0, "batched_eigh": 3.0}


def test_targets_and_their_text():
    assert bench.TARGETS == {"reflora": 1.10, "reflora-s": 1.02, "noraplus": 1.15}
    text = bench.STEP_CRITERION.describe()
    assert "1.1" in text and "1.02" in text and "1.15" in text and "1024" in text


def test_step_verdict_paths():
    assert bench.STEP_CRITERION.verdict(**GOOD) == HOLDS
    assert bench.STEP_CRITERION.verdict(**{**GOOD, "reflora_s": 1.03}) == DOES_NOT_HOLD
    assert bench.STEP_CRITERION.verdict(**{**GOOD, "state": 2048}) == DOES_NOT_HOLD
    assert bench.STEP_CRITERION.verdict(**{**GOOD, "batched_eigh": 1.5}) == DOES_NOT_HOLD
    assert bench.STEP_CRITERION.verdict(**{**GOOD, "reflora": math.nan}) == INCONCLUSIVE


def test_peer_verdict_paths():
    good = {"riemannian_agreement": 1e-8, "riemannian_time": 1.0, "init_time": 0.1}
    assert bench.PEER_CRITERION.verdict(**good) == HOLDS
    assert bench.PEER_CRITERION.verdict(**{**good, "riemannian_agreement": 1e-3}) == DOES_NOT_HOLD
    assert bench.PEER_CRITERION.verdict(**{**good, "init_time": math.nan}) == INCONCLUSIVE


def test_every_method_of_the_stand_in_steps():
    setup = overhead_models("smoke", r=2)
    for method in ("lora", "reflora", "reflora-s", "noraplus", "noraplus-riemannian"):
        model, opt = make_method(setup, method)
        before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
        step_fn(setup, model, opt)()
        after = [p for p in model.parameters() if p.requires_grad]
        assert any(not torch.equal(a, b) for a, b in zip(before, after)), method
