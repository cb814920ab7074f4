"""Verdict logic of the ConEF claims and the comm benchmarks on known numbers, without training
(docs/DESIGN.md, adding a claim): every claim reaches holds, does not hold and inconclusive.
"""

import math

import pytest

from optimlab.bench.comm import HOOKS_CRITERION, MEMOPS_CRITERION, hooks_verdict
from optimlab.distributed import run_local
from optimlab.evidence import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE
from optimlab.experiments.conef import (
    ACCURACY_CRITERION,
    BYTES_CRITERION,
    MEMORY_CRITERION,
    SKETCH_CRITERION,
    SPEEDUP_CRITERION,
    accuracy_verdict,
    accuracy_worker,
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
def _row(model, s, dtype, ratio, error, peak=0.8):
    row = {"model": model, "s": s, "dtype": dtype, "ratio_to_ef": ratio, "error_bytes": error, "cache_bytes": 0,
           "ef_reference_bytes": 5000, "pred_error_bytes": error, "pred_cache_bytes": 0,
           "pred_ef_reference_bytes": 5000}
    if dtype == "float32":  # the peak is measured for fp32 tables only
        row["peak_ratio_to_ef"] = peak
    return row


def _rows(changes=None):
    """Two models, s in {0.2, 0.1}, fp32 and fp16 tables; ``changes``: {row index: {key: value}}."""
    rows = [_row("mlp", 0.2, "float32", 0.199, 1000), _row("mlp", 0.2, "float16", 0.0995, 500),
            _row("cnn", 0.1, "float32", 0.104, 800, peak=0.9), _row("cnn", 0.1, "float16", 0.052, 400)]
    for i, kw in (changes or {}).items():
        rows[i] = {**rows[i], **kw}
    return rows


def test_memory_verdict_holds_on_perfect_numbers():
    out = memory_verdict(_rows())
    assert out.verdict == HOLDS and out.details["ratio_value"] == pytest.approx(0.004)
    assert out.details["peak_value"] == 0


@pytest.mark.parametrize("changes", [
    {2: {"ratio_to_ef": 0.1051}},  # 0.1051 > s + 0.005 on one model
    {0: {"pred_error_bytes": 996}},  # measured != predict_memory
    {3: {"pred_error_bytes": 399}},  # an fp16 table's bytes differ from predict_memory's
    {0: {"peak_ratio_to_ef": 1.01}},  # perfect persistent numbers, but the peak exceeds EF's
    {2: {"peak_ratio_to_ef": 1.0}},  # the peak must be strictly below EF's
])
def test_memory_verdict_does_not_hold(changes):
    assert memory_verdict(_rows(changes)).verdict == DOES_NOT_HOLD


def test_memory_verdict_fails_on_a_peak_ratio_of_1_01_with_perfect_persistent_numbers():
    out = memory_verdict(_rows({0: {"peak_ratio_to_ef": 1.01}}))
    assert out.verdict == DOES_NOT_HOLD
    assert out.details["ratio_verdict"] == HOLDS and out.details["predicted_verdict"] == HOLDS
    assert out.details["peak_verdict"] == DOES_NOT_HOLD


def test_memory_verdict_inconclusive_on_nan():
    assert memory_verdict(_rows({2: {"ratio_to_ef": math.nan}})).verdict == INCONCLUSIVE
    assert memory_verdict(_rows({0: {"peak_ratio_to_ef": math.nan}})).verdict == INCONCLUSIVE


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
def test_accuracy_worker_reports_nan_for_a_diverged_run():
    """The divergence path through the worker's own code: a huge lr drives every run non-finite; each reports
    accuracy NaN (not its last finite epoch's) and ``diverged``, and the verdict counts it against the method."""
    res = run_local(accuracy_worker, world_size=2, backend="gloo", args=([0], 2, 2, 1e4, ("conef", "sgd")),
                    timeout=120)
    for r in res:
        assert set(r) == {"conef/0", "sgd/0"}
        assert all(math.isnan(v["acc"]) and v["diverged"] for v in r.values())
    conef_nan = [res[0]["conef/0"]["acc"], 98.0, 96.0]  # one diverged seed lowers ConEF's median to 96.0
    assert accuracy_verdict({**GOOD, "sgd": [98.0] * 3, "conef": conef_nan}).verdict == DOES_NOT_HOLD


def test_speedup_is_inconclusive_without_a_cluster():
    for s in (0.4, 1.0, 5.0, math.nan):
        out = speedup_verdict(0, s)
        assert out.verdict == INCONCLUSIVE and "precondition" in out.reason
    assert speedup_verdict(1, 1.5).verdict == HOLDS and speedup_verdict(1, 1.1).verdict == DOES_NOT_HOLD


# ---------------------------------------------------------------- conef.sketch_contraction
def test_sketch_verdict_holds_when_formula_matches_on_both_sides_of_the_bound():
    out = sketch_verdict([0.86, 0.83, 0.5], [0.861, 0.829, 0.505])
    assert out.verdict == HOLDS and out.details["formula_value"] == pytest.approx(0.005 / 0.505)
    # cells above the bound (lambda > 2/(1+kappa), as at s=0.05, lambda=0.1) are the formula's own prediction
    assert sketch_verdict([0.86, 1.02], [0.86, 1.021]).verdict == HOLDS  # within 2% of 1: judged by (a) only
    assert sketch_verdict([0.86, 1.05], [0.86, 1.051]).verdict == HOLDS  # predicted expansive, measured expansive


def test_sketch_verdict_does_not_hold():
    out = sketch_verdict([0.86, 0.99], [0.86, 1.021])  # 0.99 where lambda > 2/(1+kappa): 3% off the formula
    assert out.verdict == DOES_NOT_HOLD and out.details["formula_verdict"] == DOES_NOT_HOLD
    assert sketch_verdict([0.86, 0.5], [0.86, 0.52]).verdict == DOES_NOT_HOLD  # 3.8% off the formula
    # the side-of-1 checks on their own, with the formula tolerance met
    out = sketch_verdict([0.86, 1.0], [0.86, 0.979])  # predicted contractive (< 0.98), measured >= 1
    assert out.verdict == DOES_NOT_HOLD and out.details["contractive_value"] == 1
    out = sketch_verdict([0.86, 1.0], [0.86, 1.021])  # predicted expansive (> 1.02), measured <= 1
    assert out.verdict == DOES_NOT_HOLD and out.details["expansive_value"] == 1


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
