"""Verdict logic of the revised ``sam.flat_minima`` and ``sam.m_sharpness`` (issue #10) on hand-made numbers, no
training: the loss-normalised figures decide flat minima, an unconverged Lanczos pair counts for neither side;
m-sharpness needs τ(m=4) itself positive, ≥ 10 models at the target loss and defined taus."""

import math

import pytest
import torch

from optimlab.evidence import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, AllChecks, Gate, all_claims
from optimlab.experiments import _sharpness_runs as sr
from optimlab.experiments import sam

NAN = math.nan


# ---------------------------------------------------------------- sam.flat_minima


def _flat(sam_trace_l, sgd_trace_l, *, sam_lmax_l=None, sgd_lmax_l=None, loss=0.002, sam_conv=None,
          raw_sam=1.0, raw_sgd=2.0):
    n = len(sam_trace_l)
    return {
        "sam_trace_over_loss": sam_trace_l, "sgd_trace_over_loss": sgd_trace_l,
        "sam_lambda_max_over_loss": sam_lmax_l or [50.0] * n, "sgd_lambda_max_over_loss": sgd_lmax_l or [80.0] * n,
        # raw figures: never read by the verdict
        "sam_trace": [raw_sam] * n, "sgd_trace": [raw_sgd] * n,
        "sam_lambda_max": [raw_sam / 10] * n, "sgd_lambda_max": [raw_sgd / 10] * n,
        "sam_train_loss": [loss] * n, "sgd_train_loss": [0.002] * n,
        "sam_lanczos_converged": sam_conv or [1.0] * n, "sgd_lanczos_converged": [1.0] * n,
    }


def test_flat_minima_holds_when_both_normalised_figures_are_lower_in_four_of_five():
    out = sam._flat_minima_verdict(_flat([850.0, 860.0, 870.0, 880.0, 2000.0], [950.0] * 5))
    assert out.verdict == HOLDS and out.details["successes"] == 4


def test_flat_minima_normalised_figures_decide_not_the_raw_ones():
    # Raw trace and lambda_max lower for SAM everywhere (1.0 vs 2.0), normalised trace higher in 5/5 -> does not hold.
    out = sam._flat_minima_verdict(_flat([1000.0] * 5, [900.0] * 5, raw_sam=1.0, raw_sgd=2.0))
    assert out.verdict == DOES_NOT_HOLD and out.details["failures"] == 5
    # Raw higher for SAM, normalised lower -> holds.
    assert sam._flat_minima_verdict(_flat([800.0] * 5, [900.0] * 5, raw_sam=3.0, raw_sgd=2.0)).verdict == HOLDS
    # Either normalised figure above counts against SAM: lambda_max/L above in 4/5.
    out = sam._flat_minima_verdict(_flat([800.0] * 5, [900.0] * 5, sam_lmax_l=[90.0] * 4 + [10.0]))
    assert out.verdict == DOES_NOT_HOLD and out.details["failures"] == 4


def test_flat_minima_is_inconclusive_on_a_split_or_above_the_training_loss_gate():
    assert sam._flat_minima_verdict(_flat([800.0] * 3 + [1000.0] * 2, [900.0] * 5)).verdict == INCONCLUSIVE
    out = sam._flat_minima_verdict(_flat([800.0] * 5, [900.0] * 5, loss=0.06))
    assert out.verdict == INCONCLUSIVE and "precondition" in out.reason and out.details["gate_value"] == 0.06
    assert sam._flat_minima_verdict(_flat([800.0] * 5, [900.0] * 5, loss=NAN)).verdict == INCONCLUSIVE
    assert sam._flat_minima_verdict(_flat([800.0] * 5, [900.0] * 5, loss=0.05)).verdict == HOLDS


def test_flat_minima_unconverged_lanczos_seed_counts_for_neither_side():
    # 4 pairs lower, one unconverged (also lower): still holds on 4 of 5.
    conv = [1.0, 1.0, 1.0, 1.0, 0.0]
    assert sam._flat_minima_verdict(_flat([800.0] * 5, [900.0] * 5, sam_conv=conv)).verdict == HOLDS
    # Two unconverged: 3 of 5 count for SAM -> inconclusive, although every figure is lower.
    out = sam._flat_minima_verdict(_flat([800.0] * 5, [900.0] * 5, sam_conv=[1.0, 1.0, 1.0, 0.0, 0.0]))
    assert out.verdict == INCONCLUSIVE and (out.details["successes"], out.details["failures"]) == (3, 0)
    # Nor against: 4 pairs higher, but two of them unconverged.
    out = sam._flat_minima_verdict(_flat([1000.0] * 4 + [800.0], [900.0] * 5, sam_conv=[0.0, 0.0, 1.0, 1.0, 1.0]))
    assert out.verdict == INCONCLUSIVE and (out.details["successes"], out.details["failures"]) == (1, 2)
    # A NaN normalised figure counts for neither side either.
    out = sam._flat_minima_verdict(_flat([800.0, 800.0, 800.0, NAN, NAN], [900.0] * 5))
    assert out.verdict == INCONCLUSIVE and out.details["successes"] == 3


