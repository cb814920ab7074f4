"""Verdict logic of the ConEF claims and the comm benchmarks on known numbers, without training
(docs/DESIGN.md, adding a claim): every claim reaches holds, does not hold and inconclusive.
"""

import math

import pytest

from optimlab.bench.comm import HOOKS_CRITERION, MEMOPS_CRITERION, hooks_verdict
from optimlab.evidence import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from optimlab.experiments.conef import (
    ACCURACY_CRITERION,
    BYTES_CRITERION,
    MEMORY_CRITERION,
    SKETCH_CRITERION,
    SPEEDUP_CRITERION,
    accuracy_verdict,
    bytes_verdict,
    median_nan_low,
    memory_verdict,
    sketch_verdict,
    speedup_verdict,
)


def test_criteria_render_the_constants_they_apply():
    assert "0.005" in MEMORY_CRITERION.describe()
    text = ACCURACY_CRITERION.describe()
    assert "−1.5 pt" in text and "2 pt" in text
    assert "≤ 0 elements" in BYTES_CRITERION.describe()
    assert "1.3×" in SPEEDUP_CRITERION.describe()
    assert "0.02" in SKETCH_CRITERION.describe()
    hooks = HOOKS_CRITERION.describe()
    assert "≤ 1.1" in hooks and "≤ 1.25" in hooks and "≤ 0.25" in hooks
    assert "≤ 10" in MEMOPS_CRITERION.describe()


# ---------------------------------------------------------------- conef.memory_saving
def _row(model, s, dtype, ratio, error):
    return {"model": model, "s": s, "dtype": dtype, "ratio_to_ef": ratio, "error_bytes": error, "cache_bytes": 0,
            "ef_reference_bytes": 5000, "pred_error_bytes": error, "pred_cache_bytes": 0,
            "pred_ef_reference_bytes": 5000}


def _rows(changes=None):
    """Two models, s in {0.2, 0.1}, fp32 and fp16 tables; ``changes``: {row index: {key: value}}."""
    rows = [_row("mlp", 0.2, "float32", 0.199, 1000), _row("mlp", 0.2, "float16", 0.0995, 500),
            _row("cnn", 0.1, "float32", 0.104, 800), _row("cnn", 0.1, "float16", 0.052, 400)]
    for i, kw in (changes or {}).items():
        rows[i] = {**rows[i], **kw}
    return rows


def test_memory_verdict_holds_on_perfect_numbers():
    out = memory_verdict(_rows(), _rows())
    assert out.verdict == HOLDS and out.details["ratio_value"] == pytest.approx(0.004)


@pytest.mark.parametrize("mine,other", [
    ({2: {"ratio_to_ef": 0.1051}}, None),  # 0.1051 > s + 0.005 on one model
    ({0: {"pred_error_bytes": 996}}, None),  # measured != predict_memory
    ({1: {"error_bytes": 501, "pred_error_bytes": 501}}, None),  # fp16 not exactly half
    ({}, {0: {"error_bytes": 1004}}),  # the two processes disagree
])
def test_memory_verdict_does_not_hold(mine, other):
    assert memory_verdict(_rows(mine), _rows(mine if other is None else other)).verdict == DOES_NOT_HOLD


def test_memory_verdict_inconclusive_on_nan_ratio():
    assert memory_verdict(_rows({2: {"ratio_to_ef": math.nan}}), _rows()).verdict == INCONCLUSIVE


# ---------------------------------------------------------------- conef.accuracy_vs_sgd
GOOD = {"sgd": [97.8, 97.6, 98.0], "ef": [97.3, 97.1, 97.6], "conef": [96.9, 96.7, 97.2], "none": [93.6, 93.0, 94.1]}


def test_accuracy_verdict_holds_on_the_spec_medians():
    out = accuracy_verdict(GOOD)
    assert out.verdict == HOLDS
    assert out.details["median_conef"] == 96.9 and out.details["vs_sgd_value"] == pytest.approx(-0.9)


def test_accuracy_verdict_does_not_hold_beyond_the_margin():
    assert accuracy_verdict({**GOOD, "conef": [96.2, 96.0, 96.4]}).verdict == DOES_NOT_HOLD  # 1.6 below SGD
    assert accuracy_verdict({**GOOD, "ef": [98.5, 98.5, 98.5], "conef": [96.9, 96.9, 96.9]}).verdict == \
        DOES_NOT_HOLD  # within 1.5 of SGD but 1.6 below EF


def test_accuracy_verdict_checks_the_control_before_the_margins():
    mild = {**GOOD, "none": [96.5, 96.0, 97.0]}  # no memory only 1.8 below SGD: compression too mild
    assert accuracy_verdict(mild).verdict == INCONCLUSIVE
    assert accuracy_verdict({**mild, "conef": [90.0, 90.0, 90.0]}).verdict == INCONCLUSIVE


