"""Verdict paths of the ``nora.lora_*`` and ``reflora.*`` claims on hand-made numbers (no training)."""

from __future__ import annotations

import math

import pytest

from optimlab.evidence import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, all_claims
from optimlab.experiments import _lora_verdicts as V

IDS = ("nora.lora_aligned_target", "nora.lora_finetune", "nora.lora_noraplus", "reflora.consistent_balanced",
       "reflora.flatter", "reflora.mf_convergence", "reflora.finetune", "reflora.overhead")


def test_claims_are_registered_without_colliding_with_the_matfac_nora_ids():
    claims = all_claims()
    for cid in IDS:
        assert cid in claims
    assert not any(c.startswith("nora.lora_") for c in ("nora.sym_quadratic", "nora.sym_init_sensitivity",
                                                       "nora.asym_one_step", "nora.up_linear"))
    assert {claims[c].group for c in ("nora.lora_finetune", "nora.lora_noraplus", "reflora.finetune")} == {
        "lora_finetune"}


def test_aligned_target_band():
    assert V.ALIGNED.verdict(1 - 0.45) == HOLDS  # the reference ratio
    assert V.ALIGNED.verdict(1 - 0.7) == HOLDS  # the bound is inclusive
    assert V.ALIGNED.verdict(1 - 0.85) == INCONCLUSIVE
    assert V.ALIGNED.verdict(1 - 1.1) == DOES_NOT_HOLD
    assert V.ALIGNED.verdict(math.nan) == INCONCLUSIVE


@pytest.mark.parametrize("criterion", [V.FINETUNE_NORA, V.NORAPLUS])
def test_sign_rule_paths(criterion):
    assert criterion.verdict([0.01, 0.02, 0.005]) == HOLDS
    assert criterion.verdict([-0.01, -0.02, -0.005]) == DOES_NOT_HOLD
    assert criterion.verdict([0.01, -0.02, 0.005]) == INCONCLUSIVE
    assert criterion.verdict([0.01, 0.02, 0.03, 0.01, -0.01]) == HOLDS  # 4 of 5 at full
    assert criterion.min_seeds == 3


def test_reflora_finetune_guard():
    up, down, mixed = [0.01, 0.02, 0.01], [-0.01, -0.02, -0.01], [0.01, -0.01, 0.0]
    assert V.REFLORA_FINETUNE.verdict(up, up) == HOLDS
    assert V.REFLORA_FINETUNE.verdict(up, mixed) == HOLDS  # the final loss is merely not worse
    out = V.REFLORA_FINETUNE.evaluate(up, down)
    assert out.verdict == INCONCLUSIVE and "guard" in out.reason
    assert V.REFLORA_FINETUNE.verdict(down, up) == DOES_NOT_HOLD
    assert V.REFLORA_FINETUNE.verdict(mixed, up) == INCONCLUSIVE
    assert "guard" in V.REFLORA_FINETUNE.describe()


GOOD_EXACT = {"p_invariance": 1e-13, "plain_deviation": 0.5, "balance": 1e-15, "diagonal": 1e-15, "energy": 1e-15,
              "energy_minimal": -0.3, "closed_form": 1e-10, "scalar_product": 1e-16, "scalar_norms": 0.0}


def test_consistent_balanced_paths():
    assert V.CONSISTENT.verdict(**GOOD_EXACT) == HOLDS
    assert V.CONSISTENT.verdict(**{**GOOD_EXACT, "p_invariance": 1e-6}) == DOES_NOT_HOLD
    assert V.CONSISTENT.verdict(**{**GOOD_EXACT, "plain_deviation": 1e-5}) == DOES_NOT_HOLD  # not discriminating
    assert V.CONSISTENT.verdict(**{**GOOD_EXACT, "closed_form": math.nan}) == INCONCLUSIVE


def test_flatter_paths():
    exact = {"exact_not_higher": -0.9, "exact_formula": 1e-8}
    assert V.FLATTER.verdict(**exact, training=[3.0, 4.0, 2.5]) == HOLDS
    assert V.FLATTER.verdict(**exact, training=[3.0, -4.0, 2.5]) == INCONCLUSIVE
    assert V.FLATTER.verdict(**exact, training=[-3.0, -4.0, -2.5]) == DOES_NOT_HOLD
    assert V.FLATTER.verdict(exact_not_higher=0.1, exact_formula=1e-8, training=[3.0, 4.0, 2.5]) == DOES_NOT_HOLD


def test_mf_paths():
    assert V.MF.verdict(consistency=1e-12, speed=(5, 0, 5)) == HOLDS
    assert V.MF.verdict(consistency=1e-12, speed=(3, 1, 5)) == INCONCLUSIVE
    assert V.MF.verdict(consistency=1e-12, speed=(0, 4, 5)) == DOES_NOT_HOLD
    assert V.MF.verdict(consistency=1e-3, speed=(5, 0, 5)) == DOES_NOT_HOLD


def test_overhead_paths():
    assert V.OVERHEAD.verdict(reflora=(1.05, 1.15), reflora_s=(1.0, 1.03)) == HOLDS
    assert V.OVERHEAD.verdict(reflora=(1.15, 1.25), reflora_s=(1.0, 1.03)) == INCONCLUSIVE
    assert V.OVERHEAD.verdict(reflora=(1.25, 1.35), reflora_s=(1.0, 1.03)) == DOES_NOT_HOLD
    assert V.OVERHEAD.verdict(reflora=(math.nan, 1.1), reflora_s=(1.0, 1.03)) == INCONCLUSIVE