def test_flat_minima_criterion_is_the_revised_one():
    claim = all_claims()["sam.flat_minima"]
    assert isinstance(claim.criterion, Gate) and claim.criterion is sam.CRITERION
    assert (sam.MIN_FRACTION, sam.MAX_TRAIN_LOSS) == (0.8, 0.05)
    text = claim.criterion_text
    assert "lambda_max/L" in text and "trace/L" in text and "Lanczos converged" in text and "0.05" in text
    assert sam.SETTINGS["quick"] == ((128,), 30, 100, 1) and sam.SETTINGS["full"][3] == 5


# ---------------------------------------------------------------- sam.m_sharpness


@pytest.mark.parametrize(("tau4", "taun", "n_on", "verdict"), [
    (0.2, 0.0, 12, HOLDS),
    (0.1, 0.0, 12, HOLDS),             # exactly the margin on both checks
    (-0.3, -0.6, 12, DOES_NOT_HOLD),   # every tau negative, tau(4) - tau(n) = +0.3: the landed rule said holds
    (-0.1, -0.3, 12, DOES_NOT_HOLD),   # tau(4) at -0.1
    (0.3, 0.45, 12, DOES_NOT_HOLD),    # tau(4) positive but full-batch sharpness tracks the gap better
    (0.3, 0.25, 12, INCONCLUSIVE),     # difference inside the dead band
    (0.05, -0.2, 12, INCONCLUSIVE),    # tau(4) inside the dead band
    (0.0, 0.0, 12, INCONCLUSIVE),      # the landed rule said does not hold
    (NAN, 0.0, 12, INCONCLUSIVE),      # a constant input makes tau undefined
    (-0.3, NAN, 12, INCONCLUSIVE),     # undefined tau(n): inconclusive even though tau(4) <= -0.1
    (0.2, 0.0, 9, INCONCLUSIVE),       # 9 models on target: too few
    (-0.3, -0.6, 9, INCONCLUSIVE),
    (0.2, 0.0, 10, HOLDS),
])
def test_m_sharpness_verdict(tau4, taun, n_on, verdict):
    out = sam._m_sharpness_verdict({"m=4": tau4, "m=32": 0.0, "m=n": taun}, n_on)
    assert out.verdict == verdict
    if verdict == INCONCLUSIVE and (n_on < 10 or math.isnan(taun) or math.isnan(tau4)):
        assert "precondition" in out.reason


def test_m_sharpness_criterion_is_the_revised_one():
    claim = all_claims()["sam.m_sharpness"]
    crit = claim.criterion
    assert crit is sam.M_CRITERION and isinstance(crit.then, AllChecks) and isinstance(crit.condition, AllChecks)
    for part in crit.then.parts.values():
        assert (part.low, part.high) == (-0.1, 0.1)
    assert crit.condition.parts["on_target"].threshold == 10
    assert (sam.M_TAU_MARGIN, sam.M_RHO, sam.M_TARGET_LOSS, sam.M_MIN_ON_TARGET) == (0.1, 0.05, 0.05, 10)
    q = sam.M_GRID["quick"]
    assert q["max_epochs"] == 300 and q["steps"] == 3 and q["ms"] == (4, 32)
    assert len(q["lrs"]) * len(q["batches"]) * len(q["widths"]) == 12
    f = sam.M_GRID["full"]
    assert len(f["lrs"]) * len(f["batches"]) * len(f["widths"]) == 48 and f["max_epochs"] == 300
    assert "≥ 10" in claim.criterion_text and "tau(m=4)" in claim.criterion_text


def test_kendall_is_nan_when_undefined():
    assert math.isnan(sr.kendall([1.0], [2.0]))
    assert math.isnan(sr.kendall([], []))
    assert math.isnan(sr.kendall([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert sr.kendall([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)


class _Split:
    def __init__(self):
        gen = torch.Generator().manual_seed(0)
        self.X_train = torch.randn(64, 4, generator=gen)
        self.y_train = (self.X_train[:, 0] > 0).long()


def test_train_to_target_stops_at_the_first_epoch_on_target_and_counts_misses():
    from optimlab.experiments._fixtures import evaluate, make_mlp

    split = _Split()
    model = make_mlp([4, 16, 2], seed=0)
    epochs, ce, reached = sr.train_to_target(model, split, lr=0.5, batch_size=16, seed=0, target=0.3,
                                             max_epochs=200)
    assert reached and ce <= 0.3 and 1 <= epochs < 200
    assert evaluate(model, split.X_train, split.y_train)[0] == ce
    # One epoch fewer is above the target: it stopped at the first epoch on target.
    again = make_mlp([4, 16, 2], seed=0)
    if epochs > 1:
        _, ce_before, reached_before = sr.train_to_target(again, split, lr=0.5, batch_size=16, seed=0, target=0.0,
                                                          max_epochs=epochs - 1)
        assert not reached_before and ce_before > 0.3
    # Off target within the budget: not reached, the budget used up.
    slow = make_mlp([4, 16, 2], seed=0)
    assert sr.train_to_target(slow, split, lr=1e-4, batch_size=16, seed=0, target=0.01, max_epochs=3)[::2] == (3, False)