def test_a_diverged_conef_seed_counts_against_conef():
    assert median_nan_low([97.0, math.nan, 96.9]) == 96.9 and math.isnan(median_nan_low([math.nan, math.nan, 1.0]))
    assert median_nan_low([1.0, 2.0, 3.0, math.nan]) == 1.5
    sgd = {**GOOD, "sgd": [98.0, 98.0, 98.0]}
    assert accuracy_verdict({**sgd, "conef": [96.4, 98.0, 98.2]}).verdict == HOLDS  # median 98.0
    assert accuracy_verdict({**sgd, "conef": [96.4, 98.0, math.nan]}).verdict == DOES_NOT_HOLD  # median 96.4
    assert accuracy_verdict({**sgd, "conef": [math.nan, math.nan, 98.0]}).verdict == DOES_NOT_HOLD
    # a diverged baseline counts against the baseline: SGD's median is lowest, the control gate still decides
    assert accuracy_verdict({**GOOD, "none": [math.nan, math.nan, 90.0]}).verdict == HOLDS


# ---------------------------------------------------------------- conef.bytes_per_step
def _counted(**change):
    counted = {"randomblock+ef": [8969, 8969], "randomblock+conef": [8969, 8969], "powersgd2+ef": [2718, 2718],
               "pytorch_powersgd2": [2718, 2718]}
    counted.update(change)
    return counted


def test_bytes_verdict_holds_on_exact_counts():
    assert bytes_verdict(_counted(), 8969, 2718, 2718.0, 8969).verdict == HOLDS


@pytest.mark.parametrize("change", [{"randomblock+conef": [8969, 8970]}, {"randomblock+ef": [8968, 8969]},
                                    {"powersgd2+ef": [2718, 2719]}, {"pytorch_powersgd2": [2717, 2718]}])
def test_bytes_verdict_fails_when_any_step_after_warmup_is_off_by_one(change):
    assert bytes_verdict(_counted(**change), 8969, 2718, 2718.0, 8969).verdict == DOES_NOT_HOLD


def test_bytes_verdict_other_checks_and_nan():
    assert bytes_verdict(_counted(), 8969, 2718, 2718.5, 8969).verdict == DOES_NOT_HOLD  # PyTorch's stats
    assert bytes_verdict(_counted(), 8969, 2718, 2718.0, 8970).verdict == DOES_NOT_HOLD  # the hook's report
    assert bytes_verdict(_counted(), 8969, 2718, math.nan, 8969).verdict == INCONCLUSIVE


# ---------------------------------------------------------------- conef.speedup
def test_speedup_is_inconclusive_without_a_cluster():
    for s in (0.4, 1.0, 5.0, math.nan):
        out = speedup_verdict(0, s)
        assert out.verdict == INCONCLUSIVE and "precondition" in out.reason
    assert speedup_verdict(1, 1.5).verdict == HOLDS and speedup_verdict(1, 1.1).verdict == DOES_NOT_HOLD


# ---------------------------------------------------------------- conef.sketch_contraction
def test_sketch_verdict_holds_when_formula_matches_and_every_cell_contracts():
    out = sketch_verdict([0.86, 0.83, 0.5], [0.861, 0.829, 0.505])
    assert out.verdict == HOLDS and out.details["formula_value"] == pytest.approx(0.005 / 0.505)


def test_sketch_verdict_does_not_hold():
    # the landed criterion asks for contraction in every cell: a factor of 1.02 fails even where the formula
    # predicts it (lambda > 2/(1+kappa), as at s=0.05, lambda=0.1)
    assert sketch_verdict([0.86, 1.02], [0.86, 1.021]).verdict == DOES_NOT_HOLD
    assert sketch_verdict([0.86, 0.5], [0.86, 0.52]).verdict == DOES_NOT_HOLD  # 3.8% off the formula


def test_sketch_verdict_inconclusive_on_nan():
    assert sketch_verdict([0.86, math.nan], [0.86, 0.5]).verdict == INCONCLUSIVE


# ---------------------------------------------------------------- bench comm.ddp_hooks and comm.memory_ops
RATIOS = {"digits_mlp": {"identity": 1.02}, "synthetic_mlp": {"identity": 1.05}}
TIMES = {"digits_mlp": 0.9, "synthetic_mlp": 1.1}


def test_hooks_verdict():
    assert hooks_verdict(RATIOS, TIMES, 0.2, 1.0).verdict == HOLDS
    assert hooks_verdict(RATIOS, TIMES, 0.3, 1.0).verdict == DOES_NOT_HOLD
    assert hooks_verdict(RATIOS, TIMES, 0.2, 1.0004).verdict == DOES_NOT_HOLD
    assert hooks_verdict({**RATIOS, "digits_mlp": {"identity": 1.11}}, TIMES, 0.2, 1.0).verdict == DOES_NOT_HOLD
    assert hooks_verdict(RATIOS, {**TIMES, "synthetic_mlp": math.nan}, 0.2, 1.0).verdict == INCONCLUSIVE


def test_memory_ops_verdict():
    assert [MEMOPS_CRITERION.verdict(r) for r in (9.9, 10.1, math.nan)] == [HOLDS, DOES_NOT_HOLD, INCONCLUSIVE]
