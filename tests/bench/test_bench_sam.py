"""Verdict logic of ``optimlab bench sam`` on known numbers (no timing), and the bench's models."""

import math

from optimlab.bench import sam as bench
from optimlab.evidence import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE

GOOD = {"sam/sgd": 2.0, "sam/peer": 0.97, "vasso/sam": 1.03, "infosam/sam": 1.08, "asam/sam": 1.05,
        "fisher/sam": 1.06}


def test_targets_are_the_specs_and_the_criteria_render_them():
    assert bench.TARGETS == {"sam/sgd": 2.05, "sam/peer": 1.00, "vasso/sam": 1.05, "infosam/sam": 1.10,
                             "asam/sam": 1.10, "fisher/sam": 1.10}
    for model, criterion in bench.STEP_CRITERIA.items():
        text = criterion.describe()
        assert "2.05" in text and "1.05" in text and "1.1" in text and "pytorch_optimizer.SAM" in text
        assert bench.MODELS[model] in text


def test_step_verdict_holds_fails_and_is_inconclusive_without_the_peer():
    for model in bench.MODELS:
        assert bench.step_verdict(model, GOOD).verdict == HOLDS
        out = bench.step_verdict(model, {**GOOD, "infosam/sam": 1.101})
        assert out.verdict == DOES_NOT_HOLD and out.details["infosam_over_sam_verdict"] == DOES_NOT_HOLD
        assert bench.step_verdict(model, {**GOOD, "sam/peer": 1.0}).verdict == HOLDS  # the target is inclusive
        no_peer = {k: v for k, v in GOOD.items() if k != "sam/peer"}
        assert bench.step_verdict(model, no_peer).verdict == INCONCLUSIVE
        assert bench.step_verdict(model, {**no_peer, "sam/sgd": 2.2}).verdict == DOES_NOT_HOLD


def test_memory_verdict_needs_exact_state_and_a_bounded_peak():
    state = {"sam": 0.0, "asam": 0.0, "fisher": 0.0, "vasso": 1.0, "infosam": 2.0}
    assert bench.memory_verdict(state, 1.0).verdict == HOLDS
    assert bench.memory_verdict(state, 1.06).verdict == DOES_NOT_HOLD
    assert bench.memory_verdict({**state, "vasso": 1.0001}, 1.0).verdict == DOES_NOT_HOLD
    assert bench.memory_verdict({**state, "sam": 0.5}, 1.0).verdict == DOES_NOT_HOLD
    assert bench.memory_verdict(state, math.nan).verdict == INCONCLUSIVE


def test_the_many_tensor_model_has_hundreds_of_tensors():
    model = bench.many_tensor_mlp()
    assert len(list(model.parameters())) == 404
    assert sum(p.numel() for p in model.parameters()) == 114_410
    assert len(list(bench.many_tensor_mlp(blocks=49).parameters())) >= 200
